"""The health gate: whether the new version's pods (and its Argo CD Application) let the rollout
go on, hold it, or fail it. Pure: API objects as plain dicts in, a `Health` out; no I/O.

Every way that acts feeds it the pods of the new version (canary run: `canaryPods`; blue/green:
green's labels; rolling: the new ReplicaSet's `pod-template-hash`; controller mode: the
Rollout's selector plus `status.currentPodHash`) and their Events:

| what is seen                                                    | kind           | act  |
|-----------------------------------------------------------------|----------------|------|
| a container waiting in `ImagePullBackOff`, `ErrImagePull`,      | `image-pull`   | fail |
| `InvalidImageName`                                              |                |      |
| ... in `CrashLoopBackOff`                                       | `crash-loop`   | fail |
| ... in `CreateContainerConfigError`                             | `config-error` | fail |
| a pod not Ready (its Ready condition, or its readiness probe's  | `readiness`    | fail |
| `Unhealthy` Events) for longer than `readiness_grace`           |                |      |
| a pod's containers restarted more than `max_restarts` times     | `restarts`     | fail |
| since the run started (liveness restarts)                       |                |      |
| a pod `Pending`, unschedulable for lack of resources            | `pending`      | hold |
| (`FailedScheduling`: `Insufficient cpu/memory/...`)             |                |      |
| the Argo CD Application `OutOfSync`, or its sync running        | `out-of-sync`  | hold |
| its last sync `Failed` / `Error`                                | `sync-failed`  | fail |
| its health `Degraded`                                           | `degraded`     | fail |

A fail rolls back (the strategy's abort path); a hold keeps the rollout where it is (no next
step, no promotion, no rollback) until it clears. A pod held `Pending` for resources is not
counted against `readiness_grace`: waiting for a node is a hold, not a failure. A Ready pod is
healthy whatever its older Events say. Each finding names its subject (the pod or the
Application), the reason, the message (the kubelet's, the scheduler's or Argo CD's) and since
when, for the run's record and its notifications.

What the gate remembers between looks is a `Memory` (returned with each `Health`, handed back
at the next look): when the run started and each pod's restart count when first seen, so that
only restarts during the run count.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

FATAL_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "ImagePullBackOff": "image-pull",
        "ErrImagePull": "image-pull",
        "InvalidImageName": "image-pull",
        "CrashLoopBackOff": "crash-loop",
        "CreateContainerConfigError": "config-error",
    }
)
"""A container waiting for one of these reasons fails the gate at once (the value: its kind)."""

FAIL_KINDS = (
    "image-pull",
    "crash-loop",
    "config-error",
    "readiness",
    "restarts",
    "sync-failed",
    "degraded",
)
HOLD_KINDS = ("pending", "out-of-sync")
KINDS = (*FAIL_KINDS, *HOLD_KINDS)
"""Every health finding's kind (they are also the outcomes of the decisions they cause)."""

_RESOURCES = re.compile(r"Insufficient [\w./-]+")
_READINESS_PROBE = "Readiness probe failed"
_FAILED_SYNC = ("Failed", "Error")
_RUNNING_SYNC = ("Running", "Terminating")


class Act(enum.StrEnum):
    OK = "ok"
    HOLD = "hold"
    FAIL = "fail"


@dataclass(frozen=True)
class HealthPolicy:
    readiness_grace: float = 300.0
    """Seconds a pod may stay not Ready before it fails the gate (`readinessGrace`)."""
    max_restarts: int = 3
    """Restarts of one pod's containers during the run above which it fails (`maxRestarts`)."""
    require_pods: bool = True
    """No pod at all counts as not Ready (standalone strategies: the new version must run).
    Controller mode sets it False: Argo creates the pods, and reports a stuck ReplicaSet itself."""


