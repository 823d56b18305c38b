"""core.runtime: the address check before ray.init, the console filters, matching a cluster's token authentication
and a Ray job's working directory (no Ray started here)."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import runtime
from core.errors import ConfigError
from core.runtime import (
    check_ray_address,
    cluster_auth_mode,
    dashboard_auth_mode,
    job_working_dir,
    keep_outside_job,
    quiet_libraries,
    setup_console,
)
from tests.support.paths import free_port


@pytest.mark.parametrize("address", ["http://127.0.0.1:8265", "https://ray.example.com"])
def test_a_dashboard_address_for_ray_init_is_refused_with_the_address_to_use(address):
    with pytest.raises(
        ConfigError, match=r"is a dashboard \(Jobs API\) address, for `ray job submit`.*RAY_ADDRESS=auto"
    ):
        check_ray_address(address)


@pytest.mark.parametrize("address", [None, "", "auto", "127.0.0.1:6379", "ray://head:10001"])
def test_gcs_and_client_addresses_pass(address):
    check_ray_address(address)


def test_known_library_notices_are_dropped_and_other_warnings_kept(caplog):
    quiet_libraries()
    caplog.set_level(logging.WARNING)
    logging.getLogger("ray.rllib.algorithms.algorithm_config").warning("You are running PPO on the new API stack! ...")
    logging.getLogger("ray._common.deprecation").warning(
        "DeprecationWarning: `RLModule(config=[RLModuleConfig object])` ..."
    )
    logging.getLogger("ray.rllib.algorithms.algorithm_config").warning(
        "train_batch_size is smaller than minibatch_size"
    )
    assert [r.getMessage() for r in caplog.records] == ["train_batch_size is smaller than minibatch_size"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_libraries()
        warnings.warn(
            "\x1b[33mWARN: Overriding environment rllib-single-agent-env-v0 already in registry.\x1b[0m", stacklevel=1
        )
        warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_tunes_restore_advice_is_dropped_for_the_sweeps_own(caplog):
    """A stopped sweep prints its own line and ``--resume`` command; Tune's would say ``Tuner.restore(...)``."""
    quiet_libraries()
    caplog.set_level(logging.WARNING)
    tune = logging.getLogger("ray.tune.tune")
    tune.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run. ...")
    tune.warning(
        'Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: Tuner.restore(path="x", trainable=...)'
    )
    tune.error("Trials did not complete: [PPO_1]")
    assert [r.getMessage() for r in caplog.records] == ["Trials did not complete: [PPO_1]"]


def test_the_log_file_gets_every_line_and_the_console_only_info_and_above(tmp_path, capsys):
    setup_console(tmp_path / "run.log")
    progress = logging.getLogger("training.progress")
    progress.debug("iteration 2 (throttled)")
    progress.info("iteration 3")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert capsys.readouterr().err == "iteration 3\n"
    text = (tmp_path / "run.log").read_text()
    assert "iteration 2 (throttled)" in text and "INFO training.progress: iteration 3" in text
    setup_console(tmp_path / "other.log")  # a new run's file replaces the last one's
    progress.info("iteration 4")
    assert "iteration 4" not in (tmp_path / "run.log").read_text()


# -- Ray's token authentication, as the cluster has it (no Ray started: a fake GCS and a fake dashboard) -----------


