"""The log's full-information rows: every agent's weights on a request (``scores``), per-asset feedback
(``outcomes``) priced by the env's own accounting, its bad-input rules, and the runner's paired statistics rebuilt
from the log alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.accounting import rebalance
from experiments.log_schema import Assignment, Feedback, Scores
from experiments.log_store import ExperimentLog
from experiments.runner import ExperimentRunner

KNOWN = {"ppo", "sac", "equal_weight"}
HELD = (0.5, 0.5)
WEIGHTS = {"ppo": (0.8, 0.2), "sac": (0.2, 0.8), "equal_weight": (0.5, 0.5)}


def answer(log: ExperimentLog, experiment: str, request_id: str, arm: str, as_of: str, client: str = "") -> None:
    log.append(
        [Assignment(request_id, experiment, arm, arm, WEIGHTS[arm], 2.0, client_id=client)],
        scores_=[Scores(request_id, experiment, as_of, HELD, 0.001, WEIGHTS, {n: "v1" for n in WEIGHTS}, client)],
    )


def test_per_asset_returns_price_the_answering_agent_with_the_envs_accounting(tmp_path):
    log = ExperimentLog(f"sqlite:///{tmp_path / 'log.db'}")
    answer(log, "exp", "r1", "ppo", "2026-01-05", "c1")
    returns = (0.02, -0.01)
    assert log.append(feedback_=[Feedback("r1", asset_returns=returns)]) == [("recorded", "ppo")]
    current, scratch = np.array(HELD), np.zeros(2)
    growth, _, _ = rebalance(current, np.array(WEIGHTS["ppo"]), 1 + np.array(returns), 0.001, scratch)
    (row,) = log.read("exp").feedback
    assert row["realized_return"] == pytest.approx(math.expm1(growth), abs=1e-15)
    assert row["asset_returns"] == list(returns) and row["scores"]["sac"] == list(WEIGHTS["sac"])
    assert log.last_as_of("c1") == "2026-01-05" and log.last_as_of("nobody") is None


def test_a_repeated_report_is_idempotent_a_different_one_is_refused_and_nothing_is_written(tmp_path):
    log = ExperimentLog(f"sqlite:///{tmp_path / 'log.db'}")
    answer(log, "exp", "r1", "ppo", "2026-01-05")
    log.append(feedback_=[Feedback("r1", asset_returns=(0.02, -0.01))])
    counts = log.counts()
    assert log.append(feedback_=[Feedback("r1", asset_returns=(0.02, -0.01))]) == [("recorded", "ppo")]
    assert log.append(feedback_=[Feedback("r1", asset_returns=(0.03, -0.01))]) == [("duplicate", None)]
    assert log.append(feedback_=[Feedback("r1", realized_return=0.5)]) == [("duplicate", None)]
    assert log.counts() == counts


def test_per_asset_returns_for_a_request_answered_without_scores_are_refused(tmp_path):
    log = ExperimentLog(f"sqlite:///{tmp_path / 'log.db'}")
    log.append([Assignment("old", "exp", "ppo", "ppo", (0.5, 0.5), 2.0)])
    assert log.append(feedback_=[Feedback("old", asset_returns=(0.01, 0.0))]) == [("unscored", None)]
    assert log.append(feedback_=[Feedback("old", realized_return=0.01)]) == [("recorded", "ppo")]


def test_the_runner_rebuilds_the_paired_daily_statistics_from_the_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    run = ExperimentRunner(ExperimentLog(url), KNOWN, "equal_weight", {"ppo": 1.0, "sac": 1.0})
    run.configure({"split": {"ppo": 1, "sac": 1}})
    rng = np.random.default_rng(0)
    for i in range(30):
        as_of = f"2026-02-{i + 1:02d}" if i < 28 else f"2026-03-{i - 27:02d}"
        market = rng.normal(0, 0.02)
        for c in range(3):
            request_id = f"r{i}-{c}"
            answer(run.log, run.key, request_id, "ppo" if c % 2 else "sac", as_of, f"c{c}")
            run.log.append(feedback_=[Feedback(request_id, asset_returns=(market + 0.002, market - 0.002))])
    live = run.summary()
    assert live["full_information"] == {"requests": 90, "closed_days": 29, "latest_day": "2026-03-02"}
    (paired,) = live["paired"]
    # sac holds the asset that lags by 40 bp: 0.6 * 40 bp = 24 bp/day behind ppo on the same days, same costs.
    assert (paired["challenger"], paired["control"], paired["days"]) == ("sac", "ppo", 29)
    assert paired["mean_daily_difference"] == pytest.approx(-0.0024, rel=0.05)
    assert paired["sequential"]["upper"] < 0
    rebuilt = ExperimentRunner(ExperimentLog(url), KNOWN, "equal_weight", {"ppo": 1.0, "sac": 1.0})
    rebuilt.configure({"split": {"ppo": 1, "sac": 1}})
    assert rebuilt.summary()["paired"] == live["paired"]
