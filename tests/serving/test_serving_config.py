"""``build_app`` refuses bad settings before anything is deployed, with a message naming the setting."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from serving.builder import build_app


@pytest.mark.parametrize(
    "args, message",
    [
        ({"baselines": ["momentum"]}, r"baselines: unknown baseline 'momentum'"),
        ({"fallback": "td3"}, r"fallback: 'td3' is not deployed"),
        ({"split": {"ppo": 1.0, "td3": 1.0}}, r"td3"),
        ({"ingress_replicas": 0}, r"app args: ingress_replicas: Input should be greater than or equal to 1"),
        ({"ingress_replicas": "2"}, r"app args: ingress_replicas: Input should be a valid integer"),
        ({"agent_num_cpu": 1}, r"app args: agent_num_cpu: Extra inputs are not permitted"),
        ({"agent_num_cpus": 0}, r"app args: agent_num_cpus: Input should be greater than 0"),
    ],
)
def test_bad_app_settings_are_config_errors(models, args, message):
    with pytest.raises(ConfigError, match=message):
        build_app({"models_dir": str(models), **args})


def test_an_empty_models_dir_says_how_to_get_agents(tmp_path):
    with pytest.raises(ConfigError, match="no exported agents.*make demo"):
        build_app({"models_dir": str(tmp_path)})


def test_serve_builds_the_app_from_typed_arguments(models):
    """What `serve run configs/serve.yaml` does with the YAML's args: Serve validates them into AppArgs first."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from serving.builder import AppArgs

    app = call_user_app_builder_with_args_if_necessary(build_app, {"models_dir": str(models), "split": {"ppo": 1.0}})
    ingress = app._bound_deployment  # what Serve deploys: the ingress, bound to every agent's deployment
    handles, _, infos, fallback = ingress.init_args[:4]
    assert ingress.name == "Ingress" and ingress.user_config == {
        "experiment": None,
        "split": {"ppo": 1.0},
        "shadow": None,
    }
    assert set(handles) == set(infos) == {"ppo", "dqn", "equal_weight", "growth_optimal"} and fallback == "equal_weight"
    assert infos["growth_optimal"]["closes_needed"] == 253 and infos["ppo"]["kind"] == "rl"
    with pytest.raises(Exception, match="ingress_replica"):
        call_user_app_builder_with_args_if_necessary(build_app, {"models_dir": str(models), "ingress_replica": 2})
    assert AppArgs().baselines == ["equal_weight", "growth_optimal"]


def test_an_agent_with_corrupt_metadata_is_named_and_the_cli_exits_1(models, tmp_path, capsys):
    import shutil

    from core.errors import DataError
    from serving.app import main

    broken = tmp_path / "models"
    shutil.copytree(models, broken)
    (broken / "ppo" / "metadata.json").write_text('{"agent": "ppo",')
    with pytest.raises(DataError, match=rf"{broken / 'ppo' / 'metadata.json'}: not valid JSON"):
        build_app({"models_dir": str(broken)})
    assert main(["--models", str(broken), "--no-dashboard"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {broken / 'ppo' / 'metadata.json'}: not valid JSON") and "Traceback" not in err


def promote(models, tmp_path, name: str, kind: str, entries: list | None = None):
    """A copy of ``models`` whose registry records a gate that promoted ``name`` (with ``entries``)."""
    import shutil

    from policies.export import update_registry
    from policies.format import GateRecord

    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    gate = GateRecord(
        baseline="equal_weight",
        alpha=0.05,
        candidates=3,
        z=2.39,
        method="stationary bootstrap",
        validation="2001-01-01 .. 2002-01-01",
        entries=entries or [],
        promoted=name,
        promoted_kind=kind,
        reason=f"{name} promoted (a test's gate)",
        regime_trade_rate=0.25,
        decided_at="2026-12-05T00:00:00+00:00",
    )
    update_registry(copy, gate=gate)
    return copy


@pytest.mark.parametrize("name, kind", [("dqn", "agent"), ("risk_parity", "baseline")])
def test_without_a_split_the_app_serves_what_the_gate_promoted(models, tmp_path, name, kind):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    app = call_user_app_builder_with_args_if_necessary(
        build_app, {"models_dir": str(promote(models, tmp_path, name, kind))}
    )
    handles, store, infos = app._bound_deployment.init_args[:3]
    assert name in handles and infos[name]["kind"] == ("rl" if kind == "agent" else "baseline")
    assert store._bound_deployment.init_args[3] == {name: 1.0}  # the default split: all to the promoted one
    bare = call_user_app_builder_with_args_if_necessary(build_app, {"models_dir": str(models)})
    assert bare._bound_deployment.init_args[1]._bound_deployment.init_args[3] == {
        "ppo": 1.0,
        "dqn": 1.0,
    }  # no gate: all


def test_a_registry_promoting_an_agent_that_is_not_there_is_refused(models, tmp_path):
    with pytest.raises(ConfigError, match="promotes agent 'sac', which is not exported there"):
        build_app({"models_dir": str(promote(models, tmp_path, "sac", "agent"))})


def test_the_consistency_guardrail_gets_each_arms_validation_distribution_or_names_what_is_missing(models, tmp_path):
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from policies.format import GateEntry, read_metadata

    def entry(name: str, version: str | None) -> GateEntry:
        return GateEntry(
            name=name,
            kind="agent",
            difference=1e-4,
            lower=-1e-4,
            upper=3e-4,
            stderr=1e-4,
            daily_std=2e-3,
            days=500,
            model_version=version,
        )

    ppo_version = read_metadata(models / "ppo").model_version
    # dqn's entry is for a model exported before this one: stale, so dqn has no distribution
    copy = promote(models, tmp_path, "ppo", "agent", [entry("ppo", ppo_version), entry("dqn", "0" * 12)])
    experiment = {"control": "ppo", "challengers": ["dqn"], "guardrails": {"consistency": True}}
    with pytest.raises(ConfigError, match=r"guardrails.consistency: no validation distribution stored for \['dqn'\]"):
        build_app({"models_dir": str(copy), "experiment": experiment})
    fine = {"control": "ppo", "challengers": ["equal_weight"], "guardrails": {"consistency": True}}
    app = call_user_app_builder_with_args_if_necessary(build_app, {"models_dir": str(copy), "experiment": fine})
    expectations = app._bound_deployment.init_args[1]._bound_deployment.init_args[4]
    assert expectations == {
        "ppo": {"baseline": "equal_weight", "mean": 1e-4, "std": 2e-3, "days": 500, "std_low": None, "std_high": None},
        "equal_weight": {"baseline": "equal_weight", "mean": 0.0, "std": 0.0, "days": 500},
    }
