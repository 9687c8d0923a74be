"""`verdict serve` asks glibc for two malloc arenas (`analyzer.arenas`), unless the environment
already says how many."""

from __future__ import annotations

import pytest

from analyzer.arenas import limit_malloc_arenas


def test_glibc_takes_the_arena_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(8) is True  # this machine's Python runs on glibc


def test_an_arena_limit_in_the_environment_is_left_to_decide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
