"""Sending one JSON request for a notifier: errors become `NotifyError` (retry or not)."""

from __future__ import annotations

from typing import Any

import httpx

from analyzer.notify.errors import NotifyError
from analyzer.notify.events import EventKind, RunEvent


def send_json(
    client: httpx.Client,
    method: str,
    url: str,
    body: dict[str, Any],
    *,
    what: str,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request; a 2xx answer is returned, anything else raises `NotifyError`.

    5xx, 408, 429 and network errors may be retried; other 4xx answers are not (the same request
    would be refused again).
    """
    try:
        response = client.request(method, url, json=body, headers=headers)
    except httpx.TimeoutException as error:
        raise NotifyError(f"{what}: no answer in time ({type(error).__name__})") from None
    except httpx.HTTPError as error:
        raise NotifyError(f"{what}: {type(error).__name__}: {error}") from None
    if response.is_success:
        return response
    retry = response.status_code >= 500 or response.status_code in (408, 429)
    text = response.text[:200].strip()
    raise NotifyError(f"{what}: HTTP {response.status_code} {text}", retry=retry)


class DecisionPoster:
    """A notifier that POSTs each decision as one JSON document to a URL (other events are not
    sent). Subclasses say what the document is (`body`)."""

    what = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url
        self._client = client or httpx.Client(
            timeout=timeout, headers={"User-Agent": "verdict", **(headers or {})}
        )

    def body(self, event: RunEvent) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self._client.close()

    def post(self, event: RunEvent) -> None:
        if event.kind is not EventKind.DECISION:
            return
        send_json(self._client, "POST", self.url, self.body(event), what=self.what)
