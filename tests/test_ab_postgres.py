"""The A/B app with its experiment log on a real PostgreSQL server (a cluster's choice; SQLite is the default and
test_ab_experiments covers it): nothing acknowledged is lost when the experiment store and an ingress replica are
killed under traffic, and a whole-app redeploy rebuilds the same statistics from the log. Starts and stops its own
Ray, Serve and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import (
    ab_app,
    kill_store_and_an_ingress_under_traffic,
    new_postgres_database,
    redeploy_under_traffic,
)

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(ray_local, models, monkeypatch_module, postgres_server):
    """The app with a token and its log in a fresh PostgreSQL database; ``(base URL, log URL, redeploy)``."""
    with ab_app(models, monkeypatch_module, new_postgres_database(postgres_server)) as app:
        yield app


def test_nothing_acknowledged_is_lost_on_postgresql_when_the_store_and_an_ingress_replica_are_killed(served, tiny):
    base, log_url, _ = served
    assert log_url.startswith("postgresql+psycopg://")
    kill_store_and_an_ingress_under_traffic(base, log_url, tiny)


def test_a_whole_app_redeploy_rebuilds_the_same_statistics_from_postgresql(served, tiny):
    before, after = redeploy_under_traffic(served, tiny)
    assert after["arms"] == before["arms"] and after["split"] == before["split"]
    assert sum(arm["feedback"] for arm in after["arms"].values()) >= 60
