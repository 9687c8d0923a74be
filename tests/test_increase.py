"""metrics.increase: Prometheus 2.x's cumulative `increase()` from raw samples, page by page.

The real-Prometheus suite (`test_prometheus_range_read.py`) proves the numbers equal
Prometheus' own; here, on random series with resets, gaps, NaNs and late births, that the answer
does not depend on how the samples are cut into pages, and that it follows a plain scalar
transcription of `extrapolatedRate` (Prometheus 2.42, promql/functions.go).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from metrics.increase import CumulativeIncrease, LabelKey, Page

START = 1_700_000_000_000
STEP = 60_000
LOOKS = 12
ENDS = [START + STEP * (k + 1) for k in range(LOOKS)]


def _series(seed: int) -> list[tuple[LabelKey, LabelKey, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(8):
        offset = int(rng.integers(0, 15_000))
        times = np.arange(START + offset, ENDS[-1] + 1, 15_000, dtype=np.int64)
        if i % 3 == 1:  # born late
            times = times[times > START + int(rng.integers(1, 6)) * STEP]
        keep = rng.random(times.size) > 0.15  # missing scrapes
        times = times[keep]
        values = np.cumsum(rng.poisson(20, times.size)).astype(np.float64)
        if i % 4 == 2 and values.size > 10:  # a reset
            values[values.size // 2 :] -= values[values.size // 2 - 1] - 3
        if i == 5 and values.size > 4:
            values[3] = math.nan
        key: LabelKey = (("pod", f"p{i}"), ("le", "0.1" if i % 2 else "+Inf"))
        out.append((key, (("le", key[1][1]),), times, values))
    return out


def _run(series: list[tuple[LabelKey, LabelKey, np.ndarray, np.ndarray]], cuts: list[int],
         present: set[LabelKey]) -> dict[LabelKey, dict[int, float]]:
    return _computed(series, cuts, present).answers()


def _computed(series: list[tuple[LabelKey, LabelKey, np.ndarray, np.ndarray]], cuts: list[int],
              present: set[LabelKey],
              parts: list[Callable[[LabelKey], bool | None]] | None = None) -> CumulativeIncrease:
    computed = CumulativeIncrease(START, ENDS, present, parts or [])
    after = START - 1
    for cut in cuts:
        end = ENDS[cut - 1]
        chosen = [(k, g, t[(t > after) & (t <= end)], v[(t > after) & (t <= end)]) for k, g, t, v in series]
        chosen = [c for c in chosen if c[2].size]
        computed.add_page(Page(
            keys=[c[0] for c in chosen], groups=[c[1] for c in chosen],
            sizes=np.asarray([c[2].size for c in chosen], dtype=np.int64),
            times_ms=np.concatenate([c[2] for c in chosen]) if chosen else np.empty(0, np.int64),
            values=np.concatenate([c[3] for c in chosen]) if chosen else np.empty(0),
            end_ms=end,
        ))
        after = end
    return computed


def _reference(series: list[tuple[LabelKey, LabelKey, np.ndarray, np.ndarray]],
               present: set[LabelKey]) -> dict[LabelKey, dict[int, float]]:
    """One look at a time, one series at a time: the 2.42 code, transcribed."""
    out: dict[LabelKey, dict[int, float]] = {}
    for k, end in enumerate(ENDS):
        grown: dict[LabelKey, float] = {}
        born: dict[LabelKey, float] = {}
        for key, group, times, values in series:
            inside = (times >= START) & (times <= end)
            t, v = times[inside], values[inside]
            if t.size and key not in present:
                low = v[0]
                for x in v:
                    if x < low or math.isnan(low):
                        low = x
                born[group] = born.get(group, 0.0) + low
            if t.size < 2:
                continue
            result = v[-1] - v[0]
            last = 0.0
            for x in v:
                if x < last:
                    result += last
                last = x
            to_start = (t[0] - START) / 1000
            to_end = (end - t[-1]) / 1000
            sampled = (t[-1] - t[0]) / 1000
            average = sampled / (t.size - 1)
            if result > 0 and v[0] >= 0:
                to_zero = sampled * (v[0] / result)
                if to_zero < to_start:
                    to_start = to_zero
            threshold = average * 1.1
            interval = sampled
            interval += to_start if to_start < threshold else average / 2
            interval += to_end if to_end < threshold else average / 2
            grown[group] = grown.get(group, 0.0) + result * (interval / sampled)
        for group, value in grown.items():
            out.setdefault(group, {})[k] = value + born[group] if group in born else value
    return out


@pytest.mark.parametrize("seed", range(6))
def test_pages_do_not_change_the_answer_and_it_follows_prometheus(seed: int) -> None:
    series = _series(seed)
    # the late-born ones (every third) are absent at the start; the others existed before it
    present = {key for i, (key, _, _, _) in enumerate(series) if i % 3 != 1}
    expected = _reference(series, present)
    for cuts in ([LOOKS], [1, LOOKS], list(range(1, LOOKS + 1)), [3, 4, 9, LOOKS]):
        got = _run(series, cuts, present)
        assert got.keys() == expected.keys()
        for group in expected:
            assert got[group].keys() == expected[group].keys()
            np.testing.assert_allclose(
                [got[group][k] for k in sorted(got[group])],
                [expected[group][k] for k in sorted(expected[group])],
                rtol=1e-12, equal_nan=True,
            )


def _pod(key: LabelKey) -> int:
    return int(dict(key)["pod"][1:])


def _same(got: dict[LabelKey, dict[int, float]] | None,
          expected: dict[LabelKey, dict[int, float]]) -> bool:
    """Equal to the last bit, NaN where NaN."""
    return got is not None and got.keys() == expected.keys() and all(
        got[g].keys() == expected[g].keys()
        and all(a == b or (math.isnan(a) and math.isnan(b))
                for a, b in zip(got[g].values(), expected[g].values(), strict=True))
        for g in expected
    )


@pytest.mark.parametrize("seed", range(4))
def test_a_part_counted_from_the_whole_is_what_its_own_series_give(seed: int) -> None:
    # a part (some of the series) counted beside the whole from the same pages equals the
    # whole counted over that part's series alone, to the last bit: same series order, same
    # sums; one part selecting nothing has no answers at all
    series = _series(seed)
    present = {key for i, (key, _, _, _) in enumerate(series) if i % 3 != 1}
    parts: list[Callable[[LabelKey], bool | None]] = [
        lambda key: _pod(key) % 2 == 0,
        lambda key: _pod(key) in (1, 4, 5),
        lambda key: False,
    ]
    for cuts in ([LOOKS], [1, LOOKS], [3, 4, 9, LOOKS]):
        computed = _computed(series, cuts, present, parts)
        assert _same(computed.answers(), _run(series, cuts, present)), "the whole is unchanged"
        for i, part in enumerate(parts):
            alone = _run([s for s in series if part(s[0])], cuts, present)
            assert _same(computed.part_answers(i), alone)
        assert computed.part_answers(2) == {}
        assert computed.part_answers(0), "precondition: the part has answers"


def test_a_part_that_cannot_tell_a_series_has_no_answers() -> None:
    # (a label value the part's test cannot judge: the caller reads the part itself)
    series = _series(1)
    computed = _computed(series, [LOOKS], set(), [lambda key: None if _pod(key) == 3 else True,
                                                  lambda key: True])
    assert computed.part_answers(0) is None
    assert _same(computed.part_answers(1), computed.answers())
