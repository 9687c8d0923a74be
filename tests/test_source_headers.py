"""Per-source HTTP headers and a bearer token file, checked at the HTTP boundary: a gateway in
front of a real Prometheus or VictoriaMetrics (`tests/store_proxy.py`) refuses any request
without the tenant header (`X-Scope-OrgID`, as Mimir, Cortex and Thanos want it) or the bearer
token. One `verdict serve` reads each analysis from its own store (the multi-cluster set-up)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from metrics.errors import SourceUnavailable
from metrics.factory import SourceSettings, open_source
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import RatioSeries, Version
from tests.conftest import PrometheusServer
from tests.helpers import run_verdict, scenario_analysis, write_analysis
from tests.reliability.serve_process import serve
from tests.store_proxy import StoreProxy
from tests.victoria import VictoriaServer, victoria  # noqa: F401  (the fixture)

pytestmark = pytest.mark.prometheus

TENANT = "tenant-a"
TOKEN = "s3cr3t-bearer-7f2c9e1d4b"


def _token_file(tmp_path: Path, token: str = TOKEN, name: str = "token") -> Path:
    path = tmp_path / name
    path.write_text(token + "\n")
    return path


def _analysis(
    prometheus: PrometheusServer, tmp_path: Path, scenario_name: str, source: dict[str, Any]
) -> Path:
    data = scenario_analysis(scenario_name, prometheus.scenarios[scenario_name])
    data["prometheus"] = source
    return write_analysis(tmp_path / f"{scenario_name}.yaml", data)


def _analyze(prometheus: PrometheusServer, path: Path, name: str) -> tuple[int, str, str]:
    scenario = prometheus.scenarios[name]
    result = run_verdict(
        "analyze", "--config", str(path), "--start", scenario.start.isoformat(),
        "--end", scenario.end.isoformat(), "--output", "json",
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(params=["prometheus", "victoria-metrics"])
def store_url(
    request: pytest.FixtureRequest,
    prometheus: PrometheusServer,
    victoria: VictoriaServer,  # noqa: F811
) -> str:
    return prometheus.url if request.param == "prometheus" else victoria.url


def test_analyze_sends_the_tenant_header_and_the_bearer_token_with_every_request(
    prometheus: PrometheusServer, store_url: str, tmp_path: Path
) -> None:
    token = _token_file(tmp_path)
    with StoreProxy(
        upstream=store_url, required={"X-Scope-OrgID": TENANT}, token_file=token
    ) as gateway:
        path = _analysis(prometheus, tmp_path, "error-regression", {
            "url": gateway.url, "headers": {"X-Scope-OrgID": TENANT},
            "bearerTokenFile": str(token),
        })  # fmt: skip
        code, out, err = _analyze(prometheus, path, "error-regression")
    assert code == 1, err
    assert json.loads(out)["verdict"] == "fail"
    assert len(gateway.seen) >= 3
    assert not [s for s in gateway.seen if s.refused]
    assert {s.headers["x-scope-orgid"] for s in gateway.seen} == {TENANT}
    assert {s.headers["authorization"] for s in gateway.seen} == {f"Bearer {TOKEN}"}
    assert TOKEN not in out + err


def test_without_the_tenant_header_the_gateway_refuses_and_analyze_says_so(
    prometheus: PrometheusServer, store_url: str, tmp_path: Path
) -> None:
    with StoreProxy(upstream=store_url, required={"X-Scope-OrgID": TENANT}) as gateway:
        path = _analysis(prometheus, tmp_path, "healthy", {"url": gateway.url})
        code, out, err = _analyze(prometheus, path, "healthy")
    assert code == 4, (out, err)
    assert "HTTP 401" in err and "X-Scope-OrgID" in err
    assert gateway.seen and all(s.refused for s in gateway.seen)


def test_a_token_echoed_by_the_gateway_is_masked_in_what_analyze_prints(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    # the gateway wants another tenant, and its refusal repeats the Authorization it was sent
    token = _token_file(tmp_path)
    with StoreProxy(
        upstream=prometheus.url, required={"X-Scope-OrgID": "tenant-b", "Authorization": "x"}
    ) as gateway:
        path = _analysis(prometheus, tmp_path, "healthy", {
            "url": gateway.url, "headers": {"X-Scope-OrgID": TENANT},
            "bearerTokenFile": str(token),
        })  # fmt: skip
        code, out, err = _analyze(prometheus, path, "healthy")
    assert code == 4
    assert gateway.seen and gateway.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "HTTP 401" in err and "***" in err
    assert TOKEN not in out + err


def test_the_token_file_is_read_at_each_request_so_a_rotated_token_is_used(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    scenario = prometheus.scenarios["healthy"]
    token = _token_file(tmp_path)
    query = BUILTIN_TEMPLATES["istio-error-rate"]
    window = scenario.window(timedelta(seconds=30))
    with StoreProxy(upstream=prometheus.url, token_file=token) as gateway:
        source = open_source(SourceSettings.of(gateway.url, bearer_token_file=str(token)))
        first = source.fetch(query, Version.CANARY, scenario.canary_matchers, window)
        # rotated as Kubernetes rotates a projected token: a new file put in the old one's place
        rotated = _token_file(tmp_path, "rotated-token-0a9b8c", "token.new")
        rotated.replace(token)
        second = source.fetch(query, Version.BASELINE, scenario.baseline_matchers, window)
    assert isinstance(first, RatioSeries) and isinstance(second, RatioSeries)
    assert first.total.sum() > 0 and second.total.sum() > 0
    sent = [s.headers["authorization"] for s in gateway.seen]
    assert not [s for s in gateway.seen if s.refused]
    assert sent[0] == f"Bearer {TOKEN}" and sent[-1] == "Bearer rotated-token-0a9b8c"


def test_an_unreadable_token_file_is_named_and_nothing_is_sent(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-token"
    empty = _token_file(tmp_path, "", "empty")
    with StoreProxy(upstream=prometheus.url) as gateway:
        for path, reason in ((missing, "No such file"), (empty, "empty")):
            source = open_source(SourceSettings.of(gateway.url, bearer_token_file=str(path)))
            with pytest.raises(SourceUnavailable, match=reason) as raised:
                source.check()
            assert str(path) in str(raised.value)
    assert gateway.seen == []


def test_a_file_with_both_an_authorization_header_and_a_token_file_is_refused(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    path = _analysis(prometheus, tmp_path, "healthy", {
        "url": prometheus.url, "headers": {"Authorization": "Bearer abc"},
        "bearerTokenFile": str(_token_file(tmp_path)),
    })  # fmt: skip
    code, _, err = _analyze(prometheus, path, "healthy")
    assert code == 2
    assert "bearerTokenFile" in err and "not both" in err


def _look(url: str, analysis: str, start: str) -> httpx.Response:
    """One web-provider look at a run of `analysis` started at `start`."""
    request = {
        "analysis": analysis, "namespace": "shop", "rollout": analysis,
        "canaryHash": "c1", "stableHash": "s1", "start": start,
    }  # fmt: skip
    return httpx.post(f"{url}/api/v1/verdict", json=request, timeout=60)


def test_one_serve_reads_each_analysis_from_its_own_cluster_store(
    prometheus: PrometheusServer,
    victoria: VictoriaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    # cluster a: a Prometheus behind a tenant gateway; cluster b: VictoriaMetrics behind a
    # gateway that wants its own tenant and a bearer token; one Verdict, no --prometheus-url
    token = _token_file(tmp_path)
    folder = tmp_path / "analyses"
    folder.mkdir()
    with (
        StoreProxy(upstream=prometheus.url, required={"X-Scope-OrgID": "cluster-a"}) as a,
        StoreProxy(
            upstream=victoria.url, required={"X-Scope-OrgID": "cluster-b"}, token_file=token
        ) as b,
    ):
        _analysis(prometheus, folder, "error-regression", {
            "url": a.url, "headers": {"X-Scope-OrgID": "cluster-a"},
        })  # fmt: skip
        _analysis(prometheus, folder, "healthy", {
            "url": b.url, "headers": {"X-Scope-OrgID": "cluster-b"},
            "bearerTokenFile": str(token),
        })  # fmt: skip
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        with serve("--config", str(folder), "--store", store, log=tmp_path / "serve.log") as srv:
            answers = {
                name: _look(srv.url, name, prometheus.scenarios[name].start.isoformat())
                for name in ("error-regression", "healthy")
            }
            log = srv.log.read_text()
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
    assert answers["error-regression"].json()["result"]["verdict"] == "fail"
    assert a.seen and b.seen
    assert not [s for s in a.seen + b.seen if s.refused]
    assert all("error-regression-" in s.query for s in a.seen if "destination_service" in s.query)
    assert all('"healthy-' in s.query for s in b.seen if "destination_service" in s.query)
    assert {s.headers["authorization"] for s in b.seen} == {f"Bearer {TOKEN}"}
    assert all("authorization" not in s.headers for s in a.seen)
    assert TOKEN not in log


def test_analyze_with_a_missing_token_file_cannot_judge_and_names_the_file(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    missing = tmp_path / "gone" / "token"
    path = _analysis(prometheus, tmp_path, "healthy", {
        "url": prometheus.url, "bearerTokenFile": str(missing),
    })  # fmt: skip
    code, out, err = _analyze(prometheus, path, "healthy")
    assert code == 4, (out, err)
    assert f"cannot read the bearer token file {missing}" in err
