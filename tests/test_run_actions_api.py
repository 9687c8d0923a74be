"""`POST /api/v1/runs/{id}/actions` and the request it records in the run store.

The app is the real one (`create_app`) over a real SQLite run store; the runs are stored as a
canary loop stores them (`strategies.record.Recorder`). The live end of it (a running canary
taking the request) is in `test_manual_canary_live.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.clock import SystemClock
from analyzer.runs.model import RunKey, new_run
from analyzer.runs.requests import progress_of, request_action, waiting_request
from analyzer.runs.store import RunStore, open_store
from analyzer.spec import parse_analysis
from metrics.prometheus import PrometheusSource
from strategies.manual import take_request
from strategies.record import Recorder
from tests.conftest import free_port
from tests.helpers import example_analysis

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    runs = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    yield runs
    runs.close()


def canary_run(store: RunStore, *, state: str = "running", canary: str = "c4n4ry") -> Recorder:
    """A canary loop's run as `verdict canary run` stores it."""
    recorder = Recorder(
        parse_analysis(example_analysis(), "checkout.yaml"),
        store,
        PrometheusSource(f"http://127.0.0.1:{free_port()}"),
        SystemClock(),
    )
    now = datetime.now(UTC)
    recorder.start(
        RunKey("checkout", "shop", "checkout", canary),
        {"namespace": "shop", "rollout": "checkout", "canaryHash": canary, "stableHash": "s"},
        now,
        {"strategy": "canary", "state": state, "step": 1, "steps": [], "reason": ""},
    )
    return recorder


def app_over(store: RunStore, token: str | None = TOKEN) -> TestClient:
    app = create_app(
        analyses={},
        store=store,
        sources=PrometheusSources(look_budget=8.0),
        settings=ServeSettings(token=token),
    )
    return TestClient(app)


def test_a_request_is_recorded_in_the_runs_progress_and_answered_202(store: RunStore) -> None:
    run_id = canary_run(store).run_id
    with app_over(store) as client:
        answer = client.post(
            f"/api/v1/runs/{run_id}/actions",
            json={"action": "pause", "by": "alice", "reason": "DB migration"},
            headers=AUTH,
        )
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert doc["run"] == run_id
    assert {k: doc["request"][k] for k in ("action", "by", "reason")} == {
        "action": "pause", "by": "alice", "reason": "DB migration",
    }  # fmt: skip
    stored = store.get(run_id)
    assert stored is not None
    assert (progress_of(stored) or {})["request"] == doc["request"]


def test_the_token_is_required_when_one_is_configured(store: RunStore) -> None:
    run_id = canary_run(store).run_id
    body = {"action": "abort", "by": "alice"}
    with app_over(store) as client:
        none = client.post(f"/api/v1/runs/{run_id}/actions", json=body)
        wrong = client.post(
            f"/api/v1/runs/{run_id}/actions", json=body, headers={"Authorization": "Bearer x"}
        )
    assert none.status_code == wrong.status_code == 401
    assert none.json()["error"]["code"] == "unauthorized"
    stored = store.get(run_id)
    assert stored is not None and "request" not in (progress_of(stored) or {})
    with app_over(store, token=None) as open_client:
        assert open_client.post(f"/api/v1/runs/{run_id}/actions", json=body).status_code == 202


def test_unknown_runs_are_404_and_ended_or_other_runs_are_409(store: RunStore) -> None:
    ended = canary_run(store, state="promoted", canary="old").run_id
    now = datetime.now(UTC)
    web = store.start(
        new_run(RunKey("checkout", "shop", "web", "h"), stable_hash="s", params={},
                started_at=now, now=now)
    )  # fmt: skip
    body = {"action": "abort", "by": "alice"}
    with app_over(store) as client:
        unknown = client.post("/api/v1/runs/nope/actions", json=body, headers=AUTH)
        over = client.post(f"/api/v1/runs/{ended}/actions", json=body, headers=AUTH)
        other = client.post(f"/api/v1/runs/{web.id}/actions", json=body, headers=AUTH)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_run")
    assert (over.status_code, over.json()["error"]["code"]) == (409, "run_ended")
    assert "is promoted" in over.json()["error"]["message"]
    assert (other.status_code, other.json()["error"]["code"]) == (409, "not_a_canary_run")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "rollback", "by": "alice"}, "action"),
        ({"action": "abort"}, "by"),
        ({"action": "abort", "by": "   "}, "by"),
        ({"action": "abort", "by": "alice", "force": True}, "force"),
        ({"action": "abort", "by": "alice", "reason": "x" * 1001}, "reason"),
    ],
)
def test_a_bad_body_is_422_naming_the_field(
    store: RunStore, body: dict[str, Any], field: str
) -> None:
    run_id = canary_run(store).run_id
    with app_over(store) as client:
        answer = client.post(f"/api/v1/runs/{run_id}/actions", json=body, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    stored = store.get(run_id)
    assert stored is not None and "request" not in (progress_of(stored) or {})


def test_the_loops_own_writes_keep_a_request_and_it_is_taken_once(store: RunStore) -> None:
    recorder = canary_run(store)
    request = request_action(store, recorder.run_id, "abort", "alice", "now", now=datetime.now(UTC))
    recorder.progress["step"] = 2
    recorder.save()  # the loop's progress, written without the request it has not read yet
    stored = store.get(recorder.run_id)
    assert stored is not None
    progress = progress_of(stored) or {}
    assert progress["step"] == 2
    assert waiting_request(progress) == request
    taken = take_request(store, recorder.run_id, recorder.progress, datetime.now(UTC))
    assert taken == request
    assert take_request(store, recorder.run_id, recorder.progress, datetime.now(UTC)) is None
    recorder.save()
    again = store.get(recorder.run_id)
    assert again is not None and waiting_request(progress_of(again) or {}) is None
