"""Never wait for a notification: queue each event, send it from a worker thread, retry a little.

`BackgroundNotifier.post` only puts the event on a bounded queue per target and returns: a run
never waits for Grafana or a webhook, and nothing a target answers (an error, a timeout, no
answer at all) reaches the caller. Each target has its own worker thread, so a hanging Grafana
does not hold back Slack, and its events go out in order (a region's close after its open). A
failed send is retried `retries` times with a doubling pause; then it is logged and dropped. A
full queue (a target down for long) drops new events with a warning.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from analyzer.notify.base import Notifier
from analyzer.notify.errors import NotifyError
from analyzer.notify.events import EventKind, RunEvent

_log = structlog.get_logger()
_STOP = object()


@dataclass(frozen=True)
class Target:
    """One notifier and the decision outcomes it wants (None: all)."""

    name: str
    notifier: Notifier
    outcomes: frozenset[str] | None = None

    def wants(self, event: RunEvent) -> bool:
        if event.kind is EventKind.LOOK:
            return False
        if event.kind is not EventKind.DECISION or self.outcomes is None:
            return True
        return event.outcome in self.outcomes


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    """Sends after the first one fails (so at most retries + 1 tries per event)."""
    backoff: float = 0.5
    """Seconds before the first retry; doubled before each next one."""
    queue_size: int = 1000


class _Worker:
    def __init__(self, target: Target, policy: RetryPolicy) -> None:
        self.target = target
        self.policy = policy
        self.queue: queue.Queue[object] = queue.Queue(maxsize=policy.queue_size)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"verdict-notify-{target.name}", daemon=True
        )
        self.thread.start()

    def put(self, event: RunEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            _log.warning(
                "notification dropped: queue full",
                target=self.target.name,
                run=event.run.id,
                kind=str(event.kind),
            )

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            assert isinstance(item, RunEvent)
            self._send(item)

    def _send(self, event: RunEvent) -> None:
        pause = self.policy.backoff
        for attempt in range(self.policy.retries + 1):
            try:
                self.target.notifier.post(event)
                return
            except NotifyError as error:
                last = attempt == self.policy.retries or not error.retry
                _log.warning(
                    "notification failed" + ("; dropped" if last else "; will retry"),
                    target=self.target.name,
                    run=event.run.id,
                    kind=str(event.kind),
                    attempt=attempt + 1,
                    error=str(error),
                )
                if last:
                    return
            except Exception as error:  # a bug in a notifier must not kill the worker
                _log.error(
                    "notifier raised; event dropped",
                    target=self.target.name,
                    run=event.run.id,
                    error=f"{type(error).__name__}: {error}",
                )
                return
            if self.stopping.wait(pause):  # closing: stop retrying
                return
            pause *= 2


class BackgroundNotifier:
    """A `Notifier` that fans events out to targets without ever blocking (module docstring)."""

    def __init__(self, targets: Iterable[Target], policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._workers = [_Worker(t, self.policy) for t in targets]

    @property
    def targets(self) -> list[Target]:
        return [w.target for w in self._workers]

    def post(self, event: RunEvent) -> None:
        for worker in self._workers:
            if worker.target.wants(event):
                worker.put(event)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued within `timeout` seconds, then stop (pending retries are dropped).

        Workers are daemon threads: one stuck on a target that never answers does not keep the
        process alive.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        for worker in self._workers:
            try:
                worker.queue.put_nowait(_STOP)
            except queue.Full:
                worker.stopping.set()
        for worker in self._workers:
            worker.thread.join(max(deadline - time.monotonic(), 0.0))
            worker.stopping.set()
        for worker in self._workers:
            close = getattr(worker.target.notifier, "close", None)
            if callable(close) and not worker.thread.is_alive():
                close()
