"""Policy quality on held-out paths of the built-in market's law, against the three oracles. Prints JSON.

    .venv/bin/python benchmarks/policy_quality.py [--models models/] [--paths 100] [--days 1000] [--first-seed 10000]
                                                  [--no-agents] [--final]

Every exported agent and the reference strategies (equal weight, the constant-mix oracle, ``regime_growth`` with
the law fitted on train, the filtered oracle with the true law, the regime-aware oracle) play the same fresh paths
with the env's costs (``evaluation.held_out``). Per strategy: mean daily log growth with its standard error and
annual turnover; per agent: the efficiency against the filtered oracle (the yardstick) and against the constant mix,
with paired standard errors and 95% intervals, and the paired difference to equal weight (``vs_equal_weight``).
``--final`` also plays the module each run ended with and reports ``selected_minus_final``: whether validation
picked a module at least as good as the last one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time

from envs.config import load_env_config
from envs.regimes import fitted_regime_model
from envs.sources import load_market, market_law
from envs.splits import split_market
from evaluation.held_out import held_out_comparison, paired_difference
from policies.format import agent_dirs
from policies.load import load_final_policy, load_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--paths", type=int, default=100)
    parser.add_argument("--days", type=int, default=1000, help="trading days per path")
    parser.add_argument("--first-seed", type=int, default=10_000)
    parser.add_argument("--no-agents", action="store_true", help="the reference strategies only")
    parser.add_argument(
        "--final",
        action="store_true",
        help="also play each agent's final module (its run's last checkpoint) as <agent>@final, and report the "
        "selected module minus the final one",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("evaluation").setLevel(logging.INFO)
    started = time.perf_counter()

    agents = {} if args.no_agents else {d.name: load_policy(d) for d in agent_dirs(args.models)}
    if not agents and not args.no_agents:
        print(f"error: no exported agents under {args.models}/ (run make demo), or pass --no-agents", file=sys.stderr)
        return 1
    selected = list(agents)
    if args.final:
        for name in selected:
            meta = agents[name][1]
            agents[f"{name}@final"] = (load_final_policy(meta), meta)
    reference = next(iter(agents.values()))[1].env_config if agents else load_env_config()
    law = market_law(reference.data)
    if law is None:
        print(
            f"error: the agents' data ({reference.data.path}) has no known law: not a synthetic market", file=sys.stderr
        )
        return 1
    data = load_market(reference.data)
    train = split_market(
        data,
        train_end=reference.data.train_end,
        validation_end=reference.data.validation_end,
        warmup_days=reference.warmup_days,
    )["train"]
    fitted = fitted_regime_model(reference, data, train)
    held_out = held_out_comparison(
        agents, reference, law, fitted, paths=args.paths, days=args.days, first_seed=args.first_seed
    )
    selection = {
        name: paired_difference(held_out.growth[name], held_out.growth[f"{name}@final"])
        for name in selected
        if args.final
    }
    report = {
        "benchmark": "policy_quality",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cost_bps": reference.cost_bps,
        "regime_growth_law": f"{fitted.n_regimes} regimes {fitted.source}",
        **held_out.summary(),
        "agents": {
            name: {
                "algorithm": meta.algorithm,
                "observes_regimes": meta.env_config.observe_regimes,
                "training": meta.training and meta.training.model_dump(),
            }
            for name, (_, meta) in agents.items()
        },
        **({"selected_minus_final": selection} if args.final else {}),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
