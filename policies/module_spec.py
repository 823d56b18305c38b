"""The exported module's kind and feature spec (``ModelMetadata.module``, format version 6): what the module
observes stated without its assets, so that a loader can tell whether it allocates assets it was not trained on
(``policies.transfer``) and build their observations (``envs.features``, the same windows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from core.records import Record
from envs.config import EnvConfig, RegimeConfig
from envs.layout import AssetLayout
from quant.registry import BASELINES


class LayoutRecord(Record):
    """``envs.layout.AssetLayout.to_json()``: numbers per asset and market-wide, whatever the number of assets."""

    window_days: int = Field(ge=0)
    n_extras: int = Field(default=0, ge=0)
    n_regimes: int = Field(default=0, ge=0)
    base: bool = False


class FeatureSpec(Record):
    """What the module observes, stated without its assets: the layout, the ``envs.features`` settings that build an
    observation from any assets' closes, and what ties the features to the training universe (a fitted regime
    model, whose covariances are over the training assets; the training data's extra columns)."""

    layout: LayoutRecord
    vol_window_days: int = Field(ge=2)
    log_volatility: bool = False
    extras: list[str] = Field(default_factory=list, description="extra columns of the training data observed")
    regime_model: bool = Field(
        default=False, description="observes regimes, or tilts a base that filters, with the training assets' model"
    )
    regime_window_days: int = Field(default=0, ge=0)
    base: str = Field(default="none", description="the residual base whose weights are observed")

    @property
    def asset_layout(self) -> AssetLayout:
        return AssetLayout.from_json(self.layout.model_dump())

    @classmethod
    def of_env(cls, config: EnvConfig, n_regimes: int) -> FeatureSpec:
        """The spec of ``config``'s observations, ``n_regimes`` those of its regime model (0 when not observed)."""
        extras = list(config.data.extra_columns) if config.observe_extras else []
        return cls(
            layout=LayoutRecord(**AssetLayout.of_env(config, n_regimes).to_json()),
            vol_window_days=config.vol_window_days,
            log_volatility=config.log_volatility,
            extras=extras,
            regime_model=bool(n_regimes and config.observe_regimes) or config.base_needs_regimes,
            regime_window_days=config.regimes.window_days if n_regimes or config.base_needs_regimes else 0,
            base=config.policy.base,
        )


class ModuleSpec(Record):
    """The exported module: ``mlp`` (RLlib's fully connected networks, sized for the training assets) or
    ``asset_shared`` (one network for every asset, ``model.kind: asset_shared``, that runs on any number of them)."""

    kind: Literal["mlp", "asset_shared"] = "mlp"
    features: FeatureSpec


def derived_module(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A version 1-5 file's ``module``: a flat ``mlp`` whose features its ``observation`` states (``None`` when the
    observation is not even an object: that field's own error says so)."""
    observation = raw.get("observation")
    if not isinstance(observation, dict):
        return None
    base, n_regimes = observation.get("base", "none"), observation.get("n_regimes", 0)
    extras = observation.get("extras", [])
    regime_base = base in BASELINES and BASELINES[base].needs_regimes
    regime_window = observation.get("regime_window_days", 0)
    if regime_base and not regime_window:  # the base's filter window, which the observation spec leaves at 0
        env_config = raw.get("env_config") if isinstance(raw.get("env_config"), dict) else {}
        regimes = env_config.get("regimes") if isinstance(env_config.get("regimes"), dict) else {}
        regime_window = regimes.get("window_days", RegimeConfig().window_days)
    layout = {"window_days": observation.get("window_days"), "n_regimes": n_regimes, "base": base != "none"}
    return {
        "kind": "mlp",
        "features": {
            "layout": layout | {"n_extras": len(extras) if isinstance(extras, list) else 0},
            "vol_window_days": observation.get("vol_window_days"),
            "log_volatility": observation.get("log_volatility", False),
            "extras": extras,
            "regime_model": bool(n_regimes) or regime_base,
            "regime_window_days": regime_window,
            "base": base,
        },
    }
