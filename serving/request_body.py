"""Print a ``POST /allocate`` body for the agents in a models folder, from the data they were trained on.

    python -m serving.request_body [--models models/] [--data FILE.csv] [--client-id me] [--days-ago 0]
    curl -s localhost:8000/allocate -H 'Content-Type: application/json' -d "$(python -m serving.request_body)"

The body holds the last closes of every asset the agents trade (as many as the app needs: the most any agent or the
default baselines need), ending ``--days-ago`` trading days before the data's last day. ``--data`` reads another
CSV with the same asset columns (e.g. today's prices).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli import fail, prog
from core.errors import ConfigError, DataError
from envs.config import with_data
from envs.sources import load_market
from quant.registry import ROUTABLE
from serving.agents import baseline_closes_needed, policy_info


def request_body(
    models_dir: str | Path, *, data: str | None = None, client_id: str | None = None, days_ago: int = 0
) -> dict:
    """The ``/allocate`` body for the agents in ``models_dir`` (see the module docstring)."""
    from policies.format import agent_dirs, read_metadata

    dirs = agent_dirs(models_dir)
    if not dirs:
        raise ConfigError(
            f"{models_dir}: no exported agents (expected <agent>/metadata.json); train some with make demo"
        )
    infos = [policy_info(d) for d in dirs]
    traded = {i.assets for i in infos}
    if len(traded) != 1:
        raise ConfigError(
            f"{models_dir}: agents trade different assets ({sorted(traded)}); serve them in separate apps"
        )
    (assets,) = traded
    agents_need = max(i.closes_needed for i in infos)
    needed = max([agents_need] + [baseline_closes_needed(name, agents_need) for name in ROUTABLE])
    env_config = with_data(read_metadata(dirs[0]).env_config, data)
    market = load_market(env_config.data)
    if not set(assets) <= set(market.assets):
        raise DataError(f"{market.source}: the agents trade {list(assets)}, but its columns are {list(market.assets)}")
    columns = [market.assets.index(a) for a in assets]
    last = market.n_days - days_ago
    if not needed <= last <= market.n_days:
        raise DataError(f"{market.source}: {market.n_days} days, cannot end {days_ago} days ago with {needed} closes")
    closes = market.closes[last - needed : last]
    body: dict = {"prices": {a: closes[:, k].round(6).tolist() for a, k in zip(assets, columns)}}
    if client_id is not None:
        body["client_id"] = client_id
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("serving.request_body"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--data", help="price CSV with the agents' assets (default: the data they were trained on)")
    parser.add_argument("--client-id", default="me", help="sticky A/B assignment key ('' for none)")
    parser.add_argument("--days-ago", type=int, default=0, help="end the window this many trading days before the last")
    args = parser.parse_args(argv)
    try:
        body = request_body(args.models, data=args.data, client_id=args.client_id or None, days_ago=args.days_ago)
    except (ConfigError, DataError) as exc:
        return fail(exc)
    print(json.dumps(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
