"""The `grafana:` and `notifications:` keys of an analysis file (pydantic, at the edge).

```yaml
grafana:
  url: http://grafana.monitoring:3000
  tokenFile: /var/run/secrets/grafana/token   # or tokenEnv: GRAFANA_TOKEN
  dashboardUID: verdict                        # optional: pin to a dashboard (else org-wide)
  panelId: 2                                   # optional
  tags: [team-checkout]                        # added to verdict's own tags
  on: [aborted, promoted]                      # optional: which decisions (default all)
notifications:
  - type: slack
    urlEnv: SLACK_WEBHOOK_URL                  # or url / urlFile
    on: [aborted, rolled-back]
  - type: webhook
    url: https://hooks.example.com/verdict
    headers: {X-Team: checkout}
    reportUrl: https://verdict.example.com/api/v1/runs/{run}/report
  - type: pagerduty                            # Events API v2: an abort pages, a promotion resolves
    routingKeyFile: /var/run/secrets/pagerduty/key   # or routingKeyEnv: PAGERDUTY_ROUTING_KEY
    on: [aborted]                              # which outcomes page (default: every failing one)
    severity: critical                         # optional (default: error; abort-failed: critical)
  - type: webhook
    url: https://platform.example.com/hooks/verdict
    audience: platform                         # team | on-call | platform | author: without `on:`,
                                               # what analyzer.notify.routes sends this audience
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analyzer.notify.errors import NotifyConfigError
from analyzer.notify.events import OUTCOMES
from analyzer.notify.routes import default_audience, routed_outcomes
from analyzer.redaction import url_secrets

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
"""PagerDuty's Events API v2 endpoint (`url:` overrides it, e.g. for a proxy or a test)."""

Severity = Literal["critical", "error", "warning", "info"]
"""PagerDuty's severities (`payload.severity`)."""
Audience = Literal["team", "on-call", "platform", "author"]
"""Who a notification reaches (`analyzer.notify.routes.AUDIENCES`)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _outcomes(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcome(s) {', '.join(unknown)}; use {', '.join(OUTCOMES)}")
    return value


class GrafanaSpec(_Model):
    url: str
    token_file: str | None = Field(default=None, alias="tokenFile")
    token_env: str | None = Field(default=None, alias="tokenEnv")
    dashboard_uid: str | None = Field(default=None, alias="dashboardUID")
    panel_id: int | None = Field(default=None, alias="panelId", ge=0)
    org_id: int | None = Field(default=None, alias="orgId", ge=1)
    tags: list[str] = Field(default_factory=list)
    on: list[str] | None = None
    timeout: float = Field(default=5.0, gt=0, le=60)

    @field_validator("on")
    @classmethod
    def _on(cls, value: list[str] | None) -> list[str] | None:
        return _outcomes(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("give Grafana's base URL, e.g. http://grafana:3000")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> GrafanaSpec:
        if self.token_file and self.token_env:
            raise ValueError("give tokenFile or tokenEnv, not both")
        return self

    def token(self) -> str | None:
        """The service-account token, read now. Raises `NotifyConfigError`."""
        if self.token_file:
            return read_secret_file(self.token_file, "grafana.tokenFile")
        if self.token_env:
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise NotifyConfigError(f"grafana.tokenEnv: ${self.token_env} is not set")
            return value
        return None


class NotificationSpec(_Model):
    type: Literal["webhook", "slack", "pagerduty"]
    url: str | None = None
    url_file: str | None = Field(default=None, alias="urlFile")
    url_env: str | None = Field(default=None, alias="urlEnv")
    headers: dict[str, str] = Field(default_factory=dict)
    on: list[str] | None = None
    report_url: str | None = Field(default=None, alias="reportUrl")
    timeout: float = Field(default=5.0, gt=0, le=60)
    routing_key_file: str | None = Field(default=None, alias="routingKeyFile")
    """PagerDuty: a file holding the integration's routing key (a secret)."""
    routing_key_env: str | None = Field(default=None, alias="routingKeyEnv")
    """PagerDuty: the environment variable holding the routing key."""
    severity: Severity | None = None
    """PagerDuty: the severity of its alerts (default: error; abort-failed is always critical)."""
    audience: Audience | None = None
    """Who the target reaches (None: on call for PagerDuty, else the team): without `on:`, it
    hears what `analyzer.notify.routes.DEFAULT_ROUTES` sends that audience."""

    @field_validator("on")
    @classmethod
    def _on(cls, value: list[str] | None) -> list[str] | None:
        return _outcomes(value)

    @model_validator(mode="after")
    def _one_url(self) -> NotificationSpec:
        if self.type == "pagerduty":
            return self._pagerduty()
        given = [x for x in (self.url, self.url_file, self.url_env) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of url, urlFile or urlEnv")
        if self.type == "slack" and self.headers:
            raise ValueError("headers are for type: webhook")
        if self.routing_key_file or self.routing_key_env or self.severity:
            raise ValueError("routingKeyFile, routingKeyEnv and severity are for type: pagerduty")
        return self

    def _pagerduty(self) -> NotificationSpec:
        keys = [x for x in (self.routing_key_file, self.routing_key_env) if x]
        if len(keys) != 1:
            raise ValueError("give exactly one of routingKeyFile or routingKeyEnv")
        if self.url_file or self.url_env:
            raise ValueError(
                "type: pagerduty takes url, not urlFile or urlEnv (its secret is the routing key)"
            )
        if self.headers:
            raise ValueError("headers are for type: webhook")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"give PagerDuty's events URL, e.g. {PAGERDUTY_URL}")
        return self

    def heard(self) -> frozenset[str] | None:
        """The outcomes this target hears: its `on:`, else its audience's route
        (`analyzer.notify.routes`); None: every decision."""
        if self.on is not None:
            return frozenset(self.on)
        return routed_outcomes(self.audience or default_audience(self.type))

    def routing_key(self) -> str:
        """PagerDuty's routing key, read now. Raises `NotifyConfigError`."""
        if self.routing_key_file:
            return read_secret_file(self.routing_key_file, "pagerduty.routingKeyFile")
        value = os.environ.get(self.routing_key_env or "", "").strip()
        if not value:
            raise NotifyConfigError(f"pagerduty.routingKeyEnv: ${self.routing_key_env} is not set")
        return value

    def secrets(self) -> list[str]:
        """What of this notification to mask wherever Verdict shows text: a Slack or webhook
        URL (a credential), PagerDuty's routing key. Raises `NotifyConfigError`."""
        if self.type == "pagerduty":
            return [self.routing_key(), *url_secrets(self.url)]
        return url_secrets(self.target_url(), credential=True)

    def target_url(self) -> str:
        """The URL, read now (Slack's URL is a secret: keep it in a file or the environment)."""
        if self.type == "pagerduty":
            return self.url or PAGERDUTY_URL
        if self.url:
            return self.url
        if self.url_file:
            return read_secret_file(self.url_file, f"{self.type}.urlFile")
        value = os.environ.get(self.url_env or "", "").strip()
        if not value:
            raise NotifyConfigError(f"{self.type}.urlEnv: ${self.url_env} is not set")
        return value


def read_secret_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise NotifyConfigError(f"{what}: cannot read {path}: {error.strerror}") from None
    if not value:
        raise NotifyConfigError(f"{what}: {path} is empty")
    return value
