"""cluster.yaml, configs/serve.yaml and the KubeRay manifests parse, name the required sections and point at
things that exist."""

from __future__ import annotations

import importlib

import yaml

from training.sweep_config import SweepConfig


def load(repo_root, path):
    return yaml.safe_load((repo_root / path).read_text())


def test_cluster_yaml_has_a_cpu_head_autoscaling_gpu_workers_and_installs_the_project(repo_root):
    cluster = load(repo_root, "cluster.yaml")
    for section in (
        "cluster_name",
        "provider",
        "auth",
        "available_node_types",
        "head_node_type",
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "file_mounts",
    ):
        assert section in cluster, section
    nodes = cluster["available_node_types"]
    assert cluster["head_node_type"] in nodes
    gpu = [n for n in nodes.values() if n["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu and gpu[0]["max_workers"] > gpu[0]["min_workers"]
    assert any("make setup" in c for c in cluster["setup_commands"])


def test_serve_yaml_points_at_the_app_builder(repo_root):
    serve = load(repo_root, "configs/serve.yaml")
    app = serve["applications"][0]
    module, attr = app["import_path"].split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    ingress = next(d for d in app["deployments"] if d["name"] == "Ingress")
    assert set(ingress["user_config"]) <= {"experiment", "split", "shadow"}
    from experiments.settings import ExperimentSettings

    ExperimentSettings.model_validate(ingress["user_config"])


def test_rayservice_runs_the_same_app_with_health_probes(repo_root):
    service = load(repo_root, "deploy/rayservice.yaml")
    assert service["kind"] == "RayService"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    local = load(repo_root, "configs/serve.yaml")
    assert serve_config["applications"][0]["import_path"] == local["applications"][0]["import_path"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["livenessProbe"]["httpGet"]["path"] == "/health"
    assert head["readinessProbe"]["httpGet"]["path"] == "/health"
    # Every pod runs Serve the way `python -m serving.app` does locally.
    from serving.lifecycle import THROUGHPUT_ENV

    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    for container in (head, worker):
        assert THROUGHPUT_ENV.items() <= {e["name"]: e.get("value") for e in container["env"]}.items()


def test_rayjob_runs_an_existing_sweep_config(repo_root):
    job = load(repo_root, "deploy/rayjob.yaml")
    assert job["kind"] == "RayJob"
    entry = job["spec"]["entrypoint"].split()
    config = entry[entry.index("--config") + 1]
    sweep = SweepConfig.model_validate(load(repo_root, config))
    # Storage every pod reaches, with the credentials from one secret on head and workers; the head runs no trials.
    assert sweep.storage_path.startswith("s3://") and sweep.models_dir.startswith("s3://")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "rlportfolio-s3"}} in container["envFrom"]
        assert "volumeMounts" not in container


def test_prometheus_and_grafana_files_name_the_app_metrics(repo_root):
    prometheus = load(repo_root, "deploy/prometheus.yml")
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    dashboard = (repo_root / "deploy" / "grafana-dashboard.json").read_text()
    for metric in ("rlportfolio_requests_total", "rlportfolio_latency_ms_bucket", "rlportfolio_errors_total"):
        assert metric in dashboard


def test_the_cluster_serve_config_keeps_its_sqlite_log_writers_and_reader_on_the_head(repo_root):
    from ray.serve.schema import ServeDeploySchema

    from serving.builder import AppArgs
    from serving.deploy import sqlite_split_brain

    serve = load(repo_root, "configs/serve_cluster.yaml")
    ServeDeploySchema.model_validate(serve)
    (app,) = serve["applications"]
    AppArgs.model_validate(app["args"])
    assert sqlite_split_brain(serve, 9) is None and serve["http_options"]["host"] == "0.0.0.0"
    head = load(repo_root, "cluster.yaml")["available_node_types"]["head"]["resources"]
    for deployment in app["deployments"]:
        assert set(deployment["ray_actor_options"]["resources"]) <= set(head)
        assert deployment["ray_actor_options"]["num_cpus"] <= head["CPU"]
    assert sqlite_split_brain(load(repo_root, "configs/serve.yaml"), 2) is not None  # the laptop config is not for this
