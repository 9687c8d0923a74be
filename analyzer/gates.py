"""The `health:` and `argocd:` keys of an analysis file (pydantic, at the edge): the health gate
every way that acts applies besides the metrics (`strategies.health` says what they mean).

```yaml
health:
  readinessGrace: 5m      # a pod not Ready this long fails (default 5m; in a rollout file
                          # without it, rollout.podReadyTimeout)
  maxRestarts: 3          # a pod restarted more often during the run fails
argocd:                   # hold while the Application is OutOfSync or syncing; fail on a failed
  application: checkout   # sync or Degraded health; without `application`, the workload's
  namespace: argocd       # argocd.argoproj.io/instance label names it (controller mode)
```
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from analyzer.durations import parse_seconds

Seconds = Annotated[float, BeforeValidator(parse_seconds)]
DEFAULT_READINESS_GRACE = 300.0
DEFAULT_MAX_RESTARTS = 3


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HealthSpec(_Model):
    readiness_grace: Seconds | None = Field(default=None, gt=0, alias="readinessGrace")
    """None: 5 minutes (a rollout file's `podReadyTimeout` when it has one)."""
    max_restarts: int = Field(default=DEFAULT_MAX_RESTARTS, ge=0, alias="maxRestarts")


class ArgoCDSpec(_Model):
    application: str | None = Field(default=None, min_length=1)
    """The Application's name; None: the workload's `argocd.argoproj.io/instance` label."""
    namespace: str = Field(default="argocd", min_length=1)
