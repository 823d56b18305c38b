"""experiments.log_*: batches land in a real SQLite file, survive the writer, tail in order, export."""

from __future__ import annotations

import multiprocessing
import os

import pandas as pd
import pytest

from core.errors import ConfigError
from experiments.log_export import export, main
from experiments.log_schema import ASSIGNMENT_COLUMNS, Assignment, Feedback, assignment_values, assignments
from experiments.log_store import ExperimentLog
from experiments.log_tail import Tail


def _row(a: Assignment) -> dict:
    return dict(zip(ASSIGNMENT_COLUMNS, assignment_values(a), strict=True))


def answer(i: int, arm: str = "ppo", experiment: str = "exp", **extra) -> Assignment:
    return Assignment(f"r{i}", experiment, arm, arm, (0.5, 0.5), 1.0 + i, client_id=f"c{i}", **extra)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_url(request, tmp_path):
    """A fresh log: a SQLite file (the default) or a database on a real PostgreSQL server (a cluster's choice)."""
    return f"sqlite:///{tmp_path / 'log.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_a_batch_round_trips_and_feedback_is_recorded_once_for_answered_requests_only(log_url):
    log = ExperimentLog(log_url)
    failed = Assignment("r9", "exp", "ppo", "", (), 3.0, errors=2)
    statuses = log.append(
        [answer(i, "ppo" if i % 2 else "sac") for i in range(5)] + [failed],
        [Feedback("r1", 0.01), Feedback("r1", 0.02), Feedback("nope", 0.0), Feedback("r9", 0.0)],
    )
    assert statuses == [("recorded", "ppo"), ("duplicate", None), ("unknown", None), ("unknown", None)]
    assert log.append(feedback_=[Feedback("r1", 0.03), Feedback("r2", -0.01), Feedback("r1", 0.01)]) == [
        ("duplicate", None),
        ("recorded", "sac"),
        ("recorded", "ppo"),  # the same report again (a client's retry) is acknowledged, not recorded twice
    ]
    contents = log.read("exp")
    assert [r["request_id"] for r in contents.assignments] == [f"r{i}" for i in range(5)] + ["r9"]
    assert contents.assignments[0]["weights"] == [0.5, 0.5]
    assert {r["request_id"]: r["realized_return"] for r in contents.feedback} == {"r1": 0.01, "r2": -0.01}
    assert log.counts() == {"assignments": 6, "feedback": 2, "decisions": 0, "scores": 0, "outcomes": 0}


def test_a_tail_returns_each_new_row_once_in_order_and_skips_other_experiments(log_url):
    log = ExperimentLog(log_url)
    tail = Tail(log, "assignments", "exp")
    log.append([answer(0), answer(1), answer(2, experiment="other")])
    assert [r["request_id"] for r in tail.poll()] == ["r0", "r1"]
    assert tail.poll() == []
    log.append([answer(3)], [Feedback("r0", 0.01)])
    assert [r["request_id"] for r in tail.poll()] == ["r3"]
    feedback = Tail(log, "feedback", "exp").poll()
    assert [(r["request_id"], r["arm"], r["realized_return"]) for r in feedback] == [("r0", "ppo", 0.01)]


def _write_then_die(url: str) -> None:
    log = ExperimentLog(url)
    log.append([Assignment("committed", "exp", "ppo", "ppo", (1.0,), 1.0)])
    os._exit(9)  # no clean shutdown: the committed batch must still be there


def test_a_committed_batch_survives_its_writer_being_killed(log_url):
    url = log_url
    process = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(url,))
    process.start()
    process.join(60)
    assert process.exitcode == 9
    assert [r["request_id"] for r in ExperimentLog(url).read().assignments] == ["committed"]


def test_export_writes_every_answer_with_its_feedback_as_csv_and_parquet(log_url, tmp_path, capsys):
    url = log_url
    log = ExperimentLog(url)
    log.append([answer(i) for i in range(3)], [Feedback("r1", 0.02)])
    for name in ("ab.csv", "ab.parquet"):
        assert main(["export", "--url", url, "--out", str(tmp_path / name)]) == 0
        frame = pd.read_csv(tmp_path / name) if name.endswith("csv") else pd.read_parquet(tmp_path / name)
        assert list(frame["request_id"]) == ["r0", "r1", "r2"]
        assert frame["realized_return"].tolist()[1] == 0.02 and frame["realized_return"].isna().sum() == 2
    assert "wrote 3 rows" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="must end in .csv or .parquet"):
        export(log, tmp_path / "ab.xlsx")


def test_a_bad_url_or_a_missing_log_names_itself(tmp_path, capsys):
    with pytest.raises(ConfigError, match="not a database URL"):
        ExperimentLog("not a url")
    assert main(["export", "--url", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(tmp_path / "x.csv")]) == 2
    assert "none.db does not exist" in capsys.readouterr().err


def test_a_tail_on_postgresql_picks_up_a_row_whose_transaction_committed_after_a_later_one(postgres_url):
    """PostgreSQL hands out seq values when rows are inserted but shows them when their transactions commit, so with
    several writers (ingress replicas) a tail can see seq 2 before seq 1: it must come back for 1."""
    log = ExperimentLog(postgres_url)
    tail = Tail(log, "assignments", "exp")
    with log.engine.connect() as slow:  # a writer whose batch takes longer
        slow.execute(assignments.insert().values(**_row(answer(1))))
        log.append([answer(2)])  # a later batch commits first
        assert [r["request_id"] for r in tail.poll()] == ["r2"]
        slow.commit()
    assert [r["request_id"] for r in tail.poll()] == ["r1"]
    assert tail.poll() == []
    log.append([answer(3)])
    assert [r["request_id"] for r in tail.poll()] == ["r3"]


def test_postgresql_refuses_nothing_that_the_http_api_accepts(postgres_url):
    """PostgreSQL enforces the columns' lengths (SQLite does not): the longest client id and request id the API
    accepts, and the longest experiment name, are written and read back; a feedback for an unknown long id is
    'unknown', not an error."""
    from experiments.config import ExperimentConfig
    from experiments.settings import experiment_key
    from serving.schemas import AllocateRequest, FeedbackRequest

    client = "c" * AllocateRequest.model_fields["client_id"].metadata[0].max_length
    longest_id = "r" * FeedbackRequest.model_fields["request_id"].metadata[1].max_length
    name = "n" * ExperimentConfig.model_fields["name"].metadata[1].max_length
    key = experiment_key(ExperimentConfig(name=name, control="ppo"))
    log = ExperimentLog(postgres_url.replace("postgresql+psycopg://", "postgresql://"))  # as a user writes it
    assert log.url.drivername == "postgresql+psycopg"
    assert log.append(
        [Assignment("r0", key, "ppo", "ppo", (1.0,), 1.0, client_id=client)], [Feedback(longest_id, 0.0)]
    ) == [("unknown", None)]
    assert [(r["client_id"], r["experiment"]) for r in log.read().assignments] == [(client, key)]
