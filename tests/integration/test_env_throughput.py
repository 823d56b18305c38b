"""benchmarks/env_throughput.py: the published benchmark command runs and prints the JSON the README quotes."""

from __future__ import annotations

import importlib.util
import json


def test_benchmark_prints_steps_per_second_for_both_action_modes(repo_root, capsys):
    spec = importlib.util.spec_from_file_location("env_throughput", repo_root / "benchmarks" / "env_throughput.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)

    assert benchmark.main(["--steps", "500", "--num-envs", "8", "--vector-steps", "300"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "env_throughput"
    assert [r["action_mode"] for r in report["results"]] == ["continuous", "discrete"]
    for result in report["results"]:
        assert result["steps"] == 500 and result["steps_per_second"] > 0
        assert result["observation_size"] == 20 * 4 + 4 + 4
    assert [(v["env"], v["train_paths"]) for v in report["vector"]] == [
        ("PortfolioVectorEnv", "law"),  # the training configuration: a fresh law path per episode
        ("PortfolioVectorEnv", "split"),
    ]
    for vector in report["vector"]:
        assert vector["num_envs"] == 8 and vector["env_steps"] == 8 * 300 and vector["steps_per_second"] > 0
        assert vector["episodes_ended"] == 8  # 252-day episodes: each of the 8 ended once in 300 steps