@contextmanager
def fake_gcs(require_token: bool) -> Iterator[str]:
    """A gRPC server answering the one call ``cluster_auth_mode`` makes, as a GCS with or without token auth does."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    class NodeInfo(gcs_service_pb2_grpc.NodeInfoGcsServiceServicer):
        def GetClusterId(self, request, context):
            if require_token and not dict(context.invocation_metadata()).get("authorization"):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: Authentication token is missing")
            return gcs_service_pb2.GetClusterIdReply()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gcs_service_pb2_grpc.add_NodeInfoGcsServiceServicer_to_server(NodeInfo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@contextmanager
def fake_dashboard(answer: bytes, status: int = 200) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = answer if self.path == "/api/authentication_mode" else b"{}"
            self.send_response(status if self.path == "/api/authentication_mode" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("require_token, mode", [(True, "token"), (False, "disabled")])
def test_a_clusters_auth_mode_is_asked_of_its_gcs(require_token, mode):
    with fake_gcs(require_token) as address:
        assert cluster_auth_mode(address) == mode


def test_a_gcs_that_does_not_answer_leaves_the_mode_to_ray():
    assert cluster_auth_mode(f"127.0.0.1:{free_port()}", timeout_s=2) is None


@pytest.mark.parametrize(
    "answer, mode",
    [
        (b'{"authentication_mode": "token"}', "token"),
        (b'{"authentication_mode": "disabled"}', "disabled"),
        (b'{"authentication_mode": "something new"}', None),
        (b"not json", None),
    ],
)
def test_a_clusters_auth_mode_is_asked_of_its_dashboard(answer, mode):
    with fake_dashboard(answer) as url:
        assert dashboard_auth_mode(url) == mode


def test_a_dashboard_that_does_not_answer_leaves_the_mode_as_it_is():
    assert dashboard_auth_mode(f"http://127.0.0.1:{free_port()}", timeout_s=2) is None


@pytest.fixture
def no_token(tmp_path, monkeypatch):
    """A home without ~/.ray/auth_token and no token in the environment; the modes set recorded, not applied (Ray's
    config is process-wide)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    modes: list[str] = []
    monkeypatch.setattr(runtime, "use_auth_mode", modes.append)
    return modes


def test_a_cluster_that_requires_a_token_gets_the_one_found_here(no_token, tmp_path, monkeypatch):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("a" * 32)
    runtime.match_cluster_auth("token", "RAY_ADDRESS=head:6379")
    runtime.match_cluster_auth("disabled", "RAY_ADDRESS=other:6379")
    runtime.match_cluster_auth(None, "RAY_ADDRESS=silent:6379")
    assert no_token == ["token", "disabled"]


def test_a_cluster_that_requires_a_token_missing_here_is_one_error_saying_where_it_goes(no_token):
    with pytest.raises(ConfigError) as error:
        runtime.match_cluster_auth("token", "RAY_ADDRESS=head:6379")
    message = str(error.value)
    assert message.startswith("the Ray cluster at RAY_ADDRESS=head:6379 requires Ray's authentication token")
    assert "~/.ray/auth_token" in message and "RAY_AUTH_TOKEN" in message and "`ray get-auth-token`" in message
    assert no_token == []


def test_ray_client_addresses_are_left_to_ray_and_others_are_asked_as_given(monkeypatch):
    assert runtime.gcs_address("ray://head:10001") is None
    assert runtime.gcs_address("10.0.0.5:6379") == "10.0.0.5:6379"
    import ray._private.services as services

    def nothing_here(address):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(services, "canonicalize_bootstrap_address", nothing_here)
    with pytest.raises(ConfigError, match=r"RAY_ADDRESS=auto: no Ray cluster runs on this machine; start one"):
        runtime.gcs_address("auto")


# -- a Ray job's working directory ----------------------------------------------------------------------------------


def test_a_relative_output_folder_in_a_ray_jobs_working_directory_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    keep_outside_job("models", "--models-dir")  # not a job: a folder that happens to be called that
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}}')
    assert job_working_dir() == copy
    with pytest.raises(ConfigError) as error:
        keep_outside_job("models", "--models-dir")
    assert str(error.value) == (
        f"--models-dir: models is relative, and this runs as a Ray job in {copy}, a copy of the submitted folder that "
        "Ray deletes when the job ends, with everything written in it; give an absolute path (e.g. --models-dir "
        '"$PWD/models" in the shell that submits it) or a storage URI (s3://bucket/models)'
    )
    with pytest.raises(ConfigError, match=r"^storage_path: runs/sweeps is relative.*absolute path or a storage URI"):
        keep_outside_job("runs/sweeps", "storage_path")
    keep_outside_job(str(tmp_path / "models"), "--models-dir")
    keep_outside_job("s3://bucket/models", "--models-dir")


def test_a_job_without_a_working_directory_writes_where_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {}}')
    assert job_working_dir() is None
    keep_outside_job("models", "--models-dir")
