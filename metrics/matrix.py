"""Decode a Prometheus matrix answer (raw samples) straight into flat numpy arrays.

A raw-sample page of a large fleet is tens of megabytes of `[<time>,"<value>"]` pairs. Parsed
with `json.loads`, every pair becomes a list, a float and a string before numpy sees it, and
that costs more than Prometheus spends writing the answer. `decode_matrix` parses the
answer's skeleton (status, labels, warnings) with `json` and every sample in one pass:

1. every `"values":[[ ... ]]` span is cut out of the bytes, with the series' label object
   just before it, and the series' index is left in their place (the patterns cannot occur
   inside a JSON string, where a `"` is always escaped);
2. the skeleton, now small, is parsed with `json.loads` as any answer would be, and each
   distinct label object once (a read of many pages passes the labels it has seen);
3. the spans, joined, lose their quotes and brackets and are read as one JSON list of
   numbers (`NaN`, `+Inf` and `-Inf` included, as Prometheus writes them).

Every step is checked: the skeleton must be a matrix of exactly the indexes of the spans,
every label object a JSON object of strings, and the number count exactly two per sample. An answer that does not fit
(another layout, a non-numeric sample) is parsed with `json.loads` instead, so the result is
always what the plain parse would give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_OPEN = b'"values":[['
_CLOSE = b"]]"
_PAIR = b"],["


LabelKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Matrix:
    """A matrix answer, flat: series i has labels `keys[i]` (its label pairs, in the answer's
    order) and owns `sizes[i]` consecutive samples of `times` (seconds) and `values`. `body`
    is the rest of the answer (`status`, `data.resultType`, `warnings`, ...) with
    `data.result` emptied."""

    body: dict[str, Any]
    keys: list[LabelKey]
    sizes: IntArray
    times: FloatArray
    values: FloatArray


class NotAMatrix(ValueError):
    """The answer is not a readable matrix (`decode_matrix` names what is wrong)."""


def decode_matrix(raw: bytes, known: dict[bytes, LabelKey] | None = None) -> Matrix:
    """The matrix in `raw` (a `/api/v1/query` answer body). Raises `json.JSONDecodeError`
    when `raw` is not JSON and `NotAMatrix` when a matrix's samples are unreadable; any other
    answer (an error, another result type) comes back as `body` with no series.

    `known` maps a series' label object, as written, to its labels: pass the same dict for
    the pages of one read, and each series' labels are parsed once, not once a page."""
    fast = _decode_fast(raw, {} if known is None else known)
    return fast if fast is not None else _decode_plain(json.loads(raw))


_METRIC = b'{"metric":'


def _decode_fast(raw: bytes, known: dict[bytes, LabelKey]) -> Matrix | None:
    # Prometheus writes each series as {"metric":{...},"values":[[...]]}: cut on the values,
    # take the label object just before each, and leave the series' index in its place.
    parts = raw.split(_OPEN)
    spans: list[bytes] = []
    labels: list[bytes] = []
    skeleton: list[bytes] = []
    head = parts[0]
    for index, part in enumerate(parts[1:]):
        at = head.rfind(_METRIC)
        close = part.find(_CLOSE)
        if at < 0 or close < 0 or not head.endswith(b",") or part[close + 2 : close + 3] != b"}":
            return None
        labels.append(head[at + len(_METRIC) : -1])
        skeleton.append(head[:at])
        skeleton.append(b"%d" % index)
        spans.append(part[:close])
        head = part[close + 3 :]
    skeleton.append(head)
    try:
        body = json.loads(b"".join(skeleton))
    except ValueError:
        return None
    result = _result(body)
    if result is None or result != list(range(len(spans))) or not _learn(labels, known):
        return None
    keys = [known[text] for text in labels]
    sizes = np.fromiter((span.count(_PAIR) + 1 for span in spans), dtype=np.int64, count=len(spans))
    numbers = _numbers(b",".join(spans)) if spans else np.empty(0, dtype=np.float64)
    if numbers is None or numbers.size != 2 * int(sizes.sum()):
        return None
    result.clear()
    return Matrix(body, keys, sizes, numbers[0::2].copy(), numbers[1::2].copy())


def count_samples(raw: bytes) -> int:
    """How many samples a matrix answer holds, counted in its bytes without decoding them
    (exact for Prometheus' layout; an estimate for any other)."""
    return raw.count(_PAIR) + raw.count(_OPEN)


