"""Decode a Prometheus matrix answer (raw samples) straight into flat numpy arrays.

A raw-sample page of a large fleet is tens of megabytes of `[<time>,"<value>"]` pairs. Parsed
with `json.loads`, every pair becomes a list, a float and a string before numpy sees it, and
that costs more than Prometheus spends writing the answer. `decode_matrix` parses the
answer's skeleton (status, labels, warnings) with `json` and every sample with one numpy pass:

1. every `"values":[[ ... ]]` span is cut out of the bytes and replaced by its series'
   index (the pattern cannot occur inside a JSON string, where a `"` is always escaped, nor
   in a label, whose value is a string);
2. the skeleton, now small, is parsed with `json.loads` as any answer would be;
3. the spans, joined, lose their quotes and brackets and are read as one comma-separated
   list of numbers (`NaN`, `+Inf` and `-Inf` included, as Prometheus writes them).

Every step is checked: the skeleton must be a matrix whose series carry the index of their
own span, and the number count must be exactly two per sample. An answer that does not fit
(another layout, a non-numeric sample) is parsed with `json.loads` instead, so the result is
always what the plain parse would give.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_OPEN = b'"values":[['
_CLOSE = b"]]"
_PAIR = b"],["


@dataclass(frozen=True)
class Matrix:
    """A matrix answer, flat: series i has labels `metrics[i]` and owns `sizes[i]`
    consecutive samples of `times` (seconds) and `values`. `body` is the rest of the
    answer (`status`, `data.resultType`, `warnings`, ...) with `data.result` emptied."""

    body: dict[str, Any]
    metrics: list[dict[str, str]]
    sizes: IntArray
    times: FloatArray
    values: FloatArray


class NotAMatrix(ValueError):
    """The answer is not a readable matrix (`decode_matrix` names what is wrong)."""


def decode_matrix(raw: bytes) -> Matrix:
    """The matrix in `raw` (a `/api/v1/query` answer body). Raises `json.JSONDecodeError`
    when `raw` is not JSON and `NotAMatrix` when a matrix's samples are unreadable; any other
    answer (an error, another result type) comes back as `body` with no series."""
    fast = _decode_fast(raw)
    return fast if fast is not None else _decode_plain(json.loads(raw))


def _decode_fast(raw: bytes) -> Matrix | None:
    parts = raw.split(_OPEN)
    spans: list[bytes] = []
    skeleton: list[bytes] = [parts[0]]
    for index, part in enumerate(parts[1:]):
        close = part.find(_CLOSE)
        if close < 0:
            return None
        spans.append(part[:close])
        skeleton.append(b'"values":%d' % index)
        skeleton.append(part[close + len(_CLOSE) :])
    try:
        body = json.loads(b"".join(skeleton))
    except ValueError:
        return None
    result = _result(body)
    if result is None:
        return None
    metrics: list[dict[str, str]] = []
    sizes = np.zeros(len(result), dtype=np.int64)
    next_span = 0
    for i, series in enumerate(result):
        if not isinstance(series, dict) or not isinstance(series.get("metric", {}), dict):
            return None
        values = series.get("values")
        if values == next_span and not isinstance(values, bool):
            sizes[i] = spans[next_span].count(_PAIR) + 1
            next_span += 1
        elif values != []:  # a series with no samples is the only other layout read here
            return None
        metrics.append(series.get("metric", {}))
    if next_span != len(spans):
        return None
    numbers = _numbers(b",".join(spans)) if spans else np.empty(0, dtype=np.float64)
    if numbers is None or numbers.size != 2 * int(sizes.sum()):
        return None
    result.clear()
    return Matrix(body, metrics, sizes, numbers[0::2].copy(), numbers[1::2].copy())


def _numbers(joined: bytes) -> FloatArray | None:
    """`1,"2",3,"NaN"` -> [1, 2, 3, nan]; None when any item is not a number."""
    text = joined.translate(None, b'"[]').decode("ascii", errors="replace")
    if not text:
        return np.empty(0, dtype=np.float64)
    with warnings.catch_warnings():
        # numpy warns (and stops) at the first item it cannot read: the count check catches it
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=np.float64, sep=",")
        except ValueError:
            return None


def _result(body: Any) -> list[Any] | None:
    data = body.get("data") if isinstance(body, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if data is None or data.get("resultType") != "matrix" or not isinstance(result, list):
        return None
    return result


def _decode_plain(body: Any) -> Matrix:
    """The same arrays from a `json.loads` parse (the fallback; raises `NotAMatrix`)."""
    result = _result(body)
    if result is None:  # an error answer, or another result type: the caller's checks say so
        return Matrix(body, [], np.empty(0, np.int64), np.empty(0), np.empty(0))
    try:
        metrics = [series.get("metric", {}) for series in result]
        sizes = np.fromiter(
            (len(series["values"]) for series in result), dtype=np.int64, count=len(result)
        )
        points = [point for series in result for point in series["values"]]
        times = np.asarray([point[0] for point in points], dtype=np.float64)
        values = np.asarray([point[1] for point in points], dtype=np.float64)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise NotAMatrix(f"unreadable samples: {exc!r}") from exc
    result.clear()
    return Matrix(body, metrics, sizes, times, values)
