"""Reads asked for while the same read is in flight share it (single flight): the Prometheus
source's reads of one counter over the same looks, the controller's reads of a namespace's pod
Events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")


class SharedReads:
    """Reads asked for while the same read is in flight share its answer (or its error): the
    first asker reads, the others wait for it. A finished read is not kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flying: dict[Hashable, Future[Any]] = {}
        self.reads = 0  # reads sent (the rest were shared)

    def get(self, key: Hashable, read: Callable[[], _T]) -> _T:
        with self._lock:
            flying = self._flying.get(key)
            if flying is None:
                mine: Future[Any] = Future()
                self._flying[key] = mine
                self.reads += 1
        if flying is not None:
            return flying.result()  # type: ignore[no-any-return]
        try:
            answer = read()
        except BaseException as error:
            mine.set_exception(error)
            raise
        else:
            mine.set_result(answer)
            return answer
        finally:
            with self._lock:
                del self._flying[key]