@dataclass(frozen=True)
class Finding:
    """One thing the gate saw: what (`kind`, `reason`), where (`subject`), since when, and what
    it does to the rollout (`act`)."""

    kind: str
    act: Act
    subject: str
    """`pod <name>` or `application <namespace>/<name>`."""
    reason: str
    """The Kubernetes or Argo CD reason: `ImagePullBackOff`, `Unschedulable`, `OutOfSync`, ..."""
    message: str
    time: datetime
    """Since when (the Event's first time, the condition's transition), else when first seen."""
    revision: str | None = None
    """Argo CD: the commit being synced."""
    author: str | None = None
    """Argo CD: who started the sync, as the Application reports it (a user, or `automated`)."""

    def text(self) -> str:
        commit = ""
        if self.revision:
            commit = f" (commit {self.revision[:12]}" + (
                f" by {self.author})" if self.author else ")"
            )
        message = f": {self.message}" if self.message else ""
        return (
            f"{self.kind}: {self.subject}{commit}: {self.reason}{message} (since {_iso(self.time)})"
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "act": str(self.act),
            "subject": self.subject,
            "reason": self.reason,
            "message": self.message,
            "time": _iso(self.time),
        }
        if self.revision is not None:
            out["revision"] = self.revision
        if self.author is not None:
            out["author"] = self.author
        return out

    @property
    def key(self) -> tuple[str, str, str]:
        """The same finding seen at two looks has the same key."""
        return (self.kind, self.subject, self.reason)


@dataclass(frozen=True)
class Memory:
    """What the gate keeps between looks (see the module docstring)."""

    started: datetime | None = None
    restarts: Mapping[str, int] = field(default_factory=dict)
    """Each pod's (uid) restart count when first seen in the run (0 for a pod born in it)."""
    unready: Mapping[str, datetime] = field(default_factory=dict)
    """When each not-Ready pod without a transition time was first seen not Ready."""
    empty_since: datetime | None = None
    """Since when no pod matches (None: some do)."""


@dataclass(frozen=True)
class Health:
    act: Act
    findings: tuple[Finding, ...]
    ready: bool
    """Pods matched, and all of them are Ready."""
    summary: str
    memory: Memory = field(default_factory=Memory)

    @property
    def problem(self) -> str | None:
        """The first failing finding as text, or None."""
        failing = [f for f in self.findings if f.act is Act.FAIL]
        return failing[0].text() if failing else None

    @property
    def held(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.act is Act.HOLD)

    @property
    def failing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.act is Act.FAIL)

    def text(self) -> str:
        """One line: the deciding findings, else the summary."""
        deciding = self.failing or self.held
        return "; ".join(f.text() for f in deciding) if deciding else self.summary


def act_of(findings: Iterable[Finding]) -> Act:
    acts = {f.act for f in findings}
    return Act.FAIL if Act.FAIL in acts else Act.HOLD if Act.HOLD in acts else Act.OK


def classify_pods(
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    now: datetime,
    policy: HealthPolicy,
    memory: Memory,
    selector: str = "",
) -> Health:
    """Judge the new version's pods and their Events (module docstring); `memory` is the one
    the previous look returned (a fresh `Memory()` at the first)."""
    started = memory.started or now
    by_pod: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("kind", "Pod") == "Pod" and involved.get("name"):
            by_pod.setdefault(str(involved["name"]), []).append(event)
    findings: list[Finding] = []
    restarts = dict(memory.restarts)
    unready_seen: dict[str, datetime] = {}
    unready: list[str] = []
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        meta = pod.get("metadata") or {}
        name = str(meta.get("name") or "?")
        uid = str(meta.get("uid") or name)
        status = pod.get("status") or {}
        own = by_pod.get(name, [])
        containers = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        ready = _condition(status, "Ready").get("status") == "True"
        if not ready:
            unready.append(name)
        fatal = _fatal(name, containers, own, now)
        if fatal is not None:
            findings.append(fatal)
        count = sum(int(c.get("restartCount") or 0) for c in containers)
        if uid not in restarts:
            born = _time(meta.get("creationTimestamp"))
            restarts[uid] = 0 if born is not None and born > started else count
        grown = count - restarts[uid]
        if grown > policy.max_restarts and fatal is None:
            findings.append(_restarted(name, containers, own, grown, policy, now))
        if ready or fatal is not None:
            continue
        pending = _pending(name, status, own, now)
        if pending is not None:
            findings.append(pending)
            continue
        since = _unready_since(status, own)
        if since is None:
            since = memory.unready.get(uid, now)
            unready_seen[uid] = since
        if (now - since).total_seconds() >= policy.readiness_grace:
            findings.append(_not_ready(name, own, since, now, policy))
    empty_since = None
    if not pods:
        empty_since = memory.empty_since or now
        waited = (now - empty_since).total_seconds()
        if policy.require_pods and waited >= policy.readiness_grace:
            findings.append(
                Finding(
                    "readiness",
                    Act.FAIL,
                    f"pods {selector}".strip(),
                    "NoPods",
                    f"no pod matches for {waited:g} s (readinessGrace "
                    f"{policy.readiness_grace:g} s)",
                    empty_since,
                )
            )
    if not pods:
        summary = f"no pods match {selector}".rstrip()
    elif unready:
        summary = f"not Ready: {', '.join(unready)}"
    else:
        summary = f"{len(pods)} pods Ready"
    return Health(
        act=act_of(findings),
        findings=tuple(findings),
        ready=bool(pods) and not unready,
        summary=summary,
        memory=Memory(
            started=started, restarts=restarts, unready=unready_seen, empty_since=empty_since
        ),
    )


