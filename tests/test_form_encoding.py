"""The Prometheus transport's form body (`metrics.transport.form_encoded`) is exactly what
`urllib.parse.urlencode` makes, on every character a query or label value can hold."""

from __future__ import annotations

import random
import urllib.parse

import pytest

from metrics.transport import form_encoded


def test_random_text_is_encoded_as_urlencode_does() -> None:
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(128)] + ["é", "ü", "→", "😀"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        fields = {"query": text, "time": f"{rng.random() * 1e9:.3f}"}
        assert form_encoded(fields) == urllib.parse.urlencode(fields), repr(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a%b+c d",
        "%2B%%",
        "+ +",
        'x{a=~"b|c",d!="e\\"f"} @ 1765000000.000',
        "sum by (le) (increase(h_bucket[30s])) or on() vector(0) & 1;2#3",
        "ascii and non-ascii: é",
    ],
)
def test_characters_that_mean_something_in_a_form_are_escaped(text: str) -> None:
    body = form_encoded({"query": text})
    assert body == urllib.parse.urlencode({"query": text})
    assert urllib.parse.parse_qs(body, keep_blank_values=True) == {"query": [text]}
