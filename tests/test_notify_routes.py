"""Routes per failure kind: which notification target hears which kind of decision when it names
no `on:` (`analyzer.notify.routes.DEFAULT_ROUTES`, the product brief's table shipped as
configuration), through the real factory, real webhook receivers and the PagerDuty stand-in;
`on:` still overrides a target's route; the README's table is the constant.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from analyzer.notify import OUTCOMES, RESOLVES, TRIGGERS, NotificationSpec, RunInfo, build_notifier
from analyzer.notify.background import RetryPolicy
from analyzer.notify.routes import AUDIENCES, DEFAULT_ROUTES, KINDS, routed_outcomes
from tests.hook_server import HookReceiver
from tests.hook_server import running as hooks_running
from tests.local_http import serving
from tests.test_notify_pagerduty import KEY, PagerDutyStandIn, decision
from tests.test_notify_pagerduty import _Handler as PagerDutyHandler

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_outcome_is_in_one_kind_and_every_kind_has_a_route() -> None:
    listed = [o for outcomes in KINDS.values() for o in outcomes]
    assert sorted(listed) == sorted(OUTCOMES)  # each outcome once, none left out
    assert set(DEFAULT_ROUTES) == set(KINDS)
    for audiences in DEFAULT_ROUTES.values():
        assert audiences and set(audiences) <= set(AUDIENCES)


@pytest.mark.parametrize(
    ("outcome", "told", "not_told"),
    [
        # the brief's table: failure → who is told
        ("image-pull", {"team"}, {"platform", "author"}),
        ("readiness", {"on-call"}, {"platform", "author"}),
        ("pending", {"platform"}, {"on-call", "author"}),
        ("sync-failed", {"author"}, {"platform"}),
        # and the other kinds
        ("fail", {"team", "on-call"}, {"platform", "author"}),
        ("aborted", {"team", "on-call"}, {"platform", "author"}),
        ("shared-incident", {"team", "platform"}, {"on-call"}),
        ("promoted", {"team"}, {"platform", "author"}),
        ("rollback-not-recovered", {"on-call"}, {"platform"}),
    ],
)
def test_the_default_routes_tell_each_failure_to_its_people(
    outcome: str, told: set[str], not_told: set[str]
) -> None:
    def hears(audience: str) -> bool:
        routed = routed_outcomes(audience)
        return routed is None or outcome in routed

    assert {a for a in AUDIENCES if hears(a)} >= told
    assert not {a for a in not_told if hears(a)}


def test_on_call_pages_every_failure_and_the_team_hears_everything() -> None:
    assert routed_outcomes("on-call") == frozenset(TRIGGERS) | frozenset(RESOLVES)
    assert routed_outcomes("team") is None  # every decision, outcomes added later too
    assert routed_outcomes("platform") == {"pending", "shared-incident"}
    assert routed_outcomes("author") == {"sync-failed", "out-of-sync"}


def test_an_unknown_audience_is_named() -> None:
    with pytest.raises(ValueError, match="audience"):
        NotificationSpec.model_validate({"type": "webhook", "url": "http://x", "audience": "ops"})
    spec = NotificationSpec.model_validate(
        {"type": "slack", "url": "http://x", "audience": "platform"}
    )
    assert spec.heard() == {"pending", "shared-incident"}
    explicit = {"type": "slack", "url": "http://x", "audience": "platform", "on": ["aborted"]}
    assert NotificationSpec.model_validate(explicit).heard() == {"aborted"}


@pytest.fixture
def targets(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    monkeypatch.setenv("PD_KEY", KEY)
    with ExitStack() as stack:
        found: dict[str, object] = {
            name: stack.enter_context(hooks_running(HookReceiver()))
            for name in ("team", "slack", "platform", "author", "explicit")
        }
        pagerduty = PagerDutyStandIn()
        pagerduty.url = f"{stack.enter_context(serving(PagerDutyHandler, pagerduty))}/v2/enqueue"
        found["pagerduty"] = pagerduty
        yield found


def test_a_file_without_on_routes_every_decision_by_the_default_table(
    targets: dict[str, object],
) -> None:
    hooks = {k: v for k, v in targets.items() if isinstance(v, HookReceiver)}
    pagerduty = targets["pagerduty"]
    assert isinstance(pagerduty, PagerDutyStandIn)
    specs = [
        {"type": "webhook", "url": hooks["team"].url},
        {"type": "slack", "url": hooks["slack"].url},
        {"type": "webhook", "url": hooks["platform"].url, "audience": "platform"},
        {"type": "webhook", "url": hooks["author"].url, "audience": "author"},
        {"type": "webhook", "url": hooks["explicit"].url, "audience": "platform",
         "on": ["aborted"]},
        {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": pagerduty.url},
    ]  # fmt: skip
    notifier = build_notifier(
        None,
        [NotificationSpec.model_validate(s) for s in specs],
        policy=RetryPolicy(retries=1, backoff=0.01),
    )
    for i, outcome in enumerate(OUTCOMES):
        notifier.post(decision(outcome, run=RunInfo(f"r{i}", "checkout", "shop", "checkout")))
    notifier.close(timeout=10)  # drains: everything sent is in the receivers now

    def heard(receiver: HookReceiver) -> set[str]:
        return {
            str(b["decision"]) if "decision" in b else b["text"].split("*")[1].lower()
            for b in receiver.bodies
        }

    assert heard(hooks["team"]) == set(OUTCOMES)
    assert heard(hooks["slack"]) == set(OUTCOMES)
    assert heard(hooks["platform"]) == {"pending", "shared-incident"}
    assert heard(hooks["author"]) == {"sync-failed", "out-of-sync"}
    # `on:` wins over the audience (and takes every rollback and an abort that did not land)
    assert heard(hooks["explicit"]) == {"aborted", "abort-failed", "image-pull", "crash-loop",
                                        "config-error", "readiness", "restarts", "sync-failed",
                                        "degraded"}  # fmt: skip
    assert pagerduty.violations == []
    actions = {OUTCOMES[int(e["dedup_key"][9:])]: e["event_action"] for e in pagerduty.requests}
    assert actions == {**dict.fromkeys(TRIGGERS, "trigger"), **dict.fromkeys(RESOLVES, "resolve")}


def test_the_readme_documents_the_shipped_routes() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("#### Who hears what")
    section = text[start : text.index("\n#", start)]
    rows = re.findall(r"^\| `([a-z-]+)` \| (.+?) \| (.+?) \|$", section, re.MULTILINE)
    documented = {
        kind: (
            tuple(re.findall(r"`([a-z-]+)`", outcomes)),
            tuple(re.findall(r"`([a-z-]+)`", audiences)),
        )
        for kind, outcomes, audiences in rows
    }
    assert documented == {
        kind: (KINDS[kind], DEFAULT_ROUTES[kind]) for kind in DEFAULT_ROUTES
    }
