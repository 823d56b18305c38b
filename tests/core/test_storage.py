"""Storage URIs against a real S3 API on localhost (moto's server): locations, exported models and their registry,
loading on a machine that never saw them, the report, and a whole sweep whose every file lives in the bucket."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import yaml

from core.errors import ConfigError, DataError
from core.storage import Location
from envs.config import EnvConfig
from envs.portfolio_env import PortfolioEnv
from policies.format import agent_dirs, read_metadata
from policies.load import load_policy
from tests.support.agents import export_agent, export_untrained
from tests.support.paths import REPO_ROOT
from tests.support.s3 import s3_keys


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def root(request, tmp_path):
    if request.param == "local":
        return Location.of(tmp_path / "root")
    s3 = request.getfixturevalue("s3")
    return Location.of(s3.uri(f"root-{tmp_path.name}"))


def test_a_location_writes_reads_lists_copies_and_deletes_the_same_on_disk_and_on_s3(root, tmp_path):
    (root / "a" / "x.json").write_text('{"x": 1}')
    (root / "b.txt").write_text("b")
    assert json.loads((root / "a" / "x.json").read_text()) == {"x": 1}
    assert [c.name for c in root.children()] == ["a", "b.txt"]
    assert (root / "a").is_dir() and (root / "b.txt").is_file() and not (root / "c").exists()
    assert (root / "nothing").children() == []

    local = tmp_path / "up"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (root / "copied").upload(local)
    back = (root / "copied").download(tmp_path / "back")
    assert (back / "sub" / "w.bin").read_bytes() == b"\x00\x01"

    (root / "a").delete()
    (root / "never-there").delete()  # nothing to do, no error
    assert [c.name for c in root.children()] == ["b.txt", "copied"]
    assert (root / "a" / "x.json").parent.name == "a"


def test_a_uri_keeps_its_query_in_every_child_and_a_bad_one_is_named(s3):
    host = s3.endpoint.removeprefix("http://")
    where = Location.of(f"s3://{s3.bucket}/q?endpoint_override={host}&scheme=http")
    (where / "deep" / "f.txt").write_text("hi")
    assert (where / "deep" / "f.txt").uri == f"s3://{s3.bucket}/q/deep/f.txt?endpoint_override={host}&scheme=http"
    assert Location.of((where / "deep" / "f.txt").uri).read_text() == "hi"
    with pytest.raises(ConfigError, match="nope://x/y: not a storage location"):
        Location.of("nope://x/y")


@pytest.fixture(scope="module")
def env(tiny_csv):
    return PortfolioEnv(EnvConfig(data={"path": str(tiny_csv)}, window_days=10, vol_window_days=20))


def test_models_exported_to_s3_are_listed_ranked_and_load_where_they_were_never_written(s3, env, tmp_path, monkeypatch):
    models = s3.uri("models")
    export_untrained(env, "ppo", tmp_path, models)
    export_untrained(env, "sac", tmp_path, models)
    keys = s3_keys(s3, "models/")
    assert "models/registry.json" in keys and "models/ppo/metadata.json" in keys
    module = read_metadata(models + "/ppo").module_dir
    assert module.startswith("module-") and any(k.startswith(f"models/ppo/{module}/") for k in keys)
    assert not any(".tmp" in k for k in keys)  # staged locally, never in the bucket
    assert [d.name for d in agent_dirs(models)] == ["ppo", "sac"]
    registry = json.loads(Location.of(models + "/registry.json").read_text())
    assert set(registry["agents"]) == {"ppo", "sac"}

    monkeypatch.setenv("RLPORTFOLIO_CACHE", str(tmp_path / "cache"))
    remote, meta = load_policy(models + "/ppo")
    local, _ = load_policy(export_agent(env, tmp_path / "ppo-module", tmp_path / "local"))  # the same module, on disk
    assert (tmp_path / "cache" / f"ppo-{meta.content_hash[:16]}" / "metadata.json").is_file()
    obs = env.reset(seed=1)[0]
    np.testing.assert_allclose(remote.weights(obs), local.weights(obs))
    assert meta.agent == "ppo" and read_metadata(models + "/ppo").content_hash == meta.content_hash


def test_a_damaged_or_half_uploaded_model_in_s3_is_refused_by_name_and_never_cached(s3, env, tmp_path, monkeypatch):
    models = s3.uri("damaged")
    agent = export_untrained(env, "ppo", tmp_path, models)
    monkeypatch.setenv("RLPORTFOLIO_CACHE", str(tmp_path / "cache"))
    module_file = next(f for f in (agent / read_metadata(agent).module_dir).children() if f.is_file())
    module_file.write_text("not the bytes that were hashed")
    with pytest.raises(DataError, match="module files do not match the content hash"):
        load_policy(agent)
    assert not any((tmp_path / "cache").glob("ppo-*"))  # a copy that fails its hash is not kept

    # A first upload cut off before its metadata: no model, not half of one.
    (agent / "metadata.json").delete()
    assert agent_dirs(models) == []
    with pytest.raises(DataError, match=r"damaged/ppo: not an exported policy \(no metadata.json\)"):
        load_policy(agent)


def test_the_report_reads_its_models_from_s3(s3, env, tmp_path, monkeypatch):
    from evaluation.report import evaluate

    models = s3.uri("report-models")
    export_untrained(env, "ppo", tmp_path, models)
    monkeypatch.setenv("RLPORTFOLIO_CACHE", str(tmp_path / "cache"))
    report = evaluate(models, bootstrap_resamples=50, held_out_paths=2, held_out_days=100)
    assert "ppo" in report.agents


@pytest.mark.ray
def test_a_sweep_on_s3_keeps_plan_trials_checkpoints_best_modules_and_models_in_the_bucket(s3, tiny_csv, tmp_path):
    from tests.support.sweeps import run_env, sweep_command, write_sweep

    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=1, concurrent=1)
    raw = yaml.safe_load(config.read_text())
    raw["storage_path"], raw["models_dir"] = s3.uri("sweeps"), s3.uri("models-from-sweep")
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**run_env(), **s3.env, "RLPORTFOLIO_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(sweep_command(config), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"exported models: {s3.uri('models-from-sweep', 'ppo')}" in done.stdout

    keys = s3_keys(s3, "sweeps/t/")
    assert {"sweeps/t/sweep.json", "sweeps/t/summary.json", "sweeps/t/sweep.log"} <= set(keys)
    assert any("/checkpoint_" in k for k in keys) and any(k.endswith("/result.json") for k in keys)
    best = [k for k in keys if k.startswith("sweeps/t/best_modules/ppo/") and k.endswith("best_validation.json")]
    assert len(best) == 1
    record = json.loads(Location.of(s3.uri(best[0])).read_text())
    assert any(f"/{record['module']}/" in k for k in keys)  # the module the record names is there
    summary = json.loads(Location.of(s3.uri("sweeps", "t", "summary.json")).read_text())
    assert summary["complete"] and summary["exported"]["ppo"] == s3.uri("models-from-sweep", "ppo")
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "models").exists()  # nothing of it on local disk
    meta = read_metadata(s3.uri("models-from-sweep", "ppo"))
    assert meta.sweep.name == "t" and meta.source_checkpoint.startswith(s3.uri("sweeps", "t", "best_modules"))

    again = subprocess.run(
        sweep_command(config, "--resume"), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ppo: finished earlier in this sweep; kept" in again.stderr


def test_a_replica_started_after_a_re_export_refuses_the_new_model_until_the_app_is_deployed_again(
    s3, env, tmp_path, monkeypatch
):
    from serving.agents import PolicyAgent

    monkeypatch.setenv("RLPORTFOLIO_CACHE", str(tmp_path / "cache"))
    agent = export_untrained(env, "ppo", tmp_path, s3.uri("re-exported"))
    deployed_with = read_metadata(agent).content_hash
    assert PolicyAgent(agent.uri, deployed_with).info.content_hash == deployed_with
    export_untrained(env, "sac", tmp_path, s3.uri("re-exported"), agent="ppo")  # another model under the name
    # The new module went up beside the old one, the metadata switched to it, then the old one went.
    modules = {k.split("/")[2] for k in s3_keys(s3, "re-exported/ppo/") if k.split("/")[2].startswith("module")}
    assert modules == {read_metadata(agent).module_dir} != {f"module-{deployed_with[:12]}"}
    with pytest.raises(DataError, match=f"not the {deployed_with[:12]} this app was deployed with"):
        PolicyAgent(agent.uri, deployed_with)


def test_credentials_in_a_storage_uri_are_refused_before_they_reach_a_log():
    with pytest.raises(ConfigError, match=r"s3://\.\.\.: credentials in a storage URI .*AWS_ACCESS_KEY_ID"):
        Location.of("s3://AKIA:secret@bucket/models")
