"""The flat matrix decoder gives exactly what `json.loads` gives, or falls back to it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from metrics.matrix import NotAMatrix, _decode_fast, decode_matrix


def _answer(result: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}, **extra}
    return json.dumps(body, separators=(",", ":")).encode()


def _plain(
    raw: bytes,
) -> tuple[list[tuple[tuple[str, str], ...]], list[int], list[float], list[float]]:
    result = json.loads(raw)["data"]["result"]
    points = [p for s in result for p in s["values"]]
    return (
        [tuple(s["metric"].items()) for s in result],
        [len(s["values"]) for s in result],
        [float(p[0]) for p in points],
        [float(p[1]) for p in points],
    )


SERIES = [
    {
        "metric": {"__name__": "req_total", "pod": "a", "le": "0.25"},
        "values": [[1764550000.123, "1"], [1764550015, "2.5"], [1764550030.5, "1e+21"]],
    },
    # a label value that looks like the layout the decoder cuts on
    {"metric": {"pod": 'b"values":[[1,"2"]]', "values": "[[x]]"}, "values": [[1764550000, "NaN"]]},
    {"metric": {}, "values": [[1764550000, "+Inf"], [1764550015, "-Inf"], [1764550030, "0"]]},
]


def test_the_flat_arrays_are_the_plain_parse() -> None:
    raw = _answer(SERIES)
    matrix = decode_matrix(raw)
    assert _decode_fast(raw, {}) is not None, "the flat path reads it (no fallback)"
    metrics, sizes, times, values = _plain(raw)
    assert matrix.keys == metrics
    assert matrix.sizes.tolist() == sizes
    assert matrix.times.tolist() == times
    np.testing.assert_array_equal(matrix.values, np.asarray(values))
    assert matrix.body["status"] == "success" and matrix.body["data"]["result"] == []


def test_a_large_random_answer_round_trips() -> None:
    rng = np.random.default_rng(11)
    result = []
    for i in range(300):
        n = int(rng.integers(1, 50))
        t = 1764550000 + np.cumsum(rng.integers(1, 30_000, size=n)) / 1000
        v = rng.integers(0, 10**12, size=n)
        result.append(
            {
                "metric": {"pod": f"p{i}", "le": str(i % 7)},
                "values": [[float(a), str(b)] for a, b in zip(t, v, strict=True)],
            }
        )
    raw = _answer(result)
    matrix = decode_matrix(raw)
    assert _decode_fast(raw, {}) is not None
    metrics, sizes, times, values = _plain(raw)
    assert matrix.keys == metrics and matrix.sizes.tolist() == sizes
    assert matrix.times.tolist() == times and matrix.values.tolist() == values
    # the next page is sized by the samples counted in the bytes, before they are decoded
    from metrics.matrix import count_samples

    assert count_samples(raw) == int(matrix.sizes.sum()) == len(times)
    assert count_samples(_answer([])) == 0


def test_warnings_and_other_keys_are_kept() -> None:
    matrix = decode_matrix(_answer(SERIES[:1], warnings=["partial response"]))
    assert matrix.body["warnings"] == ["partial response"]
    assert matrix.sizes.tolist() == [3]


def test_an_empty_matrix_and_other_answers_have_no_series() -> None:
    assert decode_matrix(_answer([])).sizes.size == 0
    error = decode_matrix(b'{"status":"error","errorType":"bad_data","error":"parse error"}')
    assert error.body["status"] == "error" and error.keys == []
    vector = decode_matrix(b'{"status":"success","data":{"resultType":"vector","result":[]}}')
    assert vector.body["data"]["resultType"] == "vector" and vector.keys == []
    # `data` that is not an object: no series, and the source's checks name the answer
    from metrics.matrix import decode_vector_keys

    odd = b'{"status":"success","data":[]}'
    assert decode_matrix(odd).keys == [] and decode_vector_keys(odd, {}) == (json.loads(odd), [])


def test_unreadable_samples_are_refused_and_not_json_raises() -> None:
    with pytest.raises(NotAMatrix):
        decode_matrix(_answer([{"metric": {}, "values": [[1764550000, "lots"]]}]))
    with pytest.raises(NotAMatrix):
        decode_matrix(_answer([{"metric": {}, "values": [[1764550000]]}]))
    # words JSON would read as something else than a number are refused too
    for word in ("null", "true", "false", "Infinity2", "1e"):
        with pytest.raises(NotAMatrix):
            decode_matrix(_answer([{"metric": {}, "values": [[1764550000, word]]}]))
    with pytest.raises(json.JSONDecodeError):
        decode_matrix(b"<html>not the API</html>")


def test_numbers_as_prometheus_writes_them_are_read_as_float_reads_them() -> None:
    words = ["0", "1", "-2.5", "1e+06", "1.5e-07", "NaN", "+Inf", "-Inf", "123456789012345678901",
             "0.1", "4503599627370497", "-0.0"]  # fmt: skip
    raw = _answer([{"metric": {"w": "x"}, "values": [[1764550000 + i, w] for i, w in enumerate(words)]}])
    matrix = _decode_fast(raw, {})
    assert matrix is not None  # the fast path, not the fallback
    expected = np.array([float(w) for w in words])
    np.testing.assert_array_equal(matrix.values, expected)
    assert np.signbit(matrix.values[-1])
    # an integer -0 (json would read 0) is read by the plain parse: -0.0, as float reads it
    negative_zero = decode_matrix(_answer([{"metric": {}, "values": [[1764550000, "-0"]]}]))
    assert negative_zero.values[0] == 0 and np.signbit(negative_zero.values[0])


def test_a_series_without_samples_is_read_too() -> None:
    raw = _answer([SERIES[0], {"metric": {"pod": "idle"}, "values": []}, SERIES[2]])
    matrix = decode_matrix(raw)
    assert matrix.sizes.tolist() == [3, 0, 3]
    assert matrix.keys[1] == (("pod", "idle"),)
    assert matrix.values[3:].tolist()[0] == float("inf")


def test_the_pages_of_one_read_parse_each_label_object_once() -> None:
    known: dict[bytes, tuple[tuple[str, str], ...]] = {}
    first = decode_matrix(_answer(SERIES), known)
    second = decode_matrix(_answer(SERIES[::-1]), known)
    assert len(known) == len(SERIES)
    assert all(a is b for a, b in zip(first.keys, second.keys[::-1], strict=True))


def _vector(series: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": series}, **extra},
        separators=(",", ":"),
    ).encode()


def test_a_vectors_series_keys_are_its_metric_objects_learnt_once_for_the_pages() -> None:
    from metrics.matrix import decode_vector_keys

    tricky = {"__name__": "x", "path": '},"value":[', "q": '{"metric":'}
    series = [{"metric": {"__name__": "x", "le": "0.5"}, "value": [1.5, "2"]},
              {"metric": tricky, "value": [1.5, "NaN"]}]  # fmt: skip
    known: dict[bytes, Any] = {}
    body, keys = decode_vector_keys(_vector(series, warnings=["w"]), known)
    assert keys == [tuple(s["metric"].items()) for s in series]
    assert body["warnings"] == ["w"] and body["data"]["resultType"] == "vector"
    # a page of the same read finds the labels learnt: nothing is parsed again
    page = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": s["metric"], "values": [[1.5, "1"]]} for s in series]}},
        separators=(",", ":")).encode()  # fmt: skip
    learnt = dict(known)
    assert decode_matrix(page, known).keys == keys and known == learnt
    assert len(known) == 2


def test_a_vector_of_another_layout_or_an_error_is_parsed_plainly() -> None:
    from metrics.matrix import decode_vector_keys

    spaced = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"a": "b"}, "value": [1, "2"]}]}}).encode()  # fmt: skip
    assert decode_vector_keys(spaced, {})[1] == [(("a", "b"),)]
    odd_value = _vector([{"metric": {"a": "b"}, "value": [1, ']},{"x']},
                         {"metric": {"a": "c"}, "value": [1, "2"]}])  # fmt: skip
    assert decode_vector_keys(odd_value, {})[1] == [(("a", "b"),), (("a", "c"),)]
    error = b'{"status":"error","errorType":"bad_data","error":"parse error"}'
    assert decode_vector_keys(error, {}) == (json.loads(error), [])
    assert decode_vector_keys(_vector([]), {})[1] == []
    with pytest.raises(json.JSONDecodeError):
        decode_vector_keys(b"<html>", {})
