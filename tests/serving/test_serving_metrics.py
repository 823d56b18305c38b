"""serving.metrics: what a request records reaches the Prometheus series once, at the next flush, and not before."""

from __future__ import annotations

from types import SimpleNamespace

from serving.metrics import LATENCY_BOUNDARIES_MS, RequestMetrics


class Series:
    """Stands in for a ``ray.serve.metrics`` Counter or Histogram: keeps every call."""

    def __init__(
        self, name: str, description: str, tag_keys: tuple[str, ...], boundaries: list[float] | None = None
    ) -> None:
        self.name, self.tag_keys, self.boundaries, self.calls = name, tag_keys, boundaries, []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.calls.append((value, dict(tags)))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.calls.append((value, dict(tags)))


RECORDER = SimpleNamespace(Counter=Series, Histogram=Series)


def test_records_reach_the_series_only_at_flush_and_only_once():
    metrics = RequestMetrics("rlportfolio_", RECORDER)
    assert (
        metrics.requests_total.name == "rlportfolio_requests_total"
        and metrics.latency_ms.boundaries == LATENCY_BOUNDARIES_MS
    )
    for _ in range(3):
        metrics.answered("ppo", "allocate")
    metrics.answered("sac", "allocate")
    metrics.answered("ppo", "predict")
    metrics.failed("sac", "allocate")
    metrics.observe("ppo", "allocate", 2.5)
    metrics.observe("sac", "allocate", 7.0)
    assert metrics.requests_total.calls == metrics.errors_total.calls == metrics.latency_ms.calls == []

    metrics.flush()
    assert sorted(metrics.requests_total.calls, key=str) == sorted(
        [
            (3, {"agent": "ppo", "endpoint": "allocate"}),
            (1, {"agent": "sac", "endpoint": "allocate"}),
            (1, {"agent": "ppo", "endpoint": "predict"}),
        ],
        key=str,
    )
    assert metrics.errors_total.calls == [(1, {"agent": "sac", "endpoint": "allocate"})]
    assert metrics.latency_ms.calls == [
        (2.5, {"agent": "ppo", "endpoint": "allocate"}),
        (7.0, {"agent": "sac", "endpoint": "allocate"}),
    ]

    metrics.flush()  # nothing new: nothing counted twice
    assert (
        len(metrics.requests_total.calls) == 3
        and len(metrics.errors_total.calls) == 1
        and len(metrics.latency_ms.calls) == 2
    )


def test_records_made_after_a_flush_wait_for_the_next():
    metrics = RequestMetrics("x_", RECORDER)
    metrics.answered("ppo", "allocate")
    metrics.flush()
    metrics.answered("ppo", "allocate")
    metrics.answered("ppo", "allocate")
    assert [value for value, _ in metrics.requests_total.calls] == [1]
    metrics.flush()
    assert [value for value, _ in metrics.requests_total.calls] == [1, 2]