def _learn(labels: list[bytes], known: dict[bytes, LabelKey]) -> bool:
    """Add the label objects not in `known` (parsed together, in one `json.loads`); False
    if any is not a JSON object of strings."""
    new = list(dict.fromkeys(text for text in labels if text not in known))
    if not new:
        return True
    try:
        parsed = json.loads(b"[" + b",".join(new) + b"]")
    except ValueError:
        return False
    if len(parsed) != len(new):
        return False
    for text, one in zip(new, parsed, strict=True):
        if not isinstance(one, dict) or not all(isinstance(v, str) for v in one.values()):
            return False
        known[text] = tuple(one.items())
    return True


def _numbers(joined: bytes) -> FloatArray | None:
    """`1,"2",3,"NaN"` -> [1, 2, 3, nan]; None when any item is not a number. The items lose
    their quotes and are read by `json` (its number scanner is about twice as fast as
    `numpy.fromstring`), with Prometheus' `+Inf` / `-Inf` spelt as `json` reads them; words
    `json` would read as something else than a number send the answer to the plain parse."""
    text = joined.translate(None, b'"[]')
    if not text:
        return np.empty(0, dtype=np.float64)
    if text.translate(None, b"0123456789.,eE+-"):  # a word: NaN, Inf, or one json misreads
        if b"Inf" in text:
            text = text.replace(b"+Inf", b"Infinity").replace(b"-Inf", b"-Infinity")
        if b"null" in text or b"true" in text or b"false" in text:
            return None
    if b"-0" in text and b",-0," in b"," + text + b",":
        return None  # (json reads an integer -0 as 0, `float` as -0.0)
    try:
        numbers = json.loads(b"[" + text + b"]")
        return np.fromiter(numbers, dtype=np.float64, count=len(numbers))
    except (ValueError, TypeError, OverflowError):
        return None


def _result(body: Any, result_type: str = "matrix") -> list[Any] | None:
    """The answer's `data.result` when it is a list of `result_type`; else None."""
    data = body.get("data") if isinstance(body, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("resultType") != result_type:
        return None
    if not isinstance(result, list):
        return None
    return result


def _decode_plain(body: Any) -> Matrix:
    """The same arrays from a `json.loads` parse (the fallback; raises `NotAMatrix`)."""
    result = _result(body)
    if result is None:  # an error answer, or another result type: the caller's checks say so
        return Matrix(body, [], np.empty(0, np.int64), np.empty(0), np.empty(0))
    try:
        keys: list[LabelKey] = [tuple(series.get("metric", {}).items()) for series in result]
        sizes = np.fromiter(
            (len(series["values"]) for series in result), dtype=np.int64, count=len(result)
        )
        points = [point for series in result for point in series["values"]]
        times = np.asarray([point[0] for point in points], dtype=np.float64)
        values = np.asarray([point[1] for point in points], dtype=np.float64)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise NotAMatrix(f"unreadable samples: {exc!r}") from exc
    result.clear()
    return Matrix(body, keys, sizes, times, values)


_VALUE = b',"value":['


def decode_vector_keys(raw: bytes, known: dict[bytes, LabelKey]) -> tuple[Any, list[LabelKey]]:
    """An instant-vector answer's body and the label key of each of its series, when only
    the series matter (which exist, not their values): each label object is cut out of the
    bytes as `decode_matrix` cuts them, and parsed once for all the reads that share `known`
    (a read's pages name the same series). `body["data"]["result"]` holds each series' index
    in place of the series (its value is not parsed). Raises `json.JSONDecodeError` when `raw` is not
    JSON; any other layout is parsed with `json.loads` (keys from its `metric` objects)."""
    parts = raw.split(_METRIC)
    labels: list[bytes] = []
    # each series, {"metric":{...},"value":[<time>,"<value>"]}, is left as its index
    skeleton = [parts[0]]
    for index, part in enumerate(parts[1:]):
        close = part.find(_VALUE)
        end = part.find(b"]}", close)
        if close < 1 or end < 0 or part[close - 1 : close] != b"}":
            return _vector_plain(raw)
        labels.append(part[:close])
        skeleton.append(b"%d" % index)
        skeleton.append(part[end + 2 :])
    try:
        body = json.loads(b"".join(skeleton))
    except ValueError:
        return _vector_plain(raw)
    if _result(body, "vector") != list(range(len(labels))) or not _learn(labels, known):
        return _vector_plain(raw)
    return body, [known[text] for text in labels]


def _vector_plain(raw: bytes) -> tuple[Any, list[LabelKey]]:
    body = json.loads(raw)
    result = _result(body, "vector")
    if result is None:
        return body, []  # an error answer, or not a vector: the caller's checks say so
    keys = [
        tuple(s["metric"].items())
        for s in result
        if isinstance(s, dict) and isinstance(s.get("metric"), dict)
    ]
    return body, keys
