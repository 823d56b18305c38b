"""The built-in synthetic market written to disk: the CSV of closes and, beside it, ``FILE.params.json`` with its
true law, its regime path and its oracles (what ``rlportfolio data synth`` writes; ``envs.synthetic.load_params``
reads the law back)."""

from __future__ import annotations

import json
from pathlib import Path

from envs.market import MarketData
from envs.oracle import oracle_report
from envs.synthetic import default_market, params_path


def write_synthetic(
    path: str | Path, *, seed: int, years: float, n_assets: int, n_regimes: int
) -> tuple[MarketData, dict]:
    """Write ``path`` (CSV) and ``path.params.json`` (true law, regime path, oracle)."""
    market, params, regimes = default_market(seed=seed, years=years, n_assets=n_assets, n_regimes=n_regimes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    market.to_csv(path)
    record = {
        "seed": seed,
        "years": years,
        "model": "Markov regime-switching multivariate lognormal; regime at close t draws the return t -> t+1",
        **params.to_json(),
        "oracle": oracle_report(params),
        "regime_path": regimes.tolist(),
    }
    params_path(path).write_text(json.dumps(record, indent=1))
    return market, record
