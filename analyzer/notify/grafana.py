"""Grafana annotations: a region per step (or per web-provider run) and a point per decision.

The HTTP API (Grafana's `docs/sources/developers/http_api/annotations.md`):

* `POST /api/annotations` with `text`, `tags` (strings), `time` (and `timeEnd`) in epoch
  milliseconds, optionally `dashboardUID` and `panelId`; answers `{"id": N, ...}`. Without a
  dashboard it is an organization annotation, which any dashboard can query by tag.
* `PATCH /api/annotations/:id` updates `text`, `tags`, `time`, `timeEnd`: how a region closes.
* `Authorization: Bearer <service account token>` (needs `annotations:create` and
  `annotations:write`); `X-Grafana-Org-Id` picks the organization.

A region opens when a step starts (created with `time` only) and is closed by a PATCH that sets
its `timeEnd`. The id of an open region is kept in this object; if it is unknown at the end
(Grafana was down when the step started, or Verdict restarted) the whole region is created then.

Tags: `verdict`, `namespace:<ns>`, `rollout:<name>`, `analysis:<name>`, `outcome:<outcome>`
(decisions and closed regions), `kind:<decision|step|run>`, plus the configured tags.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx

from analyzer.notify.errors import NotifyError
from analyzer.notify.events import EventKind, RunEvent, time_ms
from analyzer.notify.http import send_json


@dataclass(frozen=True)
class GrafanaSettings:
    url: str
    token: str | None = None
    dashboard_uid: str | None = None
    panel_id: int | None = None
    tags: tuple[str, ...] = ()
    org_id: int | None = None
    timeout: float = 5.0


class GrafanaAnnotations:
    """A `Notifier` that writes Grafana annotations (see the module docstring)."""

    def __init__(self, settings: GrafanaSettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        headers = {"Content-Type": "application/json", "User-Agent": "verdict"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        if settings.org_id is not None:
            headers["X-Grafana-Org-Id"] = str(settings.org_id)
        self._client = client or httpx.Client(
            base_url=settings.url.rstrip("/"), timeout=settings.timeout, headers=headers
        )
        self._regions: dict[tuple[str, int | None], int] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def post(self, event: RunEvent) -> None:
        if event.kind is EventKind.STARTED:
            self._open(event)
        elif event.kind is EventKind.ENDED:
            self._close_region(event)
        elif event.kind is EventKind.DECISION:
            self._create(self._body(event, kind="decision", time=time_ms(event.time)))

    # --- requests ------------------------------------------------------------------------

    def _open(self, event: RunEvent) -> None:
        body = self._body(event, kind=_region_kind(event), time=time_ms(event.time))
        annotation = self._create(body)
        with self._lock:
            self._regions[(event.run.id, event.step)] = annotation

    def _close_region(self, event: RunEvent) -> None:
        with self._lock:
            annotation = self._regions.get((event.run.id, event.step))
        start = event.started or event.time
        body = self._body(event, kind=_region_kind(event), time=time_ms(start))
        body["timeEnd"] = time_ms(event.time)
        if annotation is None:  # never opened here: write the whole region now
            self._create(body)
            return
        body.pop("dashboardUID", None)  # PATCH updates text, tags, time and timeEnd only
        body.pop("panelId", None)
        send_json(
            self._client,
            "PATCH",
            f"/api/annotations/{annotation}",
            body,
            what=f"Grafana PATCH /api/annotations/{annotation}",
        )
        with self._lock:
            self._regions.pop((event.run.id, event.step), None)

    def _create(self, body: dict[str, object]) -> int:
        response = send_json(
            self._client, "POST", "/api/annotations", body, what="Grafana POST /api/annotations"
        )
        try:
            annotation = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            raise NotifyError(
                f"Grafana POST /api/annotations: answer without an id: {response.text[:200]}",
                retry=False,
            ) from None
        if not isinstance(annotation, int):
            raise NotifyError(f"Grafana answered a non-integer id {annotation!r}", retry=False)
        return annotation

    def _body(self, event: RunEvent, *, kind: str, time: int) -> dict[str, object]:
        body: dict[str, object] = {
            "time": time,
            "text": event.summary(),
            "tags": self._tags(event, kind),
        }
        if self.settings.dashboard_uid:
            body["dashboardUID"] = self.settings.dashboard_uid
        if self.settings.panel_id is not None:
            body["panelId"] = self.settings.panel_id
        return body

    def _tags(self, event: RunEvent, kind: str) -> list[str]:
        tags = [
            "verdict",
            f"kind:{kind}",
            f"namespace:{event.run.namespace}",
            f"rollout:{event.run.rollout}",
            f"analysis:{event.run.analysis}",
        ]
        outcome = event.outcome or (event.verdict if event.kind is EventKind.ENDED else None)
        if outcome:
            tags.append(f"outcome:{outcome}")
        tags.extend(t for t in self.settings.tags if t not in tags)
        return tags


def _region_kind(event: RunEvent) -> str:
    return "run" if event.step is None else "step"
