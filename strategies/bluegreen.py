"""Blue/green: switch the active Service from blue to green, validate green, switch back on fail.

* Before the switch green's pods must be Ready (the pod gate on green's labels).
* The active Service's selector moves from blue to green in one write; the run starts then.
* During `validationPeriod` every look judges green (the analysis' canary matchers) by the SLO
  gates and against blue's own figures (the baseline matchers) over the same length of time
  just before the switch: there is no concurrent baseline, so the baseline's window is the
  look's window moved back by its own length (`BeforeSwitch`).
* Green's pods go through the health gate (`strategies.health`) at every look: a failing gate
  switches back to blue; a hold (Pending for resources) keeps green and the validation going
  until it clears. After every switch back the rollback is checked (`strategies.recovery`: the
  selector on blue, blue's pods Ready, blue's error rates back at their level before the switch)
  and recorded (`rollback` in the progress).
* A fail moves the selector back to blue at once (exit 1). A pass at the end keeps green
  (promoted). Undecided at the end: `onTimeout` (`pause` keeps green and exits 3 for a person,
  `abort` switches back, `promote` keeps green as promoted).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import structlog

from analyzer.analysis import fetch_observations, judge_observations
from analyzer.clock import Clock, format_time
from analyzer.notify import Notifier
from analyzer.runs.model import RunKey
from analyzer.runs.store import RunStore, StoreUnavailable
from analyzer.verdicts import AnalysisReport, MetricStatus, Verdict
from metrics.source import MetricQuery, MetricSource, Series, Version, Window
from strategies.health import Act, Finding
from strategies.kube.pods import PodGate, PodState, PodsUnhealthy
from strategies.kube.services import SelectorChanged, ServiceSwitch
from strategies.record import ABORTED, INTERRUPTED, PAUSED, PROMOTED, Outcome, Recorder
from strategies.recovery import Part, check_of, rates_since
from strategies.restore import RestoreFailed, RestorePolicy, until_restored
from strategies.rollout_file import RolloutFile


class BeforeSwitch:
    """A source whose baseline windows are moved back by their own length (blue before the
    switch, as long as green has run since)."""

    def __init__(self, inner: MetricSource) -> None:
        self._inner = inner

    def check(self) -> None:
        self._inner.check()

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        if version is Version.BASELINE:
            length = window.end - window.start
            window = Window(start=window.start - length, end=window.start, step=window.step)
        return self._inner.fetch(query, version, matchers, window)


def _labels(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


class BlueGreenRollout:
    def __init__(
        self,
        file: RolloutFile,
        *,
        switch: ServiceSwitch,
        gate: PodGate,
        source: MetricSource,
        store: RunStore,
        clock: Clock,
        on_message: Any = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.file = file
        self.r = file.rollout
        assert self.r.blue is not None and self.r.green is not None
        self.blue, self.green = dict(self.r.blue), dict(self.r.green)
        self.switch = switch
        self.gate = gate
        self.clock = clock
        self.source = source
        self.recorder = Recorder(
            file.analysis, store, BeforeSwitch(source), clock, notifier=notifier, way="blueGreen"
        )
        self.say = on_message or (lambda _m: None)
        self.log = structlog.get_logger().bind(service=switch.where)
        self._holding = False
        """The health gate holds green where it is (Pending pods): the validation goes on."""
        self._switched: datetime | None = None

    def _finish_anyway(self, decision: str, reason: str) -> None:
        """Record the end as far as the store can take it (the run ends on an error)."""
        try:
            self._finish(decision, reason, "error")
        except Exception as error:
            self.log.error("the run's end could not be recorded", error=str(error))

    def _finish(self, decision: str, reason: str, verdict: str) -> Outcome:
        self.log.info("blue/green finished", decision=decision, reason=reason)
        return self.recorder.finish(decision, reason, verdict)

    def _preview(self) -> AnalysisReport | None:
        """Green through the preview Service, against blue serving now, over the last
        `validationPeriod`; None when green has had no preview traffic."""
        ServiceSwitch(
            self.switch.api, namespace=self.r.namespace, name=str(self.r.preview_service)
        ).selector()  # it exists
        now = self.clock.now()
        length = timedelta(seconds=self.r.validation_period)
        window = Window(start=now - length, end=now, step=length)
        params = {
            "namespace": self.r.namespace,
            "rollout": str(self.r.active_service),
            "canaryHash": _labels(self.green),
            "stableHash": _labels(self.blue),
        }
        plan = self.recorder.plan
        observations = fetch_observations(plan, self.source, window, params)
        report = judge_observations(plan, observations, looks=[1], params=params)
        if all(m.status is MetricStatus.NO_DATA for m in report.metrics):
            self.say("the preview has had no traffic: not analysed")
            return None
        self.say(f"preview analysis: {report.verdict}: {report.reason}")
        return report

    def _error_rate_over(self, report: AnalysisReport) -> str | None:
        """`rollbackOn.maxErrorRate`: green's error rate on any error-rate metric (a ratio whose
        lower values are better) above the limit, once it has `minRequests` requests."""
        limit = self.r.rollback_on.max_error_rate
        if limit is None:
            return None
        specs = {m.name: m for m in self.recorder.plan.metrics}
        for m in report.metrics:
            spec = specs.get(m.name)
            rate, requests = m.canary.get("rate"), m.canary.get("requests") or 0
            if spec is None or spec.higher_is_better or not isinstance(rate, float | int):
                continue
            if requests >= self.r.rollback_on.min_requests and rate > limit:
                return (
                    f"green's {m.name} is {rate:.4g} over {requests:g} requests, above "
                    f"rollbackOn.maxErrorRate {limit:g}"
                )
        return None

    def _health_seen(self, health: PodState) -> None:
        """One look of the gate: each new finding recorded in the run's progress (`health`), a
        hold said once when it starts."""
        self._holding = health.act is Act.HOLD
        self._note(health.findings)

    def _note(self, findings: tuple[Finding, ...]) -> None:
        if self.recorder.run is None:  # before the switch: the gate holds or fails, said only
            for f in findings:
                self.log.warning("health gate", finding=f.text())
            return
        seen = self.recorder.progress.setdefault("health", [])
        known = {(e.get("kind"), e.get("subject"), e.get("reason")) for e in seen}
        for f in findings:
            if f.key not in known:
                seen.append(f.as_json())
                if f.act is Act.HOLD:
                    self.say(f"held (green kept, validation goes on until it clears): {f.text()}")

    def _verified(self, outcome: Outcome) -> Outcome:
        """One interval after switching back: the selector on blue, blue's pods Ready, blue's
        error rates back at their level before the switch (`strategies.recovery`); recorded in
        the progress (`rollback`), never changing the decision (I6)."""
        restored = self.clock.now()
        try:
            self.clock.sleep(self.file.analysis.interval)
            selector = self.switch.selector()
            where = f"{self.switch.where} selects {selector}"
            parts = [Part("selector", selector == self.blue, where)]
            blue = PodGate(self.switch.api, namespace=self.r.namespace,
                           selector=_labels(self.blue), ready_timeout=self.r.pod_ready_timeout,
                           clock=self.clock).state()  # fmt: skip
            parts.append(Part("blue pods", blue.ready, blue.summary))
            run = self.recorder.run
            assert run is not None and self._switched is not None
            parts += rates_since(self.recorder.plan, self.source, dict(run.params),
                                 started=self._switched, restored=restored,
                                 now=self.clock.now())  # fmt: skip
            check = check_of(parts, self.clock.now())
        except Exception as error:
            check = check_of([Part("check", False, f"could not be made: {error}")], self.clock.now())
        outcome.rollback = check.as_json()
        self.recorder.progress["rollback"] = outcome.rollback
        try:
            self.recorder.save()
        except Exception as error:
            self.log.error("the rollback's check could not be recorded", error=str(error))
        (self.log.info if check.verified else self.log.error)(check.text())
        self.say(check.text())
        return outcome

    def _back_to_blue(self) -> None:
        """The selector back on blue, tried until it lands and reads back (I2)."""
        until_restored(
            lambda: self.switch.switch(self.green, self.blue),
            lambda: self.switch.selector() == self.blue,
            what=self.switch.where,
            clock=self.clock,
            policy=RestorePolicy(deadline=self.r.rollback_deadline),
        )
        self.recorder.progress["selector"] = self.blue
        self.recorder.progress.pop("pending", None)

    def run(self) -> Outcome:
        current = self.switch.selector()
        if current != self.blue:
            raise SelectorChanged(
                f"{self.switch.where} selects {current}, not blue {self.blue}: nothing to switch"
            )
        self.gate.wait_ready(self._health_seen)
        if self.r.preview_service:
            preview = self._preview()
            if preview is not None and preview.verdict is Verdict.FAIL:
                reason = f"green failed on the preview, not switched: {preview.reason}"
                self.log.warning("blue/green aborted on the preview", reason=preview.reason)
                return Outcome(decision=ABORTED, reason=reason, run_id=None, final=preview)
        switched = self.clock.now()
        self._switched = switched
        digest = hashlib.sha256(f"{self.file.text}{format_time(switched)}".encode()).hexdigest()
        key = RunKey(
            self.file.analysis.name, self.r.namespace, str(self.r.active_service), digest[:12]
        )
        params = {
            "namespace": self.r.namespace,
            "rollout": str(self.r.active_service),
            "canaryHash": _labels(self.green),
            "stableHash": _labels(self.blue),
        }
        progress = {
            "strategy": "blueGreen",
            "service": f"{self.r.namespace}/{self.r.active_service}",
            "state": "running",
            "selector": self.blue,
            "pending": {"selector": self.green},
            "steps": [
                {
                    "step": 1,
                    "selector": self.green,
                    "start": format_time(switched),
                    "end": None,
                    "verdict": None,
                }
            ],
            "reason": "",
        }
        # I3: the run and the switch it is about to make are recorded first: a store that cannot
        # record, or a placeholder the strategy does not fill, stops here with blue untouched
        self.recorder.start(key, params, switched, progress)
        end = switched + timedelta(seconds=self.r.validation_period)
        try:
            self.switch.switch(self.blue, self.green)
            self.recorder.progress["selector"] = self.green
            self.recorder.progress.pop("pending", None)
            self.say(f"{self.switch.where} switched to green {self.green}; validating")
            while True:
                left = (end - self.clock.now()).total_seconds()
                interval = self.file.analysis.interval
                self.clock.sleep(interval if self._holding else max(0.0, min(interval, left)))
                self._health_seen(self.gate.check())
                report = self.recorder.look()
                self.say(
                    f"validation look {self.recorder.run.looks if self.recorder.run else 0}:"
                    f" {report.verdict} ({max(left, 0):.0f} s left)"
                )
                too_many = self._error_rate_over(report)
                if too_many is not None:
                    self._back_to_blue()
                    return self._verified(
                        self._finish(ABORTED, f"switched back to blue: {too_many}", "fail")
                    )
                if report.verdict is Verdict.FAIL and self.r.rollback_on.analysis_fails:
                    self._back_to_blue()
                    return self._verified(
                        self._finish(ABORTED, f"switched back to blue: {report.reason}", "fail")
                    )
                if (end - self.clock.now()).total_seconds() <= 0 and not self._holding:
                    break
        except PodsUnhealthy as error:
            self._note(tuple(f for f in error.findings if isinstance(f, Finding)))
            self._back_to_blue()
            return self._verified(
                self._finish(
                    ABORTED, f"switched back to blue: the health gate failed: {error}", "fail"
                )
            )
        except KeyboardInterrupt:
            self._back_to_blue()
            return self._finish(INTERRUPTED, "interrupted: switched back to blue", "interrupted")
        except RestoreFailed as error:
            self._finish_anyway(ABORTED, str(error))
            raise
        except Exception as error:
            self.log.error(
                "blue/green stopped by an error; switching back to blue", error=str(error)
            )
            restore_failed: RestoreFailed | None = None
            try:
                self._back_to_blue()
            except RestoreFailed as failed:
                self.log.error("could not switch back to blue", error=str(failed))
                restore_failed = failed
            except Exception as other:  # the selector changed by someone else: reported
                self.log.error("could not switch back to blue", error=str(other))
            reason = f"stopped by an error: {error}"
            if restore_failed is not None:
                reason += f"; {restore_failed}"
            self._finish_anyway(ABORTED, reason)
            if restore_failed is not None:
                raise restore_failed from error
            raise
        if report.verdict is Verdict.PASS:
            return self._finish(PROMOTED, f"green kept: {report.reason}", "pass")
        if self.r.on_timeout == "abort":
            self._back_to_blue()
            return self._verified(
                self._finish(
                    ABORTED, f"switched back to blue, undecided: {report.reason}", "inconclusive"
                )
            )
        if self.r.on_timeout == "promote":
            return self._finish(PROMOTED, f"green kept undecided: {report.reason}", "inconclusive")
        reason = f"green kept, undecided: a person decides: {report.reason}"
        try:
            return self._finish(PAUSED, reason, "inconclusive")
        except StoreUnavailable:
            # a pause nobody can see recorded is no pause a person can act on: back to blue
            self.log.error("the paused run could not be recorded; switching back to blue")
            self._back_to_blue()
            raise