def classify_application(app: Mapping[str, Any], *, now: datetime) -> tuple[Finding, ...]:
    """The findings of an Argo CD `Application` (argoproj.io/v1alpha1) as read: its last sync
    failed (`status.operationState.phase` Failed/Error) or its health is `Degraded` (fail); it is
    `OutOfSync` or a sync is running (hold). Each names the commit (`syncResult.revision`, else
    `status.sync.revision`) and who started the sync when the Application says."""
    meta = app.get("metadata") or {}
    status = app.get("status") or {}
    subject = f"application {meta.get('namespace', 'argocd')}/{meta.get('name', '?')}"
    sync = status.get("sync") or {}
    operation = status.get("operationState") or {}
    health = status.get("health") or {}
    revision = (operation.get("syncResult") or {}).get("revision") or sync.get("revision")
    initiated = (operation.get("operation") or {}).get("initiatedBy") or {}
    author = initiated.get("username") or ("automated" if initiated.get("automated") else None)
    phase = str(operation.get("phase") or "")
    found: list[Finding] = []

    def add(kind: str, act: Act, reason: str, message: str, since: Any) -> None:
        when = _time(since) or now
        found.append(
            Finding(
                kind, act, subject, reason, message, when, revision=revision or None, author=author
            )
        )

    if phase in _FAILED_SYNC:
        add(
            "sync-failed",
            Act.FAIL,
            f"sync {phase}",
            str(operation.get("message") or ""),
            operation.get("finishedAt") or operation.get("startedAt"),
        )
    if health.get("status") == "Degraded":
        add(
            "degraded",
            Act.FAIL,
            "Degraded",
            str(health.get("message") or ""),
            health.get("lastTransitionTime"),
        )
    if phase in _RUNNING_SYNC:
        add(
            "out-of-sync",
            Act.HOLD,
            f"sync {phase}",
            str(operation.get("message") or ""),
            operation.get("startedAt"),
        )
    elif sync.get("status") == "OutOfSync":
        add(
            "out-of-sync",
            Act.HOLD,
            "OutOfSync",
            "the live state differs from Git",
            status.get("reconciledAt"),
        )
    return tuple(found)


def with_findings(health: Health, extra: Iterable[Finding]) -> Health:
    """`health` with more findings (the Application's), its act recomputed."""
    findings = (*health.findings, *extra)
    return replace(health, findings=findings, act=act_of(findings))


def new_findings(seen: Iterable[tuple[str, str, str]], health: Health) -> tuple[Finding, ...]:
    """The findings of `health` whose key is not in `seen` (to record and tell each once)."""
    known = set(seen)
    return tuple(f for f in health.findings if f.key not in known)


# --- the pieces -----------------------------------------------------------------------------


