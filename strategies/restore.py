"""Putting traffic back on the stable version until it lands (fail-safe rule I2).

After a fail (or an interrupt, or an error that stops the run), the write that puts traffic back
on stable is the one write that must land: `until_restored` sends it, reads the result back, and
tries again with a growing wait while the API answers errors, conflicts or stalls, until the read
shows stable holding all traffic or `RestorePolicy.deadline` passes. Every try is logged. Past the
deadline it raises `RestoreFailed`, whose message says that traffic is still on the new version;
the command exits with its own code for it (`verdict canary run`: 6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from strategies.kube.client import Clock
from strategies.kube.errors import (
    DeploymentError,
    KubeUnreachable,
    RouterError,
    SelectorChanged,
    ServiceError,
    TrafficChanged,
)

RETRIED: tuple[type[BaseException], ...] = (
    KubeUnreachable,
    RouterError,
    ServiceError,
    DeploymentError,
    OSError,
)
"""What a try may fail with and still be tried again (a refusal may be a passing 403 of a
rotating token; only the deadline ends the tries). A route or selector changed by someone else
is not retried: it is reported, never overwritten."""


@dataclass(frozen=True)
class RestorePolicy:
    deadline: float = 300.0
    """Seconds to keep trying before giving up (the rollout file's `rollbackDeadline`)."""
    first_wait: float = 0.5
    max_wait: float = 15.0


class RestoreFailed(Exception):
    """The write back to stable did not land within its deadline: traffic is still on the new
    version; the message says where and why."""


def until_restored(
    write: Callable[[], object],
    restored: Callable[[], bool],
    *,
    what: str,
    clock: Clock,
    policy: RestorePolicy,
) -> int:
    """Send `write` and check `restored()` until it holds; the number of tries it took."""
    log = structlog.get_logger().bind(restore=what)
    began = clock.now()
    wait = policy.first_wait
    tries = 0
    while True:
        tries += 1
        try:
            write()
            if restored():
                if tries > 1:
                    log.warning("traffic back on stable", tries=tries)
                return tries
            problem = "the read-back does not show it yet"
        except (TrafficChanged, SelectorChanged):
            raise
        except RETRIED as error:
            problem = str(error) or type(error).__name__
        elapsed = (clock.now() - began).total_seconds()
        log.warning("putting traffic back on stable failed; trying again", tries=tries,
                    error=problem, seconds=round(elapsed, 1))  # fmt: skip
        if elapsed + wait > policy.deadline:
            raise RestoreFailed(
                f"{what}: traffic is still on the new version after {tries} tries in "
                f"{elapsed:.0f} s (rollbackDeadline {policy.deadline:g} s): {problem}"
            )
        clock.sleep(wait)
        wait = min(wait * 2, policy.max_wait)
