"""Serving load benchmark: the A/B Serve app on the demo models against a plain FastAPI server. Prints JSON.

    python benchmarks/serve_load.py [--models models/] [--requests 2000] [--concurrency 1 8 32] [--rounds 3]

Drives ``POST /allocate`` with a bounded asynchronous client (aiohttp on uvloop: httpx's async pool spent more CPU
than the plain server at 32 concurrent, on the same 2 cores) at each concurrency on localhost and reports
p50/p95/p99 latency, requests/s and errors for: the Serve app as ``python -m serving.app`` runs it (A/B split over
the two best agents, one ingress (``--ingress-replicas``), one replica per agent and the A/B statistics store,
Serve's high-throughput mode: HAProxy ingress, gRPC); as the reference, ``benchmarks/plain_server.py`` holding the
best agent in one uvicorn process; and as the floor,
``benchmarks/serve_floor.py``, the Serve app's topology with no work in it (what one hop costs). Each level also
reports the CPU milliseconds per request spent by each process group (client, HAProxy, ingress, agents, ...), read
from /proc, and ``speed_probe_ms``, what a fixed Python loop took just before it: the machine's speed drifts, so
compare runs made at different times by it (or by the client's own CPU per request). Last, ``paired`` alternates
the plain server and the Serve app at the highest concurrency ``--rounds`` times and reports each pair's ratio and
their median: the Serve-to-plain ratio with the drift between neighbouring measurements mostly cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import uvloop

from envs.sources import load_market
from policies.format import read_metadata

ROOT = Path(__file__).resolve().parent.parent


def payloads(models: Path, agent: str, n: int) -> list[dict]:
    meta = read_metadata(models / agent)
    market = load_market(meta.env_config.data)
    needed = meta.closes_needed
    days = np.random.default_rng(0).integers(needed, market.n_days, size=n)
    return [
        {
            "prices": {a: market.closes[d - needed + 1 : d + 1, k].tolist() for k, a in enumerate(market.assets)},
            "client_id": f"c{i % 100}",
        }
        for i, d in enumerate(days)
    ]


PROCESS_GROUPS = (
    ("ingress", "Ingress"),
    ("agents", ":agent-"),
    ("stats_store", ":StatsStore"),
    ("echo", ":Echo"),
    ("haproxy", "haproxy"),
    ("server", "plain_server.py"),
)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each process group (``PROCESS_GROUPS``, this client, other), from /proc (Linux)."""
    tick, groups = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                fields, command = stat.read().rsplit(")", 1)[1].split(), cmdline.read().decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        group = (
            "client" if int(pid) == os.getpid() else next((g for g, key in PROCESS_GROUPS if key in command), "other")
        )
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return groups


