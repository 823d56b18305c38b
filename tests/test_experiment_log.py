"""serving.experiment_log: batches land in a real SQLite file, survive the writer, and read back in order."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from core.errors import ConfigError
from serving.experiment_log import Assignment, Decision, ExperimentLog, Feedback


def test_a_batch_round_trips_and_duplicate_feedback_is_refused(tmp_path):
    log = ExperimentLog(f"sqlite:///{tmp_path / 'log.db'}")
    batch = [
        Assignment(f"r{i}", "exp", "ppo" if i % 2 else "sac", (0.5, 0.5), 1.0 + i, client_id=f"c{i}") for i in range(5)
    ]
    log.append(batch, [Feedback("r1", 0.01), Feedback("r1", 0.02)], [Decision("exp", "split", "start", {"ppo": 0.5})])
    assert log.append(feedback_=[Feedback("r1", 0.03), Feedback("r2", -0.01)]) == ["r1"]
    contents = log.read("exp")
    assert [r["request_id"] for r in contents.assignments] == [f"r{i}" for i in range(5)]
    assert contents.assignments[0]["weights"] == [0.5, 0.5]
    assert {r["request_id"]: r["realized_return"] for r in contents.feedback} == {"r1": 0.01, "r2": -0.01}
    assert contents.decisions[0]["split"] == {"ppo": 0.5}
    assert log.counts() == {"assignments": 5, "feedback": 2, "decisions": 1}


def _write_then_die(url: str) -> None:
    log = ExperimentLog(url)
    log.append([Assignment("committed", "exp", "ppo", (1.0,), 1.0)])
    os._exit(9)  # no clean shutdown: the committed batch must still be there


def test_a_committed_batch_survives_its_writer_being_killed(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    process = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(url,))
    process.start()
    process.join(60)
    assert process.exitcode == 9
    assert [r["request_id"] for r in ExperimentLog(url).read().assignments] == ["committed"]


def test_a_bad_url_names_itself():
    with pytest.raises(ConfigError, match="not a database URL"):
        ExperimentLog("not a url")
