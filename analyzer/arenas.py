"""Fewer malloc arenas for the long-running server (`verdict serve`).

glibc gives each thread that allocates at the same time as another an arena of its own, up to
eight per core; a server whose look, fetch and scheduler threads each touch a little of every
run keeps a little of every run in each of them, and the process grows by far more than the
runs' own objects (measured with 290 web-provider runs of the scale benchmark's fleet: 115 KiB
of resident memory a run with the default arenas, 64 KiB with two, for about 5 KiB of Python
objects a run). The interpreter lock lets one thread run Python at a time, so two arenas cost
no measurable contention. `MALLOC_ARENA_MAX` in the environment, when set, is left to decide.
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Ask glibc for at most `arenas` malloc arenas (before the server starts its threads);
    False where it cannot be asked (not glibc) or `MALLOC_ARENA_MAX` is set already."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process' own C library (no ldconfig call)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