async def drive(url: str, bodies: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as client:

        async def worker() -> None:
            nonlocal errors
            for body in queue:
                started = time.perf_counter()
                try:
                    async with client.post("/allocate", json=body) as response:
                        await response.read()
                        ok = response.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

        cpu_before, started = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu_after = time.perf_counter() - started, cpu_seconds()
    lat = np.asarray(latencies)
    cpu = {g: round((cpu_after[g] - cpu_before.get(g, 0.0)) * 1000 / len(bodies), 2) for g in sorted(cpu_after)}
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "errors": errors,
        "requests_per_s": round(len(bodies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        # Where the time goes: at concurrency 1 a request's latency is about the sum over the processes it crosses.
        "cpu_ms_per_request": cpu,
    }


def speed_probe_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes now, best of three: a gauge of the machine's current speed, which
    drifts (2x within minutes has been seen here), to compare runs made at different times."""
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def wait_ready(url: str, path: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def run_levels(url: str, bodies: list[dict], levels: list[int], timeout_s: float = 120) -> tuple[list[dict], int]:
    """Warm up (connections, batching, torch) until 200 requests in a row succeed, then measure each level.

    :returns: the levels' reports and the failed warm-up requests (Serve's HAProxy reloads its config once the
        replicas have registered, which can drop the first connections).
    """
    deadline, warmup_errors = time.monotonic() + timeout_s, 0
    while True:
        errors = uvloop.run(drive(url, bodies[:200], 4))["errors"]
        warmup_errors += errors
        if not errors or time.monotonic() > deadline:
            break
        time.sleep(1)
    levels_report = []
    for concurrency in levels:
        probe_ms = speed_probe_ms()
        levels_report.append({**uvloop.run(drive(url, bodies, concurrency)), "speed_probe_ms": probe_ms})
    return levels_report, warmup_errors


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(server: subprocess.Popen, *, ray: bool = False) -> None:
    server.terminate()
    server.wait(timeout=60)
    if ray:
        subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True, timeout=120
        )


def paired_rounds(urls: dict[str, str], bodies: list[dict], concurrency: int, rounds: int) -> dict:
    """``rounds`` alternations of the plain server and the Serve app at ``concurrency``, a few seconds apart, and
    the ratio of their requests/s in each: the machine's speed drifts by up to 2x within minutes, which a ratio of
    two measurements made minutes apart (the levels above) carries whole, and one of neighbours mostly cancels."""
    pairs = []
    for _ in range(rounds):
        plain = uvloop.run(drive(urls["plain"], bodies, concurrency))
        serve = uvloop.run(drive(urls["serve_ab"], bodies, concurrency))
        pairs.append(
            {
                "plain_requests_per_s": plain["requests_per_s"],
                "serve_ab_requests_per_s": serve["requests_per_s"],
                "errors": plain["errors"] + serve["errors"],
                "ratio": round(serve["requests_per_s"] / plain["requests_per_s"], 3),
            }
        )
    return {
        "concurrency": concurrency,
        "rounds": pairs,
        "median_ratio": round(float(np.median([p["ratio"] for p in pairs])), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--ingress-replicas", type=int, default=1, help="ingress replicas of the Serve app")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternations of the plain server and the Serve app at the highest concurrency (paired ratios)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (serve_floor.py)")
    args = parser.parse_args(argv)
    models = Path(args.models)
    registry = json.loads((models / "registry.json").read_text())
    ranked = sorted(
        registry["agents"],
        key=lambda n: registry["agents"][n]["validation"].get("mean_daily_log_growth", -1e9),
        reverse=True,
    )
    split = ",".join(f"{n}=0.5" for n in ranked[:2])
    bodies = payloads(models, ranked[0], args.requests)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    urls = {"plain": "http://127.0.0.1:8100", "serve_ab": "http://127.0.0.1:8000"}

    report = {
        "benchmark": "serve_load",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "split": split,
        "ingress_replicas": args.ingress_replicas,
        "requests_per_level": args.requests,
    }
    # The plain server stays up (idle while the others are measured) for the paired rounds at the end.
    plain = start(
        [str(ROOT / "benchmarks" / "plain_server.py"), "--agent", str(models / ranked[0]), "--port", "8100"], env
    )
    try:
        wait_ready(urls["plain"], "/docs")
        report["plain_fastapi"], report["plain_fastapi_warmup_errors"] = run_levels(
            urls["plain"], bodies, args.concurrency
        )
        if not args.no_floor:
            floor = start([str(ROOT / "benchmarks" / "serve_floor.py"), "--port", "8000"], env)
            try:
                wait_ready(urls["serve_ab"], "/docs", timeout_s=180)
                report["serve_floor"], report["serve_floor_warmup_errors"] = run_levels(
                    urls["serve_ab"], bodies, args.concurrency
                )
            finally:
                stop(floor, ray=True)
        app = ["-m", "serving.app", "--models", str(models), "--split", split]
        serve = start([*app, "--ingress-replicas", str(args.ingress_replicas), "--port", "8000"], env)
        try:
            wait_ready(urls["serve_ab"], "/health", timeout_s=180)
            report["serve_ab"], report["serve_ab_warmup_errors"] = run_levels(
                urls["serve_ab"], bodies, args.concurrency
            )
            if args.rounds:
                report["paired"] = paired_rounds(urls, bodies, max(args.concurrency), args.rounds)
        finally:
            stop(serve, ray=True)
    finally:
        stop(plain)

    top = max(args.concurrency)
    plain_top = next(r for r in report["plain_fastapi"] if r["concurrency"] == top)["requests_per_s"]
    serve_top = next(r for r in report["serve_ab"] if r["concurrency"] == top)["requests_per_s"]
    report["serve_vs_plain_throughput_at_max_concurrency"] = round(serve_top / plain_top, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
