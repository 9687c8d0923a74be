"""What to do with a Rollout, given the analysis' verdict: pure, no I/O.

`rollout_view` reads the fields of a Rollout object that the decision needs (argo-rollouts.md
§4: status is trusted only when `status.observedGeneration` equals `metadata.generation`);
`decide(verdict, rollout, ...)` returns one `Decision`:

* status not trusted, already aborted, or not updating → nothing;
* the health gate fails (`strategies.health`: a fatal pod reason, readiness past its grace,
  too many restarts, the Argo CD sync failed or Degraded) → **abort**, told as the gate's kind;
* the health gate holds (pods Pending for resources, the Application OutOfSync or syncing) →
  **pause** a Rollout still moving or at a timed pause (nothing when it is paused already or at
  an indefinite pause): no promotion while held; once it clears, Verdict's pause ends with a
  pass as any other;
* **fail**, at any time while the canary is updating → **abort** (the judge's rules say which
  failures fail the analysis; the controller does not second-guess them);
* the metrics hold (a metric shown beyond its SLO, a promotion criterion, with no rollback
  trigger crossed; `metric_hold` is "shared" when the baseline breaches it too) → **pause** where
  it stands (outcome `shared-incident` for a shared breach), nothing if already paused;
* paused by a person (`verdict pause`: `spec.paused` with the `verdict.dev/manual` annotation
  saying so) → nothing, whatever else holds: a person's decision overrides the analysis until
  a person resumes or promotes it (a fail still aborts);
* a timed pause (`pause: {duration: 5m}`) Verdict has not paused: Argo ends it by itself when
  its time is up, and that is a promotion (fail-safe rule I1), so without a pass at this step
  (`min_step_looks` looks, the last one a pass) Verdict **pauses** the Rollout before the end:
  - no verdict this look (the look failed: Prometheus down, over budget, store down) → at once,
    whatever time is left (the next look may fail too);
  - inconclusive (or a pass after too few looks at this step) → when the time left is one
    interval plus `margin` or less (the next look might land too late), or the pause has no
    start time;
  - a pass → nothing: Argo's clock ends the pause;
* paused at a step (`CanaryPauseStep`, or `BlueGreenPause` before a blue/green switch), or
  paused by Verdict (`spec.paused` set by its own pause at this step):
  - **pass** after at least `min_step_looks` looks at this step → **promote**;
  - otherwise → nothing (stays paused); past `max_inconclusive` at one step the decision says
    so (`overdue`) and still takes no action: a person decides;
* anything else (no verdict, or not a fail, while the canary is not paused) → nothing.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from analyzer.clock import format_time, parse_time
from analyzer.durations import parse_seconds
from analyzer.verdicts import Verdict
from strategies.health import Act, Health

ANALYSIS_ANNOTATION = "verdict.dev/analysis"
STATUS_ANNOTATION = "verdict.dev/status"
PAUSED_ANNOTATION = "verdict.dev/paused"
MANUAL_ANNOTATION = "verdict.dev/manual"
"""A person's last action on the Rollout (`verdict promote|abort|pause|resume`): JSON
`{"action", "by", "reason", "at", "canary"}` (`canary`: the update's `status.currentPodHash`)."""
STEP_PAUSES = ("CanaryPauseStep", "BlueGreenPause")


class Action(enum.StrEnum):
    NONE = "none"
    PROMOTE = "promote"
    PAUSE = "pause"
    ABORT = "abort"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    overdue: bool = False
    """Undecided longer than `max_inconclusive` at one step: a person must decide."""
    outcome: str | None = None
    """The health gate's kind when it decided (`image-pull`, `pending`, ...; see
    `strategies.health`): the outcome the decision is recorded and told as."""


@dataclass(frozen=True)
class Policy:
    interval: timedelta
    """The analysis' interval: how often the controller looks."""
    min_step_looks: int = 1
    max_inconclusive: timedelta = timedelta(minutes=30)
    margin: timedelta = timedelta(0)
    """How late the next look's pause may land after its interval is up (its look, its write):
    a timed pause with `interval + margin` or less left is paused now."""


@dataclass(frozen=True)
class RolloutView:
    """The fields of a Rollout the controller reads."""

    namespace: str
    name: str
    analysis: str | None
    generation: int
    observed_generation: str | None
    canary_hash: str
    stable_hash: str
    step_index: int
    step: dict[str, Any] | None
    paused: bool
    pause_reasons: tuple[str, ...]
    pause_started: datetime | None
    aborted: bool
    phase: str
    paused_by_verdict: bool
    """`spec.paused` was set by Verdict's own pause at this step (its annotation says so)."""
    paused_by: str | None = None
    """Who paused the Rollout when `spec.paused` is a person's pause (`verdict pause`; the
    `verdict.dev/manual` annotation says so): the analysis does not promote it."""

    @property
    def trusted(self) -> bool:
        return self.observed_generation == str(self.generation)

    @property
    def updating(self) -> bool:
        return bool(self.canary_hash) and self.canary_hash != self.stable_hash

    @property
    def at_step_pause(self) -> bool:
        return any(r in STEP_PAUSES for r in self.pause_reasons)

    @property
    def pause_seconds(self) -> float | None:
        """The duration of the current step's timed pause; None for `pause: {}` or no pause."""
        pause = (self.step or {}).get("pause")
        if not isinstance(pause, dict) or pause.get("duration") in (None, ""):
            return None
        return parse_seconds(pause["duration"])

    def paused_marker(self) -> str:
        """The value of `verdict.dev/paused` when Verdict pauses this Rollout at this step."""
        return f"{self.canary_hash}:{self.step_index}"


def rollout_view(obj: dict[str, Any]) -> RolloutView:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    canary = (spec.get("strategy") or {}).get("canary") or {}
    steps = list(canary.get("steps") or [])
    index = int(status.get("currentStepIndex") or 0)
    conditions = list(status.get("pauseConditions") or [])
    started = [
        parse_time(str(c["startTime"]))
        for c in conditions
        if c.get("reason") in STEP_PAUSES and c.get("startTime")
    ]
    canary_hash = str(status.get("currentPodHash") or "")
    view = RolloutView(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        analysis=annotations.get(ANALYSIS_ANNOTATION),
        generation=int(meta.get("generation") or 0),
        observed_generation=(
            None if status.get("observedGeneration") is None else str(status["observedGeneration"])
        ),
        canary_hash=canary_hash,
        stable_hash=str(status.get("stableRS") or ""),
        step_index=index,
        step=steps[index] if 0 <= index < len(steps) else None,
        paused=bool(spec.get("paused")),
        pause_reasons=tuple(str(c.get("reason")) for c in conditions),
        pause_started=min(started) if started else None,
        aborted=bool(status.get("abort")),
        phase=str(status.get("phase") or ""),
        paused_by_verdict=False,
    )
    marker = annotations.get(PAUSED_ANNOTATION)
    return replace(
        view,
        paused_by_verdict=view.paused and marker == view.paused_marker(),
        paused_by=_paused_by(annotations.get(MANUAL_ANNOTATION), canary_hash)
        if view.paused
        else None,
    )


def _paused_by(manual: object, canary_hash: str) -> str | None:
    """Who paused the Rollout, if a person's last action on it (its annotation) is a pause of
    this update (a pause of an earlier canary is history)."""
    try:
        data = json.loads(manual) if isinstance(manual, str) else None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("action") != "pause":
        return None
    if data.get("canary") not in (None, canary_hash):
        return None
    return str(data.get("by") or "someone")


def decide(
    verdict: Verdict | None,
    rollout: RolloutView,
    *,
    now: datetime,
    step_looks: int,
    policy: Policy,
    why: str = "",
    health: Health | None = None,
    metric_hold: str = "",
) -> Decision:
    """The action for `rollout` given this look's `verdict` (None: no verdict this look, `why`
    says why), the number of looks made at the current step (this one included) and what the
    health gate saw (None: not read)."""
    if not rollout.trusted:
        return Decision(
            Action.NONE,
            f"status not trusted yet: generation {rollout.generation} is ahead of "
            f"observedGeneration {rollout.observed_generation or '-'}",
        )
    if rollout.aborted:
        return Decision(Action.NONE, "the update is aborted")
    if not rollout.updating:
        return Decision(Action.NONE, "not updating")
    if health is not None and health.act is Act.FAIL:
        return Decision(
            Action.ABORT,
            f"the health gate fails at step {rollout.step_index}: {health.text()}",
            outcome=health.failing[0].kind,
        )
    if verdict is Verdict.FAIL:
        return Decision(Action.ABORT, f"the analysis fails at step {rollout.step_index}: {why}")
    if health is not None and health.act is Act.HOLD:
        return _held(rollout, health)
    if verdict is Verdict.INCONCLUSIVE and metric_hold and rollout.paused_by is None:
        return _metrics_hold(rollout, why, shared=metric_hold == "shared")
    missing = f"no verdict this look: {why or 'cannot judge'}"
    if rollout.paused_by is not None:
        state = str(verdict) if verdict is not None else missing
        return Decision(
            Action.NONE,
            f"paused by {rollout.paused_by} at step {rollout.step_index} ({state}): stays "
            "paused until a person resumes or promotes it",
        )
    if not (rollout.at_step_pause or rollout.paused_by_verdict):
        if verdict is None:
            return Decision(Action.NONE, missing)
        return Decision(Action.NONE, f"{verdict} at step {rollout.step_index}; keep watching")
    timed = rollout.pause_seconds
    if timed is not None and not rollout.paused_by_verdict:
        return _timed_pause(verdict, rollout, timed, now, step_looks, policy, missing)
    held = " (paused by Verdict until the analysis passes)" if rollout.paused_by_verdict else ""
    if verdict is None:
        return Decision(Action.NONE, f"{missing}; stays paused at step {rollout.step_index}{held}")
    if verdict is Verdict.PASS:
        if step_looks >= policy.min_step_looks:
            return Decision(Action.PROMOTE, f"the analysis passes at step {rollout.step_index}")
        return Decision(
            Action.NONE,
            f"pass, after {step_looks} of {policy.min_step_looks} looks at step "
            f"{rollout.step_index}",
        )
    since = rollout.pause_started or now
    if now - since >= policy.max_inconclusive:
        return Decision(
            Action.NONE,
            f"undecided for {_minutes(now - since)} at step {rollout.step_index} "
            f"(maxInconclusive {_minutes(policy.max_inconclusive)}): no action; promote or "
            "abort it by hand",
            overdue=True,
        )
    return Decision(Action.NONE, f"undecided at step {rollout.step_index}: stays paused{held}")


def _timed_pause(
    verdict: Verdict | None,
    rollout: RolloutView,
    seconds: float,
    now: datetime,
    step_looks: int,
    policy: Policy,
    missing: str,
) -> Decision:
    """At a timed pause Verdict has not paused: pause it unless this step has a pass (I1)."""
    step = rollout.step_index
    if verdict is Verdict.PASS and step_looks >= policy.min_step_looks:
        return Decision(Action.NONE, f"pass during the timed pause of step {step}; Argo ends it")
    started = rollout.pause_started
    ends = None if started is None else started + timedelta(seconds=seconds)
    end = f"ends at {format_time(ends)}" if ends is not None else "has no start time"
    if verdict is None:
        return Decision(
            Action.PAUSE,
            f"{missing}; the timed pause of step {step} {end}: paused until the analysis passes",
        )
    state = str(verdict)
    if verdict is Verdict.PASS:
        state = f"a pass after {step_looks} of {policy.min_step_looks} looks at this step"
    if ends is None or ends - now <= policy.interval + policy.margin:
        return Decision(
            Action.PAUSE,
            f"the timed pause of step {step} {end} and the analysis is {state}: paused until "
            "it passes",
        )
    return Decision(Action.NONE, f"{state} during the timed pause of step {step} ({end})")


def _held(rollout: RolloutView, health: Health) -> Decision:
    """The health gate holds (pods Pending for resources, the Application OutOfSync): no
    promotion, no abort; a Rollout still moving (or at a timed pause Argo would end) is paused
    until it clears, and then waits for a pass like any pause of Verdict's."""
    kind = health.held[0].kind
    step = rollout.step_index
    indefinite = rollout.at_step_pause and rollout.pause_seconds is None
    if rollout.paused or indefinite:
        return Decision(Action.NONE, f"held at step {step}: {health.text()}", outcome=kind)
    return Decision(
        Action.PAUSE, f"held at step {step}, paused until it clears: {health.text()}", outcome=kind
    )


def _metrics_hold(rollout: RolloutView, why: str, *, shared: bool) -> Decision:
    """A metric beyond its SLO (a promotion criterion) and no rollback trigger crossed: no
    promotion, no abort; the Rollout is paused where it stands until the breach clears (a breach
    both versions share is an incident, `shared-incident`, told to the platform team)."""
    step = rollout.step_index
    outcome = "shared-incident" if shared else None
    indefinite = rollout.at_step_pause and rollout.pause_seconds is None
    if rollout.paused or indefinite:
        return Decision(Action.NONE, f"held at step {step}: {why}", outcome=outcome)
    return Decision(
        Action.PAUSE, f"held at step {step}, paused until it clears: {why}", outcome=outcome
    )


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.0f}m"
