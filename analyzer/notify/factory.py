"""Build the notifier of an analysis from its `grafana:` and `notifications:` keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analyzer.notify.background import BackgroundNotifier, RetryPolicy, Target
from analyzer.notify.base import NopNotifier
from analyzer.notify.config import GrafanaSpec, NotificationSpec, read_secret_file
from analyzer.notify.grafana import GrafanaAnnotations, GrafanaSettings
from analyzer.notify.pagerduty import RESOLVES, PagerDuty, PagerDutySettings
from analyzer.notify.slack import Slack, SlackSettings
from analyzer.notify.webhook import Webhook, WebhookSettings


@dataclass(frozen=True)
class GrafanaOverride:
    """`--grafana-url` / `--grafana-token-file`: Grafana for every analysis, over the file's."""

    url: str | None = None
    token_file: str | None = None


def build_notifier(
    grafana: GrafanaSpec | None,
    notifications: Sequence[NotificationSpec] = (),
    *,
    override: GrafanaOverride | None = None,
    policy: RetryPolicy | None = None,
) -> BackgroundNotifier | NopNotifier:
    """The analysis' notifier (a `NopNotifier` when none is configured).

    Secrets (tokens, Slack URLs, PagerDuty routing keys) are read now. Raises
    `NotifyConfigError`.
    """
    targets: list[Target] = []
    settings = _grafana_settings(grafana, override)
    if settings is not None:
        outcomes = grafana.on if grafana is not None else None
        targets.append(Target("grafana", GrafanaAnnotations(settings), _filter(outcomes)))
    for index, spec in enumerate(notifications):
        url = spec.target_url()
        name = f"{spec.type}-{index + 1}"
        if spec.type == "pagerduty":
            pager = PagerDuty(
                PagerDutySettings(
                    spec.routing_key(),
                    url=url,
                    severity=spec.severity,
                    report_url=spec.report_url,
                    timeout=spec.timeout,
                )
            )
            # `on:` (else the audience's route: on call, every failing kind) chooses what
            # pages; a promotion always resolves the run's page
            heard = spec.heard()
            wanted = None if heard is None else heard | set(RESOLVES)
            targets.append(Target(name, pager, wanted))
        elif spec.type == "slack":
            slack = Slack(SlackSettings(url, report_url=spec.report_url, timeout=spec.timeout))
            targets.append(Target(name, slack, spec.heard()))
        else:
            hook = Webhook(
                WebhookSettings(
                    url, headers=spec.headers, report_url=spec.report_url, timeout=spec.timeout
                )
            )
            targets.append(Target(name, hook, spec.heard()))
    if not targets:
        return NopNotifier()
    return BackgroundNotifier(targets, policy)


def _grafana_settings(
    spec: GrafanaSpec | None, override: GrafanaOverride | None
) -> GrafanaSettings | None:
    url = (override.url if override else None) or (spec.url if spec else None)
    if not url:
        return None
    if override and override.token_file:
        token: str | None = read_secret_file(override.token_file, "--grafana-token-file")
    else:
        token = spec.token() if spec else None
    return GrafanaSettings(
        url=url,
        token=token,
        dashboard_uid=spec.dashboard_uid if spec else None,
        panel_id=spec.panel_id if spec else None,
        tags=tuple(spec.tags) if spec else (),
        org_id=spec.org_id if spec else None,
        timeout=spec.timeout if spec else 5.0,
    )


def _filter(outcomes: list[str] | None) -> frozenset[str] | None:
    return None if outcomes is None else frozenset(outcomes)
