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
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analyzer.notify.errors import NotifyConfigError
from analyzer.notify.events import OUTCOMES


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
    type: Literal["webhook", "slack"]
    url: str | None = None
    url_file: str | None = Field(default=None, alias="urlFile")
    url_env: str | None = Field(default=None, alias="urlEnv")
    headers: dict[str, str] = Field(default_factory=dict)
    on: list[str] | None = None
    report_url: str | None = Field(default=None, alias="reportUrl")
    timeout: float = Field(default=5.0, gt=0, le=60)

    @field_validator("on")
    @classmethod
    def _on(cls, value: list[str] | None) -> list[str] | None:
        return _outcomes(value)

    @model_validator(mode="after")
    def _one_url(self) -> NotificationSpec:
        given = [x for x in (self.url, self.url_file, self.url_env) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of url, urlFile or urlEnv")
        if self.type == "slack" and self.headers:
            raise ValueError("headers are for type: webhook")
        return self

    def target_url(self) -> str:
        """The URL, read now (Slack's URL is a secret: keep it in a file or the environment)."""
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
