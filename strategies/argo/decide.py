"""What to do with a Rollout, given the analysis' verdict: pure, no I/O.

`rollout_view` reads the fields of a Rollout object that the decision needs (argo-rollouts.md
§4: status is trusted only when `status.observedGeneration` equals `metadata.generation`);
`decide(verdict, rollout, ...)` returns one `Decision`:

* status not trusted, already aborted, not updating, or no verdict this look → nothing;
* **fail**, at any time while the canary is updating → **abort** (the judge's rules say which
  failures fail the analysis; the controller does not second-guess them);
* paused at a step (`CanaryPauseStep`, or `BlueGreenPause` before a blue/green switch), or
  paused by Verdict (`spec.paused` set by its own pause at this step):
  - a timed pause (`pause: {duration: 5m}`) Verdict has not paused, with one interval or less
    left, and the analysis not a pass → **pause**, so the clock never carries the Rollout past
    the step without a pass;
  - **pass** after at least `min_step_looks` looks at this step → **promote** (a timed pause
    still running is left to Argo, which ends it by itself);
  - otherwise → nothing (stays paused); past `max_inconclusive` at one step the decision says
    so (`overdue`) and still takes no action: a person decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from analyzer.clock import format_time, parse_time
from analyzer.durations import parse_seconds
from analyzer.verdicts import Verdict

ANALYSIS_ANNOTATION = "verdict.dev/analysis"
STATUS_ANNOTATION = "verdict.dev/status"
PAUSED_ANNOTATION = "verdict.dev/paused"
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


@dataclass(frozen=True)
class Policy:
    interval: timedelta
    """The analysis' interval: how often the controller looks."""
    min_step_looks: int = 1
    max_inconclusive: timedelta = timedelta(minutes=30)


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
    return replace(view, paused_by_verdict=view.paused and marker == view.paused_marker())


def decide(
    verdict: Verdict | None,
    rollout: RolloutView,
    *,
    now: datetime,
    step_looks: int,
    policy: Policy,
    why: str = "",
) -> Decision:
    """The action for `rollout` given this look's `verdict` (None: no verdict this look, `why`
    says why) and the number of looks made at the current step (this one included)."""
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
    if verdict is None:
        return Decision(Action.NONE, f"no verdict this look: {why or 'cannot judge'}")
    if verdict is Verdict.FAIL:
        return Decision(Action.ABORT, f"the analysis fails at step {rollout.step_index}: {why}")
    if not (rollout.at_step_pause or rollout.paused_by_verdict):
        return Decision(Action.NONE, f"{verdict} at step {rollout.step_index}; keep watching")
    timed = rollout.pause_seconds
    if timed is not None and not rollout.paused_by_verdict:
        if verdict is not Verdict.PASS and rollout.pause_started is not None:
            ends = rollout.pause_started + timedelta(seconds=timed)
            if ends - now <= policy.interval:
                return Decision(
                    Action.PAUSE,
                    f"the timed pause of step {rollout.step_index} ends at {format_time(ends)} "
                    f"and the analysis is {verdict}: paused until it passes",
                )
        return Decision(
            Action.NONE, f"{verdict} during the timed pause of step {rollout.step_index}"
        )
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
    return Decision(Action.NONE, f"undecided at step {rollout.step_index}: stays paused")


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.0f}m"
