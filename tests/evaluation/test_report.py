"""evaluation.report on a small synthetic market: every file, every figure, numbers that agree with the metrics
module, identical dates for every strategy, and the HTML rendered in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from backtesting import metrics
from envs.config import EnvConfig
from envs.portfolio_env import PortfolioEnv
from evaluation.report import evaluate, write_report
from evaluation.report import main as report_main
from tests.support.agents import export_untrained
from tests.support.markets import STRATEGY_NAMES

STRATEGIES = set(STRATEGY_NAMES)


@pytest.fixture(scope="module")
def models(tiny_csv, tmp_path_factory):
    """Two exported (untrained) agents on the tiny CSV market, one claiming a 6-trial sweep."""
    root = tmp_path_factory.mktemp("report")
    config = EnvConfig(
        data={"path": str(tiny_csv)},
        window_days=10,
        vol_window_days=20,
        continuous_map="softmax_delta",
        softmax_scale=1.0,
    )
    for agent, algo, update in (("ppo", "ppo", {}), ("dqn", "dqn", {"action_mode": "discrete"})):
        env = PortfolioEnv(config.model_copy(update=update))
        export_untrained(env, algo, root, root / "models", agent=agent)
    meta_path = root / "models" / "ppo" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sweep"] = {"name": "t", "trial_id": "t_00000", "n_trials": 6, "params": {}}
    meta_path.write_text(json.dumps(meta))
    return root / "models"


@pytest.fixture(scope="module")
def report(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = evaluate(models, bootstrap_resamples=200, held_out_paths=6, held_out_days=300)
    return result, write_report(result, out)


def test_report_writes_html_metrics_and_daily_returns(report):
    result, paths = report
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    html = paths["html"].read_text()
    for name in STRATEGIES | {"ppo", "dqn"}:
        assert f">{name}<" in html, name
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    titles = {title for title, _ in images}
    assert {"Equity curves", "Drawdowns", "Rolling Sharpe", "Turnover", "Weights: ppo", "Weights: dqn"} <= titles
    assert all(len(data) > 1000 for _, data in images)
    assert "Sharpe [95% CI]" in html and "annual return [95% CI]" in html
    assert "Skill apart from luck: 6 fresh paths" in html and "efficiency vs filtered oracle" in html
    assert "Efficiency on this window" in html


def test_held_out_paths_compare_agents_with_the_three_oracles(report):
    result, paths = report
    saved = json.loads(paths["metrics"].read_text())["held_out"]
    assert saved["paths"] == 6 and saved["days_per_path"] == 300
    assert set(saved["strategies"]) == {
        "equal_weight",
        "oracle_constant_mix",
        "regime_growth",
        "oracle_filtered",
        "oracle_regime_aware",
        "ppo",
        "dqn",
    }
    assert set(saved["efficiency"]["oracle_filtered"]) == {"ppo", "dqn", "regime_growth"}
    growth = result.held_out.growth
    # the same paths for everyone: the filtered oracle's edge is paired, so its interval is tight around its mean
    ppo = saved["efficiency"]["oracle_filtered"]["ppo"]
    assert ppo["ci95"][0] <= ppo["value"] <= ppo["ci95"][1]
    assert growth["oracle_filtered"].shape == growth["ppo"].shape == (6,)


def test_every_strategy_is_backtested_on_identical_dates(report):
    result, paths = report
    dates = result.results["equal_weight"].dates
    assert all(np.array_equal(r.dates, dates) for r in result.results.values())
    frame = pd.read_csv(paths["daily_returns"])
    assert set(frame.columns) == {"date"} | STRATEGIES | {"ppo", "dqn"}
    assert frame["date"].iloc[0] == result.dates[0] and len(frame) == result.days


def test_metrics_json_agrees_with_the_metrics_module(report):
    result, paths = report
    saved = json.loads(paths["metrics"].read_text())
    frame = pd.read_csv(paths["daily_returns"])
    for name in ("ppo", "equal_weight", "oracle_regime_aware"):
        returns = frame[name].to_numpy()
        assert saved["metrics"][name]["sharpe"] == pytest.approx(metrics.sharpe_ratio(returns), rel=1e-9)
        assert saved["metrics"][name]["max_drawdown"] == pytest.approx(metrics.max_drawdown(returns), rel=1e-9)
        low, high = saved["intervals"][name]["sharpe_ci95"]
        assert low <= saved["metrics"][name]["sharpe"] <= high
    assert saved["skill"]["ppo"]["n_trials"] == 7  # 6 behind ppo + 1 behind dqn
    assert set(saved["pairwise"]["ppo"]) == (STRATEGIES | {"dqn"})


@pytest.mark.slow
def test_cli_writes_the_report_and_logs_it_to_mlflow(models, tmp_path, capsys):
    out = tmp_path / "r"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert report_main(["--models", str(models), "--out", str(out), "--bootstrap", "100", "--mlflow-uri", uri]) == 0
    assert json.loads(capsys.readouterr().out)["html"] == str(out / "report.html")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("rlportfolio-reports").experiment_id])
    assert len(runs) == 1 and "ppo/sharpe" in runs[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"report.html", "metrics.json", "daily_returns.csv"} <= artifacts


@pytest.mark.slow
def test_agents_trained_on_other_data_are_named_with_how_to_report_each_group(models, tmp_path, capsys):
    """The README chain's trap: agents from the built-in market beside one from a CSV cannot share test days."""
    mixed = tmp_path / "models"
    shutil.copytree(models, mixed)
    env = PortfolioEnv(EnvConfig(window_days=10, vol_window_days=20))  # the built-in market
    export_untrained(env, "ppo", tmp_path, mixed, agent="builtin_ppo")
    capsys.readouterr()

    assert report_main(["--models", str(mixed), "--no-mlflow", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "builtin_ppo: the built-in synthetic market (seed 7" in err
    assert "dqn, ppo: " in err and "tiny.csv" in err and "--agents " in err
    assert err.count("\n") == 1 and "Traceback" not in err

    assert (
        report_main(
            [
                "--models",
                str(mixed),
                "--agents",
                "dqn,ppo",
                "--no-mlflow",
                "--bootstrap",
                "50",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert set(json.loads((tmp_path / "r" / "metrics.json").read_text())["agents"]) == {"dqn", "ppo"}
    capsys.readouterr()
    assert report_main(["--models", str(mixed), "--agents", "ppo,td3", "--no-mlflow"]) == 2
    assert "['td3'] not in" in capsys.readouterr().err


def test_a_corrupt_metadata_file_is_named_and_the_report_exits_1_without_a_traceback(models, tmp_path, capsys):
    broken = tmp_path / "models"
    shutil.copytree(models, broken)
    meta = json.loads((broken / "dqn" / "metadata.json").read_text())
    del meta["observation"]["size"]
    (broken / "dqn" / "metadata.json").write_text(json.dumps(meta))
    capsys.readouterr()

    assert report_main(["--models", str(broken), "--no-mlflow", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {broken / 'dqn' / 'metadata.json'}: field 'observation.size': Field required\n"
    assert not (tmp_path / "r").exists()


def test_cli_names_a_folder_without_models(tmp_path, capsys):
    assert report_main(["--models", str(tmp_path), "--no-mlflow"]) == 1  # a data error (exit 2 is for usage and config)
    assert "no exported agents" in capsys.readouterr().err


def test_report_renders_in_headless_chromium_without_broken_images(report):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    _, paths = report
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(paths["html"].as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        tables = page.evaluate(
            "Array.from(document.querySelectorAll('table')).map(t => t.getBoundingClientRect().right)"
        )
        page_width = page.evaluate("document.documentElement.scrollWidth")
        browser.close()
    assert len(images) >= 6 and len(tables) >= 4
    assert page_width <= 1280 and max(tables) <= 1280, (page_width, tables)  # every table fits a 1,280-pixel page
    broken = [alt for alt, complete, width in images if not complete or width == 0]
    assert not broken, broken


@pytest.mark.ray
@pytest.mark.slow
def test_walk_forward_retrains_per_fold_and_stitches_adjacent_out_of_sample_windows(ray_local, tiny_csv, tmp_path):
    from tests.support.markets import fast_overrides
    from training.config import resolve_train_config
    from training.train import train

    config = resolve_train_config("ppo", overrides=fast_overrides("ppo", tiny_csv, timesteps=500))
    train(config, agent="ppo", runs_dir=tmp_path / "runs", models_dir=tmp_path / "models")
    out = tmp_path / "wf"
    code = report_main(
        [
            "--models",
            str(tmp_path / "models"),
            "--out",
            str(out),
            "--bootstrap",
            "50",
            "--no-mlflow",
            "--walk-forward",
            "2",
            "--walk-forward-timesteps",
            "500",
        ]
    )
    assert code == 0
    saved = json.loads((out / "metrics.json").read_text())["walk_forward"]
    folds = saved["folds"]
    assert len(folds) == 2
    assert folds[0]["test_last"] < folds[1]["test_first"] and folds[0]["validation_end"] < folds[0]["test_first"]
    assert (out / "walk_forward" / "fold1" / "models" / "ppo" / "metadata.json").is_file()
    assert {"ppo", "equal_weight", "served"} <= set(saved["metrics"])
    for fold in folds:  # what the gate promoted on the fold's validation window, and regime_growth's rate there
        assert fold["served"] in saved["metrics"] and fold["served"] != "served" and 0 < fold["regime_trade_rate"] <= 1
    html = (out / "report.html").read_text()
    assert "Walk-forward: 2 retrained folds" in html and "<td>served</td>" in html.replace("<b>", "").replace(
        "</b>", ""
    )
