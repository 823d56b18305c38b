"""``rlportfolio``: one command over the platform, each stage a subcommand.

    rlportfolio data synth --out data/synthetic.csv       # market data: synth, sample, validate, fetch
    rlportfolio train --algo ppo --timesteps 50000         # one agent
    rlportfolio sweep --config configs/sweep.yaml          # Tune sweep of DQN, SAC and PPO (--resume after a stop)
    rlportfolio report --models models/ --out reports/x    # out-of-sample report
    rlportfolio serve --models models/                      # the Serve app with A/B experiments

Each subcommand is a module's ``main`` (``rlportfolio train`` is ``python -m training.train``, which keeps working):
the same options, ``--help`` and exit codes (0 success, 1 data error, 2 usage or configuration error). Modules are
imported only when their subcommand runs, so ``rlportfolio --help`` answers at once.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.cli import USAGE_ERROR, invoked_as


@dataclass(frozen=True)
class Subcommand:
    module: str
    help: str


SUBCOMMANDS = {
    "data": Subcommand("envs.data", "market data: write the built-in synthetic market or real samples, validate a CSV"),
    "train": Subcommand("training.train", "train one agent (DQN, SAC or PPO) and export it to models/"),
    "sweep": Subcommand("training.sweep", "sweep DQN, SAC and PPO with Ray Tune; --resume finishes a stopped sweep"),
    "submit": Subcommand("training.submit", "run a sweep as a Ray job on a cluster and follow its log"),
    "report": Subcommand("evaluation.report", "out-of-sample HTML report: every agent and baseline on the same dates"),
    "serve": Subcommand("serving.app", "serve exported agents over HTTP with A/B experiments (Ctrl-C stops)"),
    "deploy": Subcommand("serving.deploy", "deploy the Serve app to a running cluster from models in storage"),
    "request-body": Subcommand("serving.request_body", "print an /allocate body with the latest closes of the data"),
    "experiments": Subcommand("experiments.log_export", "the A/B experiment log: export it as CSV or Parquet"),
    "ab": Subcommand("evaluation.ab", "A/B statistics offline, from an export of the experiment log"),
    "bench": Subcommand("benchmarks", "run a benchmark script of benchmarks/ (prints JSON)"),
}

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [
        "usage: rlportfolio <command> [options]   (rlportfolio <command> --help for its options)",
        "",
        "Reinforcement-learning portfolios on Ray: data, training, sweeps, reports, serving and A/B experiments.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {sub.help}" for name, sub in SUBCOMMANDS.items()),
    ]
    return "\n".join(lines)


def benchmark(argv: Sequence[str]) -> int:
    """``rlportfolio bench NAME [options]``: run ``benchmarks/NAME.py`` with the options (the list without NAME)."""
    available = sorted(p.stem for p in BENCHMARKS.glob("*.py")) if BENCHMARKS.is_dir() else []
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rlportfolio bench NAME [options]   (rlportfolio bench NAME --help for its options)")
        print(f"benchmarks: {', '.join(available) or 'none here (they ship with the source checkout)'}")
        return 0 if argv else USAGE_ERROR
    name = argv[0].removesuffix(".py")
    if name not in available:
        print(f"error: bench: unknown benchmark '{name}'; choose from {available}", file=sys.stderr)
        return USAGE_ERROR
    sys.argv = [name, *argv[1:]]  # runpy puts the script's path first
    try:
        runpy.run_path(str(BENCHMARKS / f"{name}.py"), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else USAGE_ERROR
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command '{name}'; choose from {', '.join(SUBCOMMANDS)}\n\n{usage()}", file=sys.stderr)
        return USAGE_ERROR
    if name == "bench":
        return benchmark(rest)
    with invoked_as(f"rlportfolio {name}"):
        try:
            return importlib.import_module(SUBCOMMANDS[name].module).main(rest)
        except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
