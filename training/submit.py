"""Submit a sweep to a Ray cluster as a job, follow its log here, and say where its exported models are.

    python -m training.submit --address http://HEAD:8265 --config configs/sweep_gpu.yaml
                              [--name NAME] [--algos ppo,sac] [--num-samples N] [--timesteps N] [--time-budget-s S]
                              [--python python] [--shared-filesystem] [--no-follow]

The sweep is checked here first (``training.sweep``'s plan: configs, search space, data), so a typo fails in a
second rather than on the cluster. Its ``storage_path`` and ``models_dir`` must be storage every node can reach
(``s3://``, ``gs://``; a local path only with ``--shared-filesystem``, for NFS), because trials run on whichever node
has room and Serve reads the models from another. The job uploads this folder as its working directory
(``ray job submit --working-dir .``), runs ``python -m training.sweep --name NAME`` on the head, and is named
``sweep-NAME``. Ctrl-C stops following, not the job: ``ray job logs --follow`` picks it up again. A cluster with
Ray's token authentication on gets the token found here (``core.runtime``: ``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``
or ``RAY_AUTH_TOKEN_PATH``), whatever ``RAY_AUTH_MODE`` says in this shell.

Exit status: 0 when the job succeeded (the exported models and the command that serves them are printed), 1 when it
failed or was stopped, 2 for a bad option or config, 130 when following was interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from core.cli import fail, prog
from core.errors import ConfigError, DataError
from core.runtime import dashboard_auth_mode, match_cluster_auth, setup_console
from core.storage import Location
from training.sweep import new_plan
from training.sweep_state import PLAN, read_summary, sweep_dir

# What never travels in the job's working directory (``ray job submit --runtime-env-json``'s ``excludes``).
EXCLUDES = [".venv", ".git", "runs", "models", "mlruns", "reports", "data", "**/__pycache__", "*.egg-info"]
PASSED_ON = ("algos", "num_samples", "timesteps", "time_budget_s", "data")


def entrypoint(args: argparse.Namespace, name: str) -> str:
    """The job's command line: the sweep as planned here, under the name planned here."""
    config = Path(args.config).resolve()
    try:
        config_arg = str(config.relative_to(Path.cwd()))  # inside the uploaded working directory
    except ValueError:
        if not args.shared_filesystem:
            raise ConfigError(
                f"--config: {config} is outside this folder, which is what the job uploads; move it here, or pass "
                "--shared-filesystem if every node mounts it at that path"
            ) from None
        config_arg = str(config)
    if any(Path(config_arg).parts[0] == excluded for excluded in EXCLUDES):
        raise ConfigError(f"--config: {config_arg} is in a folder the job does not upload ({', '.join(EXCLUDES)})")
    words = [args.python, "-m", "training.sweep", "--config", config_arg, "--name", name, "--no-dashboard"]
    for key in PASSED_ON:
        value = getattr(args, key)
        if value is not None:
            # A CSV by its absolute path: the job's working directory is a copy without data/.
            words += [f"--{key.replace('_', '-')}", str(Path(value).resolve()) if key == "data" else str(value)]
    return shlex.join(words)


def check_storage(where: str, field: str, shared_filesystem: bool) -> Location:
    if "://" not in where and not Path(where).is_absolute():
        raise ConfigError(
            f"{field}: {where} is relative, and the job runs in a copy of this folder that Ray deletes afterwards; "
            f"give storage every node reaches (s3://bucket/{field})"
        )
    location = Location.of(where)
    if location.is_local and not shared_filesystem:
        raise ConfigError(
            f"{field}: {where} is a local path, which each node of a cluster has its own copy of: trials on other "
            f"nodes would write where the next step cannot read. Use storage every node reaches (s3://bucket/{field}, "
            "gs://...), or pass --shared-filesystem if that path is on a filesystem every node mounts"
        )
    probe = location / f".rlportfolio-write-check-{uuid.uuid4().hex[:8]}"
    try:  # credentials, endpoint, bucket and write permission, checked before a GPU hour starts
        probe.write_text("")
        probe.delete()
    except OSError as exc:
        raise DataError(f"{field}: cannot reach {where} from here ({exc})") from None
    return location


TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def follow(client, job_id: str) -> str:
    """Print the job's log as it comes until the job ends; its final status. A dropped log stream (a restarted
    dashboard, a port-forward that hung up) is reopened, and the job's state is polled while it is down."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    while True:
        try:
            asyncio.run(tail())
        except (RuntimeError, OSError) as exc:  # the SDK raises RuntimeError for an abnormal websocket close
            print(f"(log stream lost: {exc}; reconnecting)", file=sys.stderr, flush=True)
        try:
            status = str(client.get_job_status(job_id))
        except (RuntimeError, OSError):
            status = "UNKNOWN"
        if status in TERMINAL:
            return status
        time.sleep(5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("training.submit"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="the cluster's dashboard (Jobs API), e.g. http://HEAD:8265")
    parser.add_argument("--config", default="configs/sweep_gpu.yaml")
    parser.add_argument("--name", help="the sweep's name (default <config name>-<data>-<time>)")
    parser.add_argument("--algos", help="comma-separated subset, e.g. dqn,ppo (default: all in the YAML)")
    parser.add_argument("--num-samples", type=int, help="sampled configurations per algorithm")
    parser.add_argument("--timesteps", type=int, help="env steps per trial for every algorithm")
    parser.add_argument("--time-budget-s", type=float, help="wall-clock seconds for the whole sweep")
    parser.add_argument(
        "--data", help="price CSV at the same path on the head (needs --shared-filesystem; default: the configs' data)"
    )
    parser.add_argument("--python", default="python", help="the Python the cluster runs the sweep with")
    parser.add_argument(
        "--shared-filesystem", action="store_true", help="allow local storage paths: every node mounts them"
    )
    parser.add_argument("--no-follow", action="store_true", help="submit and return; do not follow the log")
    args = parser.parse_args(argv)
    args.models_dir = None  # new_plan reads these; the YAML decides them for a submitted sweep
    setup_console()
    try:
        if args.data is not None and not args.shared_filesystem:
            raise ConfigError(
                "--data: the job reads the CSV on the head, at the path given; pass --shared-filesystem once it is "
                "there (or name the data in the sweep's algorithm configs)"
            )
        plan = new_plan(args, require_devices=False)
        storage = check_storage(plan.sweep.storage_path, "storage_path", args.shared_filesystem)
        models = check_storage(plan.sweep.models_dir, "models_dir", args.shared_filesystem)
        folder = sweep_dir(storage, plan.name)
        if (folder / PLAN).exists():
            raise ConfigError(f"--name: a sweep named '{plan.name}' exists at {folder}; pick another name")
        command = entrypoint(args, plan.name)
        from ray.job_submission import JobSubmissionClient

        # Ray's token when the cluster requires one (Ray's own client sends it only under RAY_AUTH_MODE=token).
        match_cluster_auth(dashboard_auth_mode(args.address), f"--address {args.address}")
        try:
            client = JobSubmissionClient(args.address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--address: no Ray cluster answers at {args.address} ({exc})") from None
    except (ConfigError, DataError) as exc:
        return fail(exc)

    job_id = client.submit_job(
        entrypoint=command,
        submission_id=f"sweep-{plan.name}",
        runtime_env={"working_dir": ".", "excludes": EXCLUDES},
        metadata={"sweep": plan.name, "storage_path": storage.uri},
    )
    again = f"ray job logs --address {args.address} --follow {job_id}"
    print(f"submitted {job_id} to {args.address}; results in {folder}", file=sys.stderr, flush=True)
    print(f"  follow: {again}\n  stop:   ray job stop --address {args.address} {job_id}", file=sys.stderr)
    if args.no_follow:
        return 0
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; {job_id} goes on. Follow it again with: {again}", file=sys.stderr)
        return 130
    if status != "SUCCEEDED":
        info = client.get_job_info(job_id)
        print(f"error: {job_id} ended {status}: {info.message or 'see its log above'}", file=sys.stderr)
        return 1
    summary = read_summary(folder)
    exported = {a: uri for a, uri in (summary.exported if summary else {}).items() if uri}
    print(f"\n{job_id} succeeded; summary {folder / 'summary.json'}")
    for algo, uri in exported.items():
        print(f"  {algo}: {uri}")
    if exported:
        print(f"serve them: python -m serving.deploy --address {args.address} --models {shlex.quote(models.uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
