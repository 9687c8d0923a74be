"""Cumulative counter increases computed from raw samples, as Prometheus 2.x computes them.

`PrometheusSource` asks, at the end of each interval k of a window, for the increase of a
counter selector since the window's start (`metrics.promql.increase_query`)::

    (sum by (g)(increase(sel[R_k])) + on (g) sum by (g)(min_over_time(sel[R_k]) unless sel offset R_k))
      or sum by (g)(increase(sel[R_k]))

with R_k = end_k - start and g = `le` for histogram buckets (no grouping otherwise). Every one
of those answers is a function of the raw samples in [start, end_k] and of which series exist
at `start`. `CumulativeIncrease` reads those samples once (in time pages, so memory stays
bounded) and gives every look's answer, with the arithmetic of Prometheus 2.x (the Debian
package the tests run):

* ranges are closed, [start, end_k]; a series needs two samples in its range to have an
  `increase`;
* counter resets: every drop adds the value before the drop (`promql/functions.go`,
  `extrapolatedRate`, Prometheus 2.42);
* extrapolation at the range's edges only: towards a boundary by the distance to it when that
  is under 1.1 average sample spacings, else by half a spacing; never below the counter's
  extrapolated zero point;
* a series without a sample at or in the lookback before `start` ("born" inside the window)
  adds its smallest value in the range (`min_over_time`), so its first requests are counted;
* a group whose series have no two samples in the range has no answer at that look, even if
  a series was born in it (the `or` of the query above).

For the check of a read against a store whose own `increase()` follows other rules
(VictoriaMetrics' does not extrapolate, and starts from the sample before the range), one
look's plain differences are kept too (`plain_at`): per group, the sum over the series with two
samples in [start, end_k] of last - first + the drops' corrections, with no extrapolation and
nothing added for a born series. That is MetricsQL's `increase_prometheus()` over the same
samples (`PrometheusSource` asks it of such a store).

Sums over series may differ from Prometheus' in the last bits (another summation order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Page:
    """The raw samples of one time page, flat: series i owns `sizes[i]` consecutive samples
    (ascending times, ms) of `times_ms` / `values`, and has label key `keys[i]` and group
    key `groups[i]` (its `le` for histogram buckets, empty otherwise)."""

    keys: list[LabelKey]
    groups: list[LabelKey]
    sizes: IntArray
    times_ms: IntArray
    values: FloatArray
    end_ms: int


@dataclass
class _State:
    """Per-series running state after the samples read so far (one slot per series)."""

    group: list[int] = field(default_factory=list)
    born: list[bool] = field(default_factory=list)
    first_t: list[int] = field(default_factory=list)
    first_v: list[float] = field(default_factory=list)
    last_t: list[int] = field(default_factory=list)
    last_v: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    corr: list[float] = field(default_factory=list)
    minv: list[float] = field(default_factory=list)


def _without_name(key: LabelKey) -> LabelKey:
    """Series match across `unless` on every label but the metric name."""
    return tuple(kv for kv in key if kv[0] != "__name__")


class CumulativeIncrease:
    """Every look's `sum by (group)` cumulative increase since `start_ms`, page by page.

    `ends_ms` are the looks' instants (ascending, all after `start_ms`); `present` the label
    keys (`__name__` is ignored) of the series present at `start_ms` (a sample in the
    lookback before it, not a stale one): the answer of `sel` at `start_ms`, or of
    `sel offset R` at the end. Every other series of the pages was born inside the window
    (`last_over_time(sel[R]) unless sel offset R`). Feed `add_page` the samples of
    consecutive, non-overlapping time pages in order, each ending on a look's instant.

    `parts`: tests of a series' label key, each the selector of a part of `sel` (the series
    it tests true; None: it cannot tell, and that part has no answers): each part's answers
    are the same sums over its series alone, as a read of its own selector would give them
    (`part_answers`; see `metrics.selectors`).

    `plain_at`: a look whose plain differences (no extrapolation, nothing added for a born
    series; module docstring) are kept too (`plain_answers`).
    """

    def __init__(
        self,
        start_ms: int,
        ends_ms: Sequence[int],
        present: set[LabelKey],
        parts: Sequence[Callable[[LabelKey], bool | None]] = (),
        plain_at: int | None = None,
    ) -> None:
        self.start_ms = start_ms
        self.ends_ms = np.asarray(ends_ms, dtype=np.int64)
        self.present = {_without_name(key) for key in present}
        self._index: dict[LabelKey, int] = {}
        self._groups: dict[LabelKey, int] = {}
        self._state = _State()
        self._answers: dict[LabelKey, dict[int, float]] = {}
        self._parts = list(parts)
        # per part: whether each series (slot) is one of its series; None once it cannot tell
        self._members: list[list[bool] | None] = [[] for _ in self._parts]
        self._part_answers: list[dict[LabelKey, dict[int, float]]] = [{} for _ in self._parts]
        self._done = 0  # looks answered so far
        self._plain_at = plain_at
        self._plain: dict[LabelKey, float] | None = None

    @property
    def looks_done(self) -> int:
        return self._done

    def answers(self) -> dict[LabelKey, dict[int, float]]:
        """Group key -> {look index -> cumulative increase} for the looks answered so far."""
        return self._answers

    def plain_answers(self) -> dict[LabelKey, float] | None:
        """Group key -> the plain difference at look `plain_at` (None until it is answered,
        or when there is no such look)."""
        return self._plain

    def part_answers(self, part: int) -> dict[LabelKey, dict[int, float]] | None:
        """`answers` of part `part`'s series alone; None when a series could not be told."""
        return None if self._members[part] is None else self._part_answers[part]

    def add_page(self, page: Page) -> None:
        """Samples with times in (previous page end, page.end_ms] (the first page from
        `start_ms` on, inclusive); answers every look whose instant is <= `page.end_ms`."""
        first_look = self._done
        last_look = int(np.searchsorted(self.ends_ms, page.end_ms, side="right"))
        looks = last_look - first_look
        known = self._index.get
        slots = [known(key) for key in page.keys]
        if None in slots:  # series seen for the first time get the next slots
            slots = [
                self._slot(key, group) if slot is None else slot
                for slot, key, group in zip(slots, page.keys, page.groups, strict=True)
            ]
        ids = np.asarray(slots, dtype=np.int64)
        st = self._state
        n = len(st.group)
        sizes = np.asarray(page.sizes, dtype=np.int64)
        total = int(sizes.sum())
        if looks <= 0:
            if total:
                raise ValueError("samples after the last look")
            return
        group = np.asarray(st.group, dtype=np.int64)
        count0 = np.asarray(st.count, dtype=np.int64)
        corr0 = np.asarray(st.corr, dtype=np.float64)
        min0 = np.asarray(st.minv, dtype=np.float64)
        last_t0 = np.asarray(st.last_t, dtype=np.int64)
        last_v0 = np.asarray(st.last_v, dtype=np.float64)
        first_t = np.asarray(st.first_t, dtype=np.int64)
        first_v = np.asarray(st.first_v, dtype=np.float64)
        born = np.asarray(st.born, dtype=np.bool_)

        count = np.zeros((n, looks), dtype=np.int64)
        corr = np.zeros((n, looks), dtype=np.float64)
        mins = np.full((n, looks), np.nan, dtype=np.float64)
        last_i = np.full((n, looks), -1, dtype=np.int64)
        t = np.empty(0, dtype=np.int64)
        v = np.empty(0, dtype=np.float64)
        if total:
            sid = np.repeat(ids, sizes)
            t = np.asarray(page.times_ms, dtype=np.int64)
            v = np.asarray(page.values, dtype=np.float64)
            look = np.searchsorted(self.ends_ms[first_look:last_look], t, side="left")
            if (look >= looks).any():
                raise ValueError("samples after the page's end")
            starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))[sizes > 0]
            series_first = np.zeros(total, dtype=np.bool_)
            series_first[starts] = True
            previous = np.empty(total, dtype=np.float64)
            previous[1:] = v[:-1]
            previous[series_first] = last_v0[sid[series_first]]  # NaN when none before
            # a drop adds the value before it (comparisons with NaN are false, as in Go)
            drop = np.where(v < previous, previous, 0.0)
            # one group per (series, look) run of samples
            cut = series_first.copy()
            cut[1:] |= look[1:] != look[:-1]
            heads = np.flatnonzero(cut)
            tails = np.concatenate((heads[1:], [total])) - 1
            rows, cols = sid[heads], look[heads]
            count[rows, cols] = tails - heads + 1
            corr[rows, cols] = np.add.reduceat(drop, heads)
            mins[rows, cols] = np.fmin.reduceat(v, heads)
            last_i[rows, cols] = tails
            # first samples of series seen for the first time
            new = count0[sid[starts]] == 0
            first_t[sid[starts][new]] = t[starts][new]
            first_v[sid[starts][new]] = v[starts][new]

        count = np.cumsum(count, axis=1) + count0[:, None]
        corr = np.cumsum(corr, axis=1) + corr0[:, None]
        mins = np.fmin.accumulate(np.column_stack((min0, mins)), axis=1)[:, 1:]
        last_i = np.maximum.accumulate(last_i, axis=1)
        have = last_i >= 0
        pick = np.where(have, last_i, 0)
        last_t = np.where(have, t[pick] if total else 0, last_t0[:, None])
        last_v = np.where(have, v[pick] if total else 0.0, last_v0[:, None])

        self._answer(first_look, looks, group, born, count, corr, mins, first_t, first_v, last_t, last_v)

        st.count = count[:, -1].tolist()
        st.corr = corr[:, -1].tolist()
        st.minv = mins[:, -1].tolist()
        st.last_t = last_t[:, -1].tolist()
        st.last_v = last_v[:, -1].tolist()
        st.first_t = first_t.tolist()
        st.first_v = first_v.tolist()
        self._done = last_look

    def _slot(self, key: LabelKey, group: LabelKey) -> int:
        slot = self._index.get(key)
        if slot is None:
            slot = len(self._index)
            self._index[key] = slot
            st = self._state
            st.group.append(self._groups.setdefault(group, len(self._groups)))
            st.born.append(_without_name(key) not in self.present)
            st.first_t.append(0)
            st.first_v.append(float("nan"))
            st.last_t.append(0)
            st.last_v.append(float("nan"))
            st.count.append(0)
            st.corr.append(0.0)
            st.minv.append(float("nan"))
            for p, part in enumerate(self._parts):
                members = self._members[p]
                if members is None:
                    continue
                member = part(key)
                if member is None:
                    self._members[p] = None  # that part is read as its own selector
                else:
                    members.append(member)
        return slot

    def _answer(
        self,
        first_look: int,
        looks: int,
        group: IntArray,
        born: npt.NDArray[np.bool_],
        count: IntArray,
        corr: FloatArray,
        mins: FloatArray,
        first_t: IntArray,
        first_v: FloatArray,
        last_t: IntArray,
        last_v: FloatArray,
    ) -> None:
        """Prometheus 2.42's `extrapolatedRate` (isCounter, not isRate) for every series and
        look of the page, then the query's sums, `+ on (g)` and `or`."""
        if group.size == 0:
            return
        ends = self.ends_ms[first_look : first_look + looks][None, :]
        two = count >= 2
        with np.errstate(divide="ignore", invalid="ignore"):
            fv = first_v[:, None]
            result = last_v - fv + corr
            duration_to_start = (first_t[:, None] - self.start_ms) / 1000
            duration_to_end = (ends - last_t) / 1000
            sampled = (last_t - first_t[:, None]) / 1000
            average = sampled / (count - 1)
            to_zero = sampled * (fv / result)
            zero_first = (result > 0) & (fv >= 0) & (to_zero < duration_to_start)
            duration_to_start = np.where(zero_first, to_zero, duration_to_start)
            threshold = average * 1.1
            extrapolate = sampled + np.where(
                duration_to_start < threshold, duration_to_start, average / 2
            )
            extrapolate = extrapolate + np.where(
                duration_to_end < threshold, duration_to_end, average / 2
            )
            increase = result * (extrapolate / sampled)
        born_here = born[:, None] & (count >= 1)
        plain_at = self._plain_at
        if plain_at is not None and first_look <= plain_at < first_look + looks:
            column = plain_at - first_look
            self._plain = self._column_sums(group, result[:, column], two[:, column])
        sums = partial(self._sums, first_look, group, increase, mins)
        sums(self._answers, two, born_here)
        for members, answers in zip(self._members, self._part_answers, strict=True):
            if members is not None:
                member = np.asarray(members, dtype=np.bool_)[:, None]
                sums(answers, two & member, born_here & member)

    def _column_sums(
        self, group: IntArray, values: FloatArray, where: npt.NDArray[np.bool_]
    ) -> dict[LabelKey, float]:
        """`values` summed by group over the series where `where` (groups with none: absent)."""
        size = len(self._groups)
        sums = np.bincount(group[where], weights=values[where], minlength=size)
        has = np.bincount(group[where], minlength=size) > 0
        names = list(self._groups)
        return {names[g]: float(sums[g]) for g in np.flatnonzero(has).tolist()}

    def _sums(
        self,
        first_look: int,
        group: IntArray,
        increase: FloatArray,
        mins: FloatArray,
        answers: dict[LabelKey, dict[int, float]],
        two: npt.NDArray[np.bool_],
        born_here: npt.NDArray[np.bool_],
    ) -> None:
        """The query's sums over the series and looks where `two` (an increase) and
        `born_here` (a first value to add) hold, into `answers`: `+ on (g)` and `or`."""
        groups = len(self._groups)
        looks = increase.shape[1]
        # one bin per (group, look), filled in series order as a per-look sum would be
        bins = group[:, None] * looks + np.arange(looks)[None, :]
        size = groups * looks
        grown = np.bincount(bins[two], weights=increase[two], minlength=size)
        has_grown = np.bincount(bins[two], minlength=size) > 0
        born_sum = np.bincount(bins[born_here], weights=mins[born_here], minlength=size)
        has_born = np.bincount(bins[born_here], minlength=size) > 0
        value = np.where(has_born, grown + born_sum, grown)
        names = list(self._groups)
        grown_at = has_grown.reshape(groups, looks)
        values_at = value.reshape(groups, looks)
        look_ids = np.arange(first_look, first_look + looks)
        for g in np.flatnonzero(grown_at.any(axis=1)).tolist():
            row = grown_at[g]
            answers.setdefault(names[g], {}).update(
                zip(look_ids[row].tolist(), values_at[g][row].tolist(), strict=True)
            )
