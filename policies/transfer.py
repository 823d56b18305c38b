"""Which assets an exported agent can allocate: its training assets always; any others only when its module is
asset-shared (``model.kind: asset_shared``, runs on any number of assets) and nothing it observes is tied to the
training universe. Decided from the features the metadata records (``policies.module_spec``), not from names.
"""

from __future__ import annotations

from policies.module_spec import ModuleSpec
from quant.registry import BASELINES

FLAT = "its network is flat (model.kind: mlp): one input per training asset, in their order"


def universe_ties(module: ModuleSpec) -> list[str]:
    """Why ``module`` cannot allocate assets it was not trained on, one sentence each; empty when it can."""
    if module.kind != "asset_shared":
        return [FLAT]
    features, reasons = module.features, []
    if features.layout.n_regimes:
        reasons.append(
            "it observes regime probabilities (observe_regimes) filtered by the regime model fitted on its training "
            "assets, whose means and covariances are over those assets only"
        )
    if features.base in BASELINES and BASELINES[features.base].needs_regimes:
        reasons.append(
            f"its residual base '{features.base}' filters with the regime model fitted on its training assets"
        )
    if features.extras:
        reasons.append(f"it observes its training data's extra columns {features.extras}, which a request lacks")
    return reasons


def transfer_refusal(module: ModuleSpec) -> str | None:
    """``None`` when the agent can allocate any assets, else why not (``universe_ties`` joined)."""
    reasons = universe_ties(module)
    return "; ".join(reasons) if reasons else None
