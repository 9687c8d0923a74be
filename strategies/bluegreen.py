"""Blue/green: switch the active Service from blue to green, validate green, switch back on fail.

* Before the switch green's pods must be Ready (the pod gate on green's labels).
* The active Service's selector moves from blue to green in one write; the run starts then.
* During `validationPeriod` every look judges green (the analysis' canary matchers) by the SLO
  gates and against blue's own figures (the baseline matchers) over the same length of time
  just before the switch: there is no concurrent baseline, so the baseline's window is the
  look's window moved back by its own length (`BeforeSwitch`).
* Green's pods go through the health gate (`strategies.health`) at every look: a failing gate
  switches back to blue, the decision told as the gate's kind (`image-pull`, `readiness`, ...,
  with the findings in its `extra.health`); a hold (Pending for resources, the Argo CD
  Application out of sync) keeps green and the validation going until it clears, recorded and
  told once as a decision of its kind (`pending`: the platform team's route). After every switch
  back the rollback is checked (`strategies.recovery`: the selector on blue, blue's pods Ready,
  blue's error rates back at their level before the switch) and recorded (`rollback` in the
  progress).
* Before the switch green's pods must pass the gate: a fail (or green failing on the preview)
  aborts with blue untouched, a hold waits; either opens the run then (its analysis still starts
  at the switch), so that it is recorded and told as after the switch.
* People's requests (`strategies.manual`, `verdict canary abort|promote|pause|resume`) are read
  at every look: abort switches back to blue, promote keeps green as a manual promotion, pause
  holds green and the validation's end (resume moves it by the time held). Before the switch
  only an abort is taken (blue kept).
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
from analyzer.runs.requests import REQUEST_KEY, ActionRequest, progress_of, waiting_request
from analyzer.runs.store import RunStore, StoreUnavailable
from analyzer.verdicts import AnalysisReport, MetricStatus, Verdict
from metrics.source import MetricQuery, MetricSource, Series, Version, Window
from strategies.health import Act, Finding
from strategies.kube.pods import PodGate, PodState, PodsUnhealthy
from strategies.kube.services import SelectorChanged, ServiceSwitch
from strategies.manual import (
    ManualAbort,
    ManualPromote,
    held,
    held_seconds,
    hold,
    manual_event,
    manual_reason,
    release,
    take_request,
)
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

    def _finish(
        self,
        decision: str,
        reason: str,
        verdict: str,
        *,
        outcome: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        self.log.info("blue/green finished", decision=decision, reason=reason)
        return self.recorder.finish(decision, reason, verdict, outcome=outcome, extra=extra)

    def _params(self) -> dict[str, str]:
        return {
            "namespace": self.r.namespace,
            "rollout": str(self.r.active_service),
            "canaryHash": _labels(self.green),
            "stableHash": _labels(self.blue),
        }

    def _open(self, when: datetime, progress: dict[str, Any]) -> None:
        """Start the run in the store (its analysis from `when`)."""
        digest = hashlib.sha256(f"{self.file.text}{format_time(when)}".encode()).hexdigest()
        key = RunKey(
            self.file.analysis.name, self.r.namespace, str(self.r.active_service), digest[:12]
        )
        self.recorder.start(key, self._params(), when, progress)

    def _open_before_switch(self) -> None:
        """The run, opened before the switch for what the health gate says (blue serves)."""
        if self.recorder.run is not None:
            return
        self._open(self.clock.now(), {
            "strategy": "blueGreen",
            "service": f"{self.r.namespace}/{self.r.active_service}",
            "state": "running",
            "selector": self.blue,
            "steps": [],
            "reason": "",
        })  # fmt: skip

    def _verdict_now(self) -> str:
        final = self.recorder.final
        return str(final.verdict) if final is not None else "inconclusive"

    def _not_switched(
        self,
        reason: str,
        *,
        outcome: str | None = None,
        findings: tuple[Finding, ...] = (),
        manual: ActionRequest | None = None,
        verdict: str = "fail",
    ) -> Outcome:
        """Green broken before the switch (the health gate, the preview, a person): blue kept,
        the run recorded (opened now if it was not) and its decision told."""
        extra: dict[str, Any] = {}
        if findings:
            extra["health"] = [f.as_json() for f in findings]
        if manual is not None:
            extra["manual"] = manual.as_dict()
        try:
            self._open_before_switch()
            self._note(findings)
            return self._finish(ABORTED, reason, verdict, outcome=outcome, extra=extra)
        except StoreUnavailable as error:  # nothing moved: the decision stands, unrecorded
            self.log.error("the decision could not be recorded", error=str(error))
            run = self.recorder.run
            return Outcome(decision=ABORTED, reason=reason, run_id=run.id if run else None,
                           final=self.recorder.final)  # fmt: skip

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
        hold recorded and told once when it starts (a decision of its kind: `pending`, ...),
        a hold that cleared noted. Before the switch a hold opens the run, and a person's abort
        is taken (raised: `ManualAbort`)."""
        self._holding = health.act is Act.HOLD
        if self.recorder.run is None:
            if not health.held:
                return
            self._open_before_switch()
        added = self._note(health.findings)
        now = format_time(self.clock.now())
        current = {f.key for f in health.findings}
        cleared = False
        for entry in self.recorder.progress.get("health") or []:
            key = (entry.get("kind"), entry.get("subject"), entry.get("reason"))
            if entry.get("act") == "hold" and not entry.get("cleared") and key not in current:
                entry["cleared"] = now
                cleared = True
                self.say(f"hold cleared: {entry.get('subject')}: {entry.get('reason')}")
        where = (
            "green kept, validation goes on until it clears"
            if self._switched is not None
            else "blue serves; green is not switched to until it clears"
        )
        for f in added:
            if f.act is not Act.HOLD:
                continue
            reason = f"held ({where}): {f.text()}"
            self.say(reason)
            self.log.warning("rollout held", kind=f.kind, subject=f.subject, reason=f.reason)
            self.recorder.note(f.kind, reason, extra={"health": [f.as_json()]})
        if added or cleared:
            self.recorder.save()
        if self._switched is None:
            self._abort_before_switch()

    def _note(self, findings: tuple[Finding, ...]) -> list[Finding]:
        """Add the findings not yet in the run's progress (`health`, with the version the active
        Service selected then); returns those."""
        if self.recorder.run is None:
            return []
        seen = self.recorder.progress.setdefault("health", [])
        known = {(e.get("kind"), e.get("subject"), e.get("reason")) for e in seen}
        added = [f for f in findings if f.key not in known]
        active = "green" if self._switched is not None else "blue"
        for f in added:
            seen.append({**f.as_json(), "active": active})
        return added

    def _abort_before_switch(self) -> None:
        """A person's abort waiting in the run before the switch: taken (`ManualAbort`); other
        requests wait for the validation's looks."""
        run_id = self.recorder.run_id
        try:
            stored = self.recorder.store.get(run_id)
        except StoreUnavailable:
            return
        found = (progress_of(stored) or {}).get(REQUEST_KEY) if stored is not None else None
        waiting = waiting_request({**self.recorder.progress, REQUEST_KEY: found})
        if waiting is None or waiting.action != "abort":
            return
        now = self.clock.now()
        request = take_request(self.recorder.store, run_id, self.recorder.progress, now)
        if request is not None:
            raise ManualAbort(request)

    def _manual(self) -> None:
        """Act on a person's request, if one waits (`strategies.manual`): abort and promote
        leave the validation (raised), pause and resume hold or release green and the end."""
        now = self.clock.now()
        progress = self.recorder.progress
        request = take_request(self.recorder.store, self.recorder.run_id, progress, now)
        if request is None:
            return
        self.log.warning("a person's request", action=request.action, by=request.by,
                         reason=request.reason)  # fmt: skip
        if request.action == "abort":
            raise ManualAbort(request)
        if request.action == "promote":
            self.gate.wait_ready(self._health_seen)  # green not healthy: the gate's fail
            raise ManualPromote(request)
        if request.action == "pause":
            note = "" if hold(progress, request, now, 100) else "already held"
        else:
            note = "" if release(progress, now) is not None else "was not paused"
        self.recorder.save()
        self.say(f"{request.action} by {request.by}" + (f" ({note})" if note else "")
                 + ": green serves")  # fmt: skip
        self.recorder.record(
            manual_event(self.recorder.info, request, time=now, step=1, weight=None, note=note)
        )

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

    def _before_switch(self) -> Outcome | None:
        """Green's pods through the gate (a hold waits), then the preview: an `Outcome` when
        green is not switched to (blue kept), None to switch."""
        try:
            self.gate.wait_ready(self._health_seen)
        except PodsUnhealthy as error:
            findings = tuple(f for f in error.findings if isinstance(f, Finding))
            self.log.warning("blue/green aborted before the switch", reason=str(error))
            return self._not_switched(
                f"green not switched to (blue kept): the health gate failed: {error}",
                outcome=findings[0].kind if findings else None,
                findings=findings,
            )
        except ManualAbort as manual:
            return self._not_switched(
                f"{manual_reason(manual.request)}; green not switched to (blue kept)",
                manual=manual.request,
                verdict="inconclusive",
            )
        except KeyboardInterrupt:
            if self.recorder.run is None:
                raise
            return self._finish(
                INTERRUPTED, "interrupted before the switch: blue kept", "interrupted"
            )
        except Exception as error:
            if self.recorder.run is not None:
                self._finish_anyway(ABORTED, f"stopped by an error before the switch: {error}")
            raise
        if self.r.preview_service:
            preview = self._preview()
            if preview is not None and preview.verdict is Verdict.FAIL:
                self.log.warning("blue/green aborted on the preview", reason=preview.reason)
                self.recorder.final = preview
                return self._not_switched(
                    f"green failed on the preview, not switched: {preview.reason}"
                )
        return None

    def run(self) -> Outcome:
        current = self.switch.selector()
        if current != self.blue:
            raise SelectorChanged(
                f"{self.switch.where} selects {current}, not blue {self.blue}: nothing to switch"
            )
        not_switched = self._before_switch()
        if not_switched is not None:
            return not_switched
        switched = self.clock.now()
        step = {
            "step": 1,
            "selector": self.green,
            "start": format_time(switched),
            "end": None,
            "verdict": None,
        }
        # I3: the run and the switch it is about to make are recorded first: a store that cannot
        # record, or a placeholder the strategy does not fill, stops here with blue untouched
        if self.recorder.run is None:
            self._open(switched, {
                "strategy": "blueGreen",
                "service": f"{self.r.namespace}/{self.r.active_service}",
                "state": "running",
                "selector": self.blue,
                "pending": {"selector": self.green},
                "steps": [step],
                "reason": "",
            })  # fmt: skip
        else:  # opened before the switch (the gate held green): its analysis starts now
            self.recorder.progress["pending"] = {"selector": self.green}
            self.recorder.progress.setdefault("steps", []).append(step)
            self.recorder.save(started_at=switched)
        self._switched = switched
        progress = self.recorder.progress

        def end() -> datetime:  # moved by the time people held green
            period = self.r.validation_period + held_seconds(progress)
            return switched + timedelta(seconds=period)

        try:
            self.switch.switch(self.blue, self.green)
            self.recorder.progress["selector"] = self.green
            self.recorder.progress.pop("pending", None)
            self.say(f"{self.switch.where} switched to green {self.green}; validating")
            while True:
                left = (end() - self.clock.now()).total_seconds()
                interval = self.file.analysis.interval
                holding = self._holding or held(progress)
                self.clock.sleep(interval if holding else max(0.0, min(interval, left)))
                self._manual()
                self._health_seen(self.gate.check())
                report = self.recorder.look()
                left = (end() - self.clock.now()).total_seconds()
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
                if left <= 0 and not self._holding and not held(progress):
                    break
        except PodsUnhealthy as error:
            findings = tuple(f for f in error.findings if isinstance(f, Finding))
            self._note(findings)
            self._back_to_blue()
            return self._verified(
                self._finish(
                    ABORTED,
                    f"switched back to blue: the health gate failed: {error}",
                    "fail",
                    outcome=findings[0].kind if findings else None,
                    extra={"health": [f.as_json() for f in findings]} if findings else None,
                )
            )
        except ManualAbort as manual:
            self._back_to_blue()
            return self._verified(
                self._finish(
                    ABORTED,
                    f"switched back to blue: {manual_reason(manual.request)}",
                    self._verdict_now(),
                    extra={"manual": manual.request.as_dict()},
                )
            )
        except ManualPromote as manual:
            request = manual.request
            release(progress, self.clock.now())
            progress["promotion"] = {"basis": "manual", **request.as_dict()}
            return self._finish(
                PROMOTED,
                f"green kept: {manual_reason(request)}",
                self._verdict_now(),
                extra={"manual": request.as_dict()},
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
        slo_hold = any(m.held for m in report.metrics)  # an SLO breach: never promoted undecided
        if self.r.on_timeout == "promote" and not slo_hold:
            return self._finish(PROMOTED, f"green kept undecided: {report.reason}", "inconclusive")
        reason = f"green kept, undecided: a person decides: {report.reason}"
        if slo_hold:
            reason = f"green kept, held by the metrics: a person decides: {report.reason}"
        try:
            return self._finish(PAUSED, reason, "inconclusive")
        except StoreUnavailable:
            # a pause nobody can see recorded is no pause a person can act on: back to blue
            self.log.error("the paused run could not be recorded; switching back to blue")
            self._back_to_blue()
            raise
