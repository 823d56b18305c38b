"""Replay a test split day by day through the running A/B app and see which question the data can answer, and when.
Prints JSON.

    python benchmarks/ab_replay.py --models models/ [--arms ppo,dqn] [--clients 5] [--days 0] [--swap-assets]

Deploys the Serve app on ``--models`` (a fixed 50/50 split between ``--arms``, default the two best agents by
validation; ``guardrails.consistency`` on when the promotion gate stored every arm's validation distribution), then,
for each test day of the agents' own data in order, ``--clients`` clients ask ``/allocate`` for that trading day
(``as_of``) and report the day's per-asset returns to ``/feedback``. After every day it reads ``/ab/stats`` and
records:

- the **paired, day-clustered** verdict (every agent scored on every request, the day the unit), the first day its
  always-valid interval excluded zero and the day from which it kept excluding it to the end (``settled``);
- what the **unpaired, per-request** always-valid test said on the same feedback (each request's answering agent's
  net return), with the same two days; the ratio of the settled days (a bound when only the paired one settles);
- the **consistency** guardrail's reading per arm and the day it flagged one.

``--swap-assets`` serves the agents on the same days with the asset columns reversed: an agent fed another market
(or a wrong column order), which the consistency guardrail should flag. ``--days`` limits the replay (0: every test
day).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx


def decided(entry: dict, key: str) -> bool:
    interval = entry[key] or {}
    lower, upper = interval.get("lower"), interval.get("upper")  # null: unbounded (JSON has no infinity)
    return (lower is not None and lower > 0) or (upper is not None and upper < 0)


def first_day(history: list[dict], key: str) -> int | None:
    """The first replayed day (1-based) at which ``key``'s always-valid interval excluded zero."""
    return next((entry["day"] for entry in history if decided(entry, key)), None)


def settled_day(history: list[dict], key: str) -> int | None:
    """The day from which ``key``'s interval excluded zero on every later day to the end (None: not at the end)."""
    day = None
    for entry in history:
        day = (day or entry["day"]) if decided(entry, key) else None
    return day


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument(
        "--arms", help="control,challenger, agents or deployed baselines (default: the two best agents by validation)"
    )
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--days", type=int, default=0, help="test days to replay (0: all)")
    parser.add_argument("--swap-assets", action="store_true", help="serve on the test days with asset columns reversed")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray import serve

    from backtesting.backtest import evaluation_env
    from core.runtime import init_ray
    from policies.format import agent_dirs, read_metadata, read_registry
    from serving.builder import build_app
    from serving.lifecycle import shutdown_serve, use_throughput_mode

    metas = {d.name: read_metadata(d) for d in agent_dirs(args.models)}
    if args.arms:
        arms = args.arms.split(",")
    else:
        arms = sorted(metas, key=lambda n: metas[n].validation.get("mean_daily_log_growth", -1e9), reverse=True)[:2]
    if len(arms) != 2 or not set(arms) & set(metas):
        parser.error(f"--arms: two deployed agents, at least one exported ({sorted(metas)}), got {arms}")
    registry = read_registry(args.models)
    gate = registry.gate if registry is not None else None
    stored = {e.name for e in gate.entries if e.daily_std is not None} | {gate.baseline} if gate is not None else set()
    consistency = set(arms) <= stored
    env = evaluation_env(metas[next(a for a in arms if a in metas)].env_config, "test")
    closes, assets = env.market.closes, env.assets
    replayed = closes[:, ::-1] if args.swap_assets else closes
    first, last = env.split.first - 1, env.split.last - 1
    days = range(first, last if args.days <= 0 else min(last, first + args.days))

    experiment = {"control": arms[0], "challengers": [arms[1]], "split": {arms[0]: 0.5, arms[1]: 0.5}}
    if consistency:
        experiment["guardrails"] = {"consistency": True}
    log_url = f"sqlite:///{tempfile.mkdtemp(prefix='ab_replay_')}/experiments.db"
    use_throughput_mode()
    init_ray(dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    baselines = list(dict.fromkeys(["equal_weight", "growth_optimal", *(a for a in arms if a not in metas)]))
    app = build_app(
        {"models_dir": args.models, "experiment": experiment, "experiment_log": log_url, "baselines": baselines}
    )
    serve.run(app, name="ab_replay", route_prefix="/")
    started = time.perf_counter()
    history = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60) as client:
            window = max(agent["closes_needed"] for agent in client.get("/agents").json())
            for i, day in enumerate(days, start=1):
                prices = {a: replayed[day - window + 1 : day + 1, k].tolist() for k, a in enumerate(assets)}
                returns = dict(zip(assets, (replayed[day + 1] / replayed[day] - 1.0).tolist()))
                as_of = str(env.market.dates[day])
                for c in range(args.clients):
                    body = {"prices": prices, "client_id": f"client-{c}", "as_of": as_of}
                    answer = client.post("/allocate", json=body)
                    answer.raise_for_status()
                    fed = client.post(
                        "/feedback", json={"request_id": answer.json()["request_id"], "asset_returns": returns}
                    )
                    fed.raise_for_status()
                stats = client.get("/ab/stats").json()
                paired, unpaired = stats["paired"][0], stats["comparisons"][0]
                history.append(
                    {
                        "day": i,
                        "paired": paired["sequential"] if paired["days"] >= 2 else None,
                        "unpaired": unpaired["sequential"],
                        "flagged": {arm: r["flagged"] for arm, r in stats["consistency"].items()},
                    }
                )
                if i % 50 == 0:
                    print(f"day {i}/{len(days)}: {paired['verdict']}", file=sys.stderr, flush=True)
            final = client.get("/ab/stats").json()
    finally:
        shutdown_serve()
        ray.shutdown()

    paired, unpaired = final["paired"][0], final["comparisons"][0]
    paired_day, unpaired_day = settled_day(history, "paired"), settled_day(history, "unpaired")
    if paired_day is not None and unpaired_day is not None:
        ratio, bound = unpaired_day / paired_day, False
    elif paired_day is not None:
        ratio, bound = len(history) / paired_day, True  # the unpaired test never decided: at least this
    else:
        ratio, bound = None, False
    flagged_day = {
        arm: next((h["day"] for h in history if h["flagged"].get(arm)), None) for arm in final["consistency"]
    }
    print(
        json.dumps(
            {
                "benchmark": "ab_replay",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "models": str(Path(args.models).resolve()),
                "arms": {"control": arms[0], "challenger": arms[1]},
                "data": env.market.source,
                "swap_assets": args.swap_assets,
                "days": len(history),
                "clients_per_day": args.clients,
                "requests": len(history) * args.clients,
                "paired": {k: paired[k] for k in ("days", "mean_daily_difference", "daily_std", "variance_ratio")}
                | {"interval": paired["sequential"], "verdict": paired["verdict"]}
                | {"first_verdict_day": first_day(history, "paired"), "settled_verdict_day": paired_day},
                "unpaired": {"mean_difference": unpaired["mean_difference"], "interval": unpaired["sequential"]}
                | {"verdict": unpaired["verdict"], "first_verdict_day": first_day(history, "unpaired")}
                | {"settled_verdict_day": unpaired_day},
                "days_ratio_unpaired_over_paired": ratio,
                "days_ratio_is_lower_bound": bound,
                "consistency_guardrail": consistency,
                "consistency": final["consistency"],
                "consistency_flagged_day": flagged_day,
                "decisions": [
                    {k: d[k] for k in ("kind", "arm", "reason", "source")}
                    for d in final["decisions"]
                    if d["kind"] != "deploy"
                ],
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
