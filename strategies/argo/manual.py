"""A person's promote, abort, pause or resume of an Argo Rollout (`verdict promote ROLLOUT`, ...).

The patches are the kubectl plugin's (`strategies.argo.rollouts`): `promote`, `abort` and
`pause` as `kubectl argo rollouts promote / abort / pause`; `resume` (the plugin has no command
of that name) as the plugin's unpause patch for a paused Rollout and `retry rollout`'s patch for
an aborted one (`resume_patches`).

`act_by_hand`:

1. reads the Rollout (no such Rollout: `NoSuchRollout`);
2. computes the patches for the Rollout as read; none when it already shows the action (an
   abort of an aborted Rollout, a pause of a paused one);
3. records who, why and when on the Rollout first, in the `verdict.dev/manual` annotation (the
   controller reads it: a Rollout a person paused is not promoted by the analysis);
4. sends each patch;
5. leaves a Kubernetes Event on the Rollout (`VerdictManualAbort`, ...; a side part: a failure
   is logged, never the outcome).

Each call of 1, 3 and 4 is tried again, with a wait doubling from 0.5 s to 15 s, while the API
answers a server error, a conflict, too many requests or nothing at all, until it lands or the
deadline passes (`NotLanded`: the API is unreachable). A patch that landed is not sent again;
one whose answer was lost is (the plugin's patches set values, so sending one twice changes
nothing). Any other refusal (401, 403, 422, ...) is `Refused` at once.

`find_run` and `manual_run_event` put the action in the run store for the Rollout's current run
(so `verdict report` lists it); the command line does that and the notifications after the
patches have landed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from analyzer.notify import EventKind, RunEvent, RunInfo, figures_of
from analyzer.runs.model import Run, RunKey
from analyzer.runs.requests import ACTIONS, ActionRequest
from analyzer.runs.store import RunStore
from strategies.argo.decide import ANALYSIS_ANNOTATION, MANUAL_ANNOTATION
from strategies.argo.rollouts import (
    Patch,
    Rollout,
    RolloutActuator,
    abort_patches,
    pause_patches,
    promote_patches,
    resume_patches,
)
from strategies.kube.client import NETWORK_ERRORS
from strategies.manual import OUTCOMES, manual_reason

_log = structlog.get_logger()
T = TypeVar("T")

EVENT_REASONS = {
    "promote": "VerdictManualPromote",
    "abort": "VerdictManualAbort",
    "pause": "VerdictManualPause",
    "resume": "VerdictManualResume",
}
_RETRIED_STATUS = frozenset({409, 429})


class NoSuchRollout(Exception):
    """The Rollout does not exist (HTTP 404)."""


class Refused(Exception):
    """The API refused the call for good (a 4xx other than 404, 409, 429): the message says
    what it answered."""


class NotLanded(Exception):
    """A call did not land before the deadline (the API unreachable or failing); the message
    says which, how often it was tried and the last error."""


@dataclass(frozen=True)
class RetryPolicy:
    deadline: float = 120.0
    """Seconds to keep trying a call that fails with a server error, a conflict or no answer."""
    first_wait: float = 0.5
    max_wait: float = 15.0


@dataclass(frozen=True)
class ManualResult:
    """What `act_by_hand` did."""

    request: ActionRequest
    namespace: str
    name: str
    rollout: Rollout
    """The Rollout as read before acting."""
    sent: tuple[Patch, ...]
    """The patches sent, in order (none: the Rollout already showed the action)."""
    tries: int

    @property
    def already(self) -> bool:
        return not self.sent

    def message(self) -> str:
        where = f"rollout {self.namespace}/{self.name}"
        if self.already:
            state = {"abort": "aborted", "pause": "paused"}.get(self.request.action)
            shown = f"already {state}" if state else "neither paused nor aborted"
            return f"{where}: {shown}; nothing sent ({manual_reason(self.request)} recorded)"
        return f"{where}: {manual_reason(self.request)}"


def manual_patches(action: str, rollout: Rollout) -> list[Patch]:
    """The plugin's patches for `action` on the Rollout as read; none when it already shows it."""
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    if action == "abort":
        return [] if status.get("abort") else abort_patches(rollout)
    if action == "pause":
        return [] if spec.get("paused") else pause_patches(rollout)
    if action == "promote":
        return promote_patches(rollout)
    if action == "resume":
        return resume_patches(rollout)
    raise ValueError(f"action: one of {', '.join(ACTIONS)}, got {action!r}")


