"""The app's running experiment over its durable log: what the ``StatsStore`` deployment holds (no Serve here).

``ExperimentRunner`` owns one ``Experiment`` and the bucket layout the ingress replicas route by. Its statistics
come only from the log: ``poll`` reads the rows the ingress replicas committed since the last poll (``Tail``) and
feeds them to the experiment, then applies the experiment's decisions (each a new split version, a resized layout
and a decision row with the reason and the control state). A fresh runner on an existing log replays it: the
statistics from every row, the control state (rollbacks, ramp steps, promotion, an operator's split) from the last
decision; so a restart of the store, of an ingress replica or of the whole app loses nothing acknowledged.

Settings come from two places, and the rule between them is simple: **a deploy wins when it changes something,
otherwise the state stands.** ``configure`` receives the ingress ``user_config`` (``ExperimentSettings``) every
time a replica starts or Serve reconfigures it. A different experiment config starts (or resumes, if the log has it)
another experiment; a changed ``split`` or ``shadow`` is applied as a ``deploy`` decision; the same settings as the
last deploy change nothing, so an operator's change through the admin API survives replica restarts until the next
deploy that changes the settings. Both paths record who decided (``source``: deploy, admin, engine).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.errors import ConfigError
from experiments.buckets import BucketLayout
from experiments.config import ExperimentConfig
from experiments.consistency import Expectation
from experiments.decisions import Decision
from experiments.experiment import Experiment, check_expectations
from experiments.log_schema import DecisionRecord
from experiments.log_store import ExperimentLog
from experiments.log_tail import Tail
from experiments.outcomes import net_log_growth
from experiments.settings import ExperimentSettings, Routing, experiment_key, resolve_settings

log = logging.getLogger(__name__)

NOT_CONFIGURED = "store"  # the field of the error a store answers before any configure (the ingress says 503)


def feed_answer(experiment: Experiment, row: Mapping[str, Any], shares: Mapping[str, float] | None) -> None:
    """One logged answer (an ``assignments`` row, or an export's) into ``experiment``: counted for the arm the split
    routed to, as an error when a call failed on the way or a fallback answered; ``shares``: its split's."""
    failed = row["errors"] > 0 or row["arm"] != row["routed_arm"]
    client = row["client_id"] if isinstance(row["client_id"], str) and row["client_id"] else None
    experiment.assigned(row["routed_arm"], row["latency_ms"], error=failed, shares=shares, client=client)


class ExperimentRunner:
    """One experiment at a time, over ``log``.

    :param known: every deployed agent (the arms and the shadow must be among them).
    :param fallback: the control of the default experiment when it is in the split.
    :param default_split: the split when the settings name none (equal over the RL agents).
    :param versions: agent -> model version, part of the experiment's key.
    :param expectations: agent -> its validation distribution of daily paired differences to the gate's baseline
        (``guardrails.consistency``).
    """

    def __init__(
        self,
        log_: ExperimentLog,
        known: set[str],
        fallback: str,
        default_split: Mapping[str, float],
        versions: Mapping[str, str] | None = None,
        expectations: Mapping[str, Expectation] | None = None,
    ) -> None:
        self.log = log_
        self.expectations = dict(expectations or {})
        self.versions = dict(versions or {})
        self.known = set(known)
        self.fallback = fallback
        self.default_split = dict(default_split)
        self.experiment: Experiment | None = None
        self.key = ""
        self.version = 0
        self.layout = BucketLayout.initial({fallback: 1.0})
        self.shadow: str | None = None
        self.settings: dict[str, Any] = {}
        self._version_shares: dict[int, dict[str, float]] = {}
        self._tails: tuple[Tail, Tail] | None = None
        self._pending: list[DecisionRecord] = []
        self._shadow_latencies: dict[str, deque] = {}
        self._shadow_requests: dict[str, int] = {}

    # -- settings -------------------------------------------------------------------------------------------------

    def resolve(self, settings: Mapping[str, Any] | ExperimentSettings) -> tuple[ExperimentConfig, ExperimentSettings]:
        config, parsed = resolve_settings(settings, self.known, self.fallback, self.default_split)
        check_expectations(config, self.expectations)
        return config, parsed

    def configure(self, settings: Mapping[str, Any]) -> Routing:
        """Apply the ingress ``user_config`` (see the module docstring for what wins)."""
        config, parsed = self.resolve(settings)
        deploy = parsed.model_dump(mode="json")
        key = experiment_key(config, self.versions)
        if key != self.key:
            self._open(key, config, deploy)
        last_deploy = next((d for d in reversed(self.log.decisions(key)) if d["source"] == "deploy"), None)
        if last_deploy is None or last_deploy["config"] != deploy:
            self._deploy(config, parsed, deploy, last_deploy)
        return self.routing()

    def _deploy(
        self,
        config: ExperimentConfig,
        parsed: ExperimentSettings,
        deploy: dict[str, Any],
        last_deploy: dict[str, Any] | None,
    ) -> None:
        """A deploy whose settings differ from the last one: what changed wins; the rest of the state stands. A
        split cannot revive a rolled-back arm (its share goes to the control) nor undo a promotion (kept, and said)."""
        experiment = self.experiment
        assert experiment is not None
        changes = []
        shadow = parsed.shadow
        split_changed = (
            last_deploy is not None
            and config.split is not None
            and last_deploy["config"].get("split") != deploy.get("split")
        )
        target = None
        if split_changed and experiment.promoted is not None:
            changes.append(f"split not applied: '{experiment.promoted}' was promoted")
        elif split_changed:
            target = {n: (0.0 if n in experiment.stopped else w) for n, w in config.split.items()}
            target[config.control] = target.get(config.control, 0.0) + sum(
                config.split.get(n, 0.0) for n in experiment.stopped
            )
            if experiment.stopped:
                changes.append(f"rolled-back {sorted(experiment.stopped)} keep no share")
        if target is not None:
            decision = experiment.set_split(target, "serve deploy: new split")
            changes.insert(0, f"split {decision.shares}")
        if self.shadow != shadow:
            self.shadow = shadow
            changes.append(f"shadow {shadow}")
        reason = "serve deploy: " + (", ".join(changes) if changes else "settings recorded")
        self._record([Decision("deploy", None, reason, dict(experiment.shares))], "deploy", deploy)

    def _open(self, key: str, config: ExperimentConfig, deploy: dict[str, Any]) -> None:
        """Start experiment ``key``, or rebuild it from the log when it has run before."""
        self.key, self.experiment = key, Experiment(config, expectations=self.expectations)
        self._tails = (Tail(self.log, "assignments", key), Tail(self.log, "feedback", key))
        self._shadow_latencies, self._shadow_requests = {}, {}
        history = self.log.decisions(key)
        if not history:
            self.version, self.layout = 0, BucketLayout.initial(self.experiment.shares)
            self._version_shares = {}
            self._record([self.experiment.decisions[0]], "deploy", deploy)
            self.shadow = deploy.get("shadow")
            log.info("experiment %s started: %s", key, self.experiment.shares)
            return
        self._version_shares = {d["split_version"]: d["shares"] for d in history}
        last = history[-1]
        self.version, self.layout = last["split_version"], BucketLayout.from_json(last["layout"])
        self.experiment.restore(last["state"])
        deploys = [d for d in history if d["source"] == "deploy"]
        self.shadow = deploys[-1]["config"].get("shadow") if deploys else None
        self.settings = dict(deploys[-1]["config"]) if deploys else {}
        rows = self._drain()
        log.info("experiment %s rebuilt from the log: %d rows, split %s", key, rows, self.experiment.shares)

    # -- the log --------------------------------------------------------------------------------------------------

    def _drain(self) -> int:
        """Feed every committed row not seen yet to the experiment; the number of rows."""
        assert self._tails is not None and self.experiment is not None
        experiment, total = self.experiment, 0
        for tail, feed in ((self._tails[0], self._assignment), (self._tails[1], self._feedback)):
            while True:
                rows = tail.poll()
                for row in rows:
                    feed(experiment, row)
                total += len(rows)
                if tail.exhausted:
                    break
        return total

    def _assignment(self, experiment: Experiment, row: dict[str, Any]) -> None:
        if row["kind"] == "shadow":
            self._shadow_requests[row["arm"]] = self._shadow_requests.get(row["arm"], 0) + 1
            self._shadow_latencies.setdefault(row["arm"], deque(maxlen=10_000)).append(row["latency_ms"])
            return
        if row["forced"] or row["routed_arm"] not in experiment.arms:
            return  # X-Agent requests were not randomised: logged, kept out of the comparison
        feed_answer(experiment, row, self._version_shares.get(row["split_version"]))

    def _feedback(self, experiment: Experiment, row: dict[str, Any]) -> None:
        """By intention to treat: a return counts for the arm the split routed to, even when a fallback answered
        (crediting the answering arm would hand the control the hard cases its challenger failed on)."""
        if row["forced"] or row["routed_arm"] not in experiment.arms:
            return
        experiment.feedback(row["routed_arm"], row["realized_return"], at=row["created_at"])
        if row.get("asset_returns") is not None and row.get("scores"):
            growth = net_log_growth(row["scores"], row["held"], row["asset_returns"], row["cost_rate"])
            experiment.observe(row["as_of"], growth)

    def _record(self, made: list[Decision], source: str, config: Mapping[str, Any] | None = None) -> None:
        """Give each decision a split version and a layout, and log them in one transaction. The decisions are in
        effect already: if the log cannot take them now, they wait in ``_pending`` and every ``poll`` tries again
        (so a rebuild never misses a decision the live store applied once the database is back)."""
        assert self.experiment is not None
        if config is not None and source == "deploy":
            self.settings = dict(config)
        for decision in made:
            self.version += 1
            self.layout = self.layout.resized(decision.shares)
            self._version_shares[self.version] = dict(decision.shares)
            self._pending.append(
                DecisionRecord(
                    experiment=self.key,
                    kind=decision.kind,
                    arm=decision.arm,
                    reason=decision.reason,
                    source=source,
                    split_version=self.version,
                    shares=decision.shares,
                    layout=self.layout.as_json(),
                    config=dict(self.settings),
                    state=self.experiment.control_state(),
                )
            )
            log.info(
                "experiment %s: %s %s (%s): %s", self.key, decision.kind, decision.arm or "", source, decision.reason
            )
        self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            self.log.append(decisions_=self._pending)
            self._pending = []

    def poll(self) -> list[Decision]:
        """Read what was committed since the last poll, then take and log the decisions it calls for."""
        if self.experiment is None:
            return []
        self._write_pending()
        self._drain()
        made = self.experiment.decide()
        self._record(made, "engine")
        return made

    # -- views ----------------------------------------------------------------------------------------------------

    def routing(self) -> Routing:
        self._experiment_running()
        return Routing(self.key, self.version, self.layout.as_json(), self.shadow, tuple(sorted(self.experiment.arms)))

    def summary(self) -> dict[str, Any]:
        """``/ab/stats``: the experiment's statistics, after reading every committed row."""
        self._experiment_running()
        self._drain()
        out = self.experiment.summary()
        shadows = {
            name: {"requests": self._shadow_requests[name], "latency_p50_ms": float(np.percentile(lat, 50))}
            for name, lat in sorted(self._shadow_latencies.items())
        }
        return {
            "experiment": self.key,
            "split": {n: s for n, s in self.experiment.shares.items() if s > 0},
            "split_version": self.version,
            "shadow": self.shadow,
            "shadows": shadows,
            **out,
            "decisions": self._decision_views()[-50:],
        }

    def describe(self) -> dict[str, Any]:
        """``GET /ab/experiment``: the config, the state and every decision with its reason."""
        self._experiment_running()
        return {
            "experiment": self.key,
            "config": self.experiment.config.model_dump(mode="json"),
            "split_version": self.version,
            "shares": dict(self.experiment.shares),
            "layout": self.layout.as_json(),
            "shadow": self.shadow,
            "state": self.experiment.control_state(),
            "decisions": self._decision_views(),
        }

    def _decision_views(self) -> list[dict[str, Any]]:
        keys = ("split_version", "kind", "arm", "reason", "source", "shares", "created_at")
        return [{k: d[k] for k in keys} for d in self.log.decisions(self.key)]

    # -- the admin API ----------------------------------------------------------------------------------------------

    def set_split(self, shares: Mapping[str, float], reason: str) -> Routing:
        return self._admin([self._experiment().set_split(shares, reason)])

    def promote(self, arm: str, reason: str) -> Routing:
        return self._admin([self._experiment().promote(arm, reason)])

    def rollback(self, arm: str | None, reason: str) -> Routing:
        return self._admin(self._experiment().rollback(arm, reason))

    def ramp(self, arm: str, step: int, reason: str) -> Routing:
        return self._admin([self._experiment().ramp_to(arm, step, reason)])

    def resume(self, reason: str) -> Routing:
        return self._admin([self._experiment().resume(reason)])

    def _experiment_running(self) -> Experiment:
        if self.experiment is None:
            raise ConfigError(f"{NOT_CONFIGURED}: no ingress replica has configured one since the store started")
        return self.experiment

    def _experiment(self) -> Experiment:
        experiment = self._experiment_running()
        self._drain()  # decide on every acknowledged row
        return experiment

    def _admin(self, made: list[Decision]) -> Routing:
        self._record(made, "admin")
        return self.routing()