def _fatal(
    pod: str, containers: list[dict[str, Any]], events: list[dict[str, Any]], now: datetime
) -> Finding | None:
    for c in containers:
        waiting = (c.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        kind = FATAL_REASONS.get(reason)
        if kind is None:
            continue
        message = str(waiting.get("message") or "")
        related = [e for e in events if _about(e, kind)]
        since = _earliest(related)
        said = str(related[-1].get("message") or "") if related else ""
        if said and said not in message:  # the kubelet's own words say why
            message = f"{message}; {said}" if message else said
        where = f"container {c.get('name', '?')}"
        return Finding(
            kind,
            Act.FAIL,
            f"pod {pod}",
            reason,
            f"{where}: {message}" if message else where,
            since or now,
        )
    return None


def _restarted(
    pod: str,
    containers: list[dict[str, Any]],
    events: list[dict[str, Any]],
    grown: int,
    policy: HealthPolicy,
    now: datetime,
) -> Finding:
    last = ""
    for c in containers:
        terminated = (c.get("lastState") or {}).get("terminated") or {}
        if terminated:
            last = (
                f"; container {c.get('name', '?')} last ended {terminated.get('reason', '?')}"
                f" (exit {terminated.get('exitCode', '?')})"
            )
    probes = [e for e in events if "Liveness probe failed" in str(e.get("message") or "")]
    if probes:
        last += f"; {probes[-1].get('message')}"
    since = _earliest(probes)
    return Finding(
        "restarts",
        Act.FAIL,
        f"pod {pod}",
        "Restarted",
        f"{grown} restarts during the run (maxRestarts {policy.max_restarts}){last}",
        since or now,
    )


def _pending(
    pod: str, status: Mapping[str, Any], events: list[dict[str, Any]], now: datetime
) -> Finding | None:
    """A pod Pending because no node has the resources it asks for (the scheduler's words, from
    its latest `FailedScheduling` Event, else the pod's `PodScheduled` condition)."""
    if status.get("phase") not in (None, "Pending"):
        return None
    scheduled = _condition(status, "PodScheduled")
    said: list[tuple[str, datetime | None]] = []
    if scheduled.get("status") == "False":
        said.append(
            (str(scheduled.get("message") or ""), _time(scheduled.get("lastTransitionTime")))
        )
    said += [
        (str(e.get("message") or ""), _event_first(e))
        for e in events
        if e.get("reason") == "FailedScheduling"
    ]
    lacking = [(m, t) for m, t in said if _RESOURCES.search(m)]
    if not lacking:
        return None
    times = [t for _, t in lacking if t is not None]
    return Finding(
        "pending",
        Act.HOLD,
        f"pod {pod}",
        "FailedScheduling",
        lacking[-1][0],
        min(times, default=now),
    )


def _unready_since(status: Mapping[str, Any], events: list[dict[str, Any]]) -> datetime | None:
    """Since when the pod's readiness fails: its Ready condition's last change to False, or the
    first of its readiness probe's failures, whichever is earlier; None when neither says."""
    times = []
    ready = _condition(status, "Ready")
    if ready.get("status") == "False" and _time(ready.get("lastTransitionTime")):
        times.append(_time(ready.get("lastTransitionTime")))
    for e in events:
        if e.get("reason") == "Unhealthy" and _READINESS_PROBE in str(e.get("message") or ""):
            times.append(_event_first(e))
    found = [t for t in times if t is not None]
    return min(found) if found else None


def _not_ready(
    pod: str, events: list[dict[str, Any]], since: datetime, now: datetime, policy: HealthPolicy
) -> Finding:
    probes = [
        e
        for e in events
        if e.get("reason") == "Unhealthy" and _READINESS_PROBE in str(e.get("message") or "")
    ]
    detail = f": {probes[-1].get('message')}" if probes else ""
    seconds = (now - since).total_seconds()
    return Finding(
        "readiness",
        Act.FAIL,
        f"pod {pod}",
        "NotReady",
        f"not Ready for {seconds:g} s (readinessGrace {policy.readiness_grace:g} s){detail}",
        since,
    )


def _about(event: Mapping[str, Any], kind: str) -> bool:
    """Whether a kubelet Event (`Failed`, `BackOff`) tells of a fatal reason of this kind."""
    reason, message = event.get("reason"), str(event.get("message") or "")
    if reason not in ("Failed", "BackOff"):
        return False
    if kind == "image-pull":
        return "image" in message.lower()
    if kind == "crash-loop":
        return reason == "BackOff" and "restarting" in message
    return reason == "Failed" and "image" not in message.lower()


def _earliest(events: Iterable[Mapping[str, Any]]) -> datetime | None:
    found = [t for t in (_event_first(e) for e in events) if t is not None]
    return min(found) if found else None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for c in status.get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def _event_first(event: Mapping[str, Any]) -> datetime | None:
    series = event.get("series") or {}
    return (
        _time(event.get("firstTimestamp"))
        or _time(event.get("eventTime"))
        or _time(series.get("lastObservedTime"))
        or _time(event.get("lastTimestamp"))
    )


def _time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