def manual_annotation(request: ActionRequest, rollout: Rollout) -> str:
    """The `verdict.dev/manual` annotation's value: who, why, when, and which update (the
    canary's `status.currentPodHash`), as JSON."""
    doc: dict[str, Any] = request.as_dict()
    doc.pop("id", None)
    doc["canary"] = str((rollout.get("status") or {}).get("currentPodHash") or "")
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def act_by_hand(
    actuator: RolloutActuator,
    namespace: str,
    name: str,
    request: ActionRequest,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ManualResult:
    """Do a person's `request` on the Rollout (module docstring). Raises `NoSuchRollout`,
    `Refused`, `NotLanded`."""
    policy = policy or RetryPolicy()
    deadline = time.monotonic() + policy.deadline
    where = f"rollout {namespace}/{name}"
    tries = 0

    def landed(call: Callable[[], T], what: str) -> T:
        nonlocal tries
        wait = policy.first_wait
        attempt = 0
        while True:
            attempt += 1
            tries += 1
            try:
                return call()
            except Exception as error:
                status = _status(error)
                if status == 404:
                    raise NoSuchRollout(f"{where}: not found (HTTP 404)") from None
                if not _retried(error, status):
                    raise Refused(f"{where}: {what} refused: {_error_text(error)}") from None
                left = deadline - time.monotonic()
                _log.warning(
                    "manual action call failed" + ("; trying again" if left > wait else ""),
                    rollout=f"{namespace}/{name}", call=what, attempt=attempt,
                    error=_error_text(error), seconds_left=round(max(left, 0.0), 1),
                )  # fmt: skip
                if left <= wait:
                    raise NotLanded(
                        f"{where}: {what} did not land after {attempt} tries in "
                        f"{policy.deadline:g} s: {_error_text(error)}"
                    ) from None
                sleep(wait)
                wait = min(wait * 2, policy.max_wait)

    obj = landed(lambda: actuator.get(namespace, name), "reading it")
    patches = manual_patches(request.action, obj)
    landed(
        lambda: actuator.annotate(obj, {MANUAL_ANNOTATION: manual_annotation(request, obj)}),
        f"the {MANUAL_ANNOTATION} annotation",
    )
    sent: list[Patch] = []
    for patch in patches:
        endpoint = "/status" if patch.subresource == "status" else "the Rollout"
        landed(
            _sender(actuator, obj, patch),
            f"the patch {json.dumps(patch.body, separators=(',', ':'))} to {endpoint}",
        )
        sent.append(patch)
    result = ManualResult(request, namespace, name, obj, tuple(sent), tries)
    _log.warning(
        "rollout acted on by hand", rollout=f"{namespace}/{name}", action=request.action,
        by=request.by, reason=request.reason, patches=len(sent),
    )  # fmt: skip
    try:
        actuator.event(
            obj,
            reason=EVENT_REASONS[request.action],
            message=result.message(),
            warning=request.action == "abort",
        )
    except Exception as error:  # a side part: never the outcome
        _log.warning("manual action not written as an Event", error=_error_text(error))
    return result


def find_run(store: RunStore, rollout: Rollout, analysis: str | None = None) -> Run | None:
    """The Rollout's current run: the run of its canary (`status.currentPodHash`) for its
    analysis (the `verdict.dev/analysis` annotation, else `analysis`); without either, the latest
    run of that canary of the Rollout among the store's recent runs."""
    meta = rollout.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    canary = str((rollout.get("status") or {}).get("currentPodHash") or "")
    if not canary:
        return None
    named = (meta.get("annotations") or {}).get(ANALYSIS_ANNOTATION) or analysis
    if named:
        found = store.find(RunKey(str(named), namespace, name, canary))
        if found is not None:
            return found
    for run in store.runs(limit=500):
        if (run.key.namespace, run.key.rollout, run.key.canary_hash) == (namespace, name, canary):
            return run
    return None


def manual_run_event(
    result: ManualResult, run: Run | None, *, analysis: str | None, way: str, now: datetime
) -> RunEvent:
    """The decision event of the action, for the Rollout's run (`run`; None: no run known, the
    event names the Rollout's canary instead, for notifications only)."""
    status = result.rollout.get("status") or {}
    weights = (status.get("canary") or {}).get("weights") or {}
    weight = (weights.get("canary") or {}).get("weight")
    canary = str(status.get("currentPodHash") or "")
    if run is not None:
        info = RunInfo(run.id, run.key.analysis, run.key.namespace, run.key.rollout, way)
    else:
        info = RunInfo(
            f"{result.namespace}/{result.name}@{canary or 'unknown'}",
            analysis or "",
            result.namespace,
            result.name,
            way,
        )
    note = "" if result.sent else "nothing to send: the Rollout already showed it"
    metrics = ((run.answer or {}).get("metrics") or []) if run is not None else []
    return RunEvent(
        EventKind.DECISION,
        info,
        now,
        step=int(status.get("currentStepIndex") or 0),
        weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else None,
        look=run.looks if run is not None else None,
        verdict=run.verdict if run is not None else None,
        outcome=OUTCOMES[result.request.action],
        reason=manual_reason(result.request) + (f" ({note})" if note else ""),
        score=run.score if run is not None else None,
        figures=figures_of(metrics),
        extra={
            "manual": result.request.as_dict(),
            "patches": [_patch_json(p) for p in result.sent],
        },
    )


def default_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context (as kubectl picks it), else the
    in-cluster service account's, else `default`."""
    import os

    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        try:
            from kubernetes import config

            _contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
            found = ((active or {}).get("context") or {}).get("namespace")
            return str(found) if found else "default"
        except Exception:
            return "default"
    account = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return account.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


def _sender(actuator: RolloutActuator, obj: Rollout, patch: Patch) -> Callable[[], None]:
    return lambda: actuator.send(obj, [patch])


def _patch_json(patch: Patch) -> dict[str, Any]:
    return {"subresource": patch.subresource, "body": patch.body}


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) and status > 0 else None


def _retried(error: Exception, status: int | None) -> bool:
    if status is None:
        return isinstance(error, NETWORK_ERRORS) or type(error).__name__ == "ApiException"
    return status in _RETRIED_STATUS or status >= 500


def _error_text(error: Exception) -> str:
    status = _status(error)
    if status is not None:
        reason = getattr(error, "reason", "") or ""
        body = getattr(error, "body", None)
        message = ""
        if isinstance(body, str | bytes):
            try:
                message = str(json.loads(body).get("message") or "")
            except (ValueError, AttributeError):
                message = ""
        return " ".join(f"HTTP {status} {reason} {message}".split())[:400]
    return f"{type(error).__name__}: {str(error)[:200]}"


__all__ = [
    "EVENT_REASONS",
    "ManualResult",
    "NoSuchRollout",
    "NotLanded",
    "Refused",
    "RetryPolicy",
    "act_by_hand",
    "default_namespace",
    "find_run",
    "manual_annotation",
    "manual_patches",
    "manual_run_event",
]
