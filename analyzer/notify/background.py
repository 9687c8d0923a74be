"""Never wait for a notification: queue each event, send it from a worker thread, retry a little.

`BackgroundNotifier.post` only puts the event on a bounded queue per target and returns: a run
never waits for Grafana or a webhook, and nothing a target answers (an error, a timeout, no
answer at all) reaches the caller. Each target has its own worker thread, so a hanging Grafana
does not hold back Slack, and its events go out in order (a region's close after its open). A
failed send is retried `retries` times with a doubling pause; then it is logged and dropped. A
full queue (a target down for long) drops new events with a warning.

At shutdown `drain_all` drains every notifier of the process together, within one overall bound
(a hung target costs that bound once, not once per analysis), and logs what it could not send.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from analyzer.notify.base import Notifier
from analyzer.notify.errors import NotifyError
from analyzer.notify.events import COUNTS_AS, EventKind, RunEvent

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
        if COUNTS_AS.get(event.outcome or "") in self.outcomes:
            # whoever hears of aborts hears of one that did not land, and of every rollback
            # the health gate made; whoever hears of pauses, of its holds
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
        self.sending: RunEvent | None = None
        """The event being sent right now (None between sends)."""
        self.dropped = 0
        """Events given up on: failed every try, a full queue, or left behind at shutdown."""
        self.last_error: str | None = None
        """Why the latest failed send failed (None: none failed)."""
        self.down = False
        """Whether the latest send failed (the target may be down)."""
        self.thread = threading.Thread(
            target=self._run, name=f"verdict-notify-{target.name}", daemon=True
        )
        self.thread.start()

    def put(self, event: RunEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            _log.warning(
                "notification dropped: queue full",
                target=self.target.name,
                run=event.run.id,
                kind=str(event.kind),
            )

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP or self.stopping.is_set():
                return
            assert isinstance(item, RunEvent)
            self.sending = item
            try:
                self._send(item)
            finally:
                self.sending = None

    def stop(self) -> None:
        """Ask the worker to stop after what is queued (at once when the queue is full)."""
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:
            self.stopping.set()

    def left_behind(self) -> tuple[int, int]:
        """After the drain: (events still queued, 1 if a send is still in flight else 0)."""
        queued = 0
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            queued += item is not _STOP
        in_flight = int(self.thread.is_alive() and self.sending is not None)
        if self.thread.is_alive():  # still sending: it stops at its next look at the queue
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(_STOP)
        return queued, in_flight

    def _send(self, event: RunEvent) -> None:
        pause = self.policy.backoff
        for attempt in range(self.policy.retries + 1):
            try:
                self.target.notifier.post(event)
                self.down = False
                return
            except NotifyError as error:
                last = attempt == self.policy.retries or not error.retry
                self.last_error, self.down = str(error), True
                self.dropped += last
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
                self.last_error = f"{type(error).__name__}: {error}"
                self.dropped += 1
                _log.error(
                    "notifier raised; event dropped",
                    target=self.target.name,
                    run=event.run.id,
                    error=f"{type(error).__name__}: {error}",
                )
                return
            if self.stopping.wait(pause):  # closing: stop retrying
                self.dropped += 1
                _log.warning(
                    "notification dropped: shutting down",
                    target=self.target.name,
                    run=event.run.id,
                    kind=str(event.kind),
                )
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
        """Send what is queued within `timeout` seconds, then stop (pending retries are dropped;
        what was not sent is logged).

        Workers are daemon threads: one stuck on a target that never answers does not keep the
        process alive.
        """
        _drain([("", w) for w in self._workers], timeout)

    def failing(self) -> bool:
        """Whether the latest send to some target failed (it may be down)."""
        return any(w.down for w in self._workers)

    def undelivered(self) -> list[tuple[str, int, str | None]]:
        """After `close`: per target that missed events, (its name, how many events it
        missed, the latest error)."""
        return [(w.target.name, w.dropped, w.last_error) for w in self._workers if w.dropped > 0]


def drain_all(notifiers: Mapping[str, object], timeout: float = 5.0) -> None:
    """Drain every `BackgroundNotifier` among `notifiers` (by analysis name) at once: all their
    workers are told to stop together and given one shared `timeout`, so shutdown takes at most
    `timeout` seconds however many targets hang. Others (the no-op) are left alone."""
    workers = [
        (name, worker)
        for name, notifier in notifiers.items()
        if isinstance(notifier, BackgroundNotifier)
        for worker in notifier._workers
    ]
    _drain(workers, timeout)


def _drain(workers: list[tuple[str, _Worker]], timeout: float) -> None:
    """Stop `workers` (each with the analysis it serves, "" when unknown) within one `timeout`:
    what is queued is sent until then; what is left is dropped and logged per target."""
    deadline = time.monotonic() + max(timeout, 0.0)
    for _, worker in workers:
        worker.stop()
    for _, worker in workers:
        worker.thread.join(max(deadline - time.monotonic(), 0.0))
    for _, worker in workers:
        worker.stopping.set()
    for analysis, worker in workers:
        queued, in_flight = worker.left_behind()
        worker.dropped += queued + in_flight
        if queued or in_flight:
            _log.warning(
                "notifications dropped at shutdown",
                analysis=analysis or None,
                target=worker.target.name,
                queued=queued,
                in_flight=in_flight,
                timeout=timeout,
            )
        close = getattr(worker.target.notifier, "close", None)
        if callable(close) and not worker.thread.is_alive():
            try:
                close()
            except Exception as error:  # closing a client must not change how Verdict ends
                _log.warning("notifier not closed", target=worker.target.name, error=str(error))
