"""`verdict report`: reports of promoted and aborted runs (simulated by `verdict demo`, and from
the web provider over a real Prometheus), read from the run store, rendered in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analyzer.api.app import create_app
from analyzer.demo import default_analysis
from analyzer.report import ReportFormat, build_report, load_report, render_report
from analyzer.report.plots import metric_figure
from analyzer.runs import RunKey, new_run
from analyzer.runs.store import open_store
from metrics.simulated import SimulatedSource, TrafficModel
from strategies.simulated import SimulatedClock
from tests.chromium import FLAGS, chromium, colour_share, render
from tests.conftest import PrometheusServer
from tests.helpers import run_verdict
from tests.test_serve_api import Clock, body, make_app, minutes

GREEN = (46, 125, 50)  # the promoted / pass banner
RED = (198, 40, 40)  # the aborted / fail banner


class _Page(HTMLParser):
    """Collects what the checks need, and fails on tags that are not closed in order."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []
        self.ids: dict[str, str] = {}
        self._current_id: str | None = None
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(values)
        for key in ("src", "href"):
            if key in values and not values[key].startswith(("data:", "#")):
                self.external.append(f"{tag} {key}={values[key][:60]}")
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)
        if "id" in values:
            self._current_id = values["id"]
            self.ids[values["id"]] = ""
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()
        self._current_id = None

    def handle_data(self, data: str) -> None:
        if self._current_id is not None:
            self.ids[self._current_id] += data


def check_page(page: str, metrics: int) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    assert page.startswith("<!DOCTYPE html>")
    assert parsed.errors == [] and parsed.stack == [], parsed.errors
    assert parsed.external == []  # self-contained: no scripts, styles or images from elsewhere
    plots = [i for i in parsed.images if i["src"].startswith("data:image/png;base64,")]
    assert len(plots) == len(parsed.images) == metrics  # one plot per metric
    return parsed


def check_in_chromium(page: str, folder: Path, headline: str, colour: tuple[int, int, int]) -> None:
    rendered = render(page, folder)
    assert rendered.verdict_shown and rendered.verdict_text == headline
    assert rendered.images == rendered.images_loaded == 3  # every plot decoded
    assert colour_share(rendered.screenshot, colour) > 0.001  # the banner, painted


def _demo(scenario: str, store: str) -> dict[str, Any]:
    result = run_verdict("demo", "--scenario", scenario, "--output", "json", "--store", store)
    doc = json.loads(result.stdout)
    assert doc["run"]["id"], result.stderr
    return doc


@pytest.mark.parametrize(
    ("scenario", "headline", "colour"),
    [("healthy", "PROMOTED", GREEN), ("error-spike", "ABORTED", RED)],
)
def test_a_demo_run_is_reported_right_after_it_ends(
    tmp_path: Path, scenario: str, headline: str, colour: tuple[int, int, int]
) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    demo = _demo(scenario, store)
    run_id = demo["run"]["id"]

    doc = json.loads(run_verdict("report", run_id, "--format", "json", "--store", store).stdout)
    assert doc["run"]["id"] == run_id and doc["run"]["way"] == "demo"
    assert doc["run"]["looks"] == len(demo["looks"])  # the run's own state is stored
    listed = json.loads(run_verdict("runs", "list", "--output", "json", "--store", store).stdout)
    run = next(r for r in listed["runs"] if r["id"] == run_id)
    assert run["looks"] == len(demo["looks"]) and run["verdict"] == demo["final"]["verdict"]
    assert doc["headline"] == demo["decision"] and doc["reason"] == demo["reason"]
    assert [s["weight"] for s in doc["steps"]] == [s["weight"] for s in demo["steps"]]
    assert len(doc["looks"]) == len(demo["looks"])
    assert doc["decidingLook"] == demo["looks"][-1]["look"]
    names = [m["name"] for m in doc["metrics"]]
    assert names == [m["name"] for m in demo["final"]["metrics"]]
    error_rate = doc["metrics"][0]
    assert len(error_rate["series"]) == len(demo["looks"])
    final = demo["final"]["metrics"][0]
    assert error_rate["series"][-1]["canary"] == final["canary"]["rate"]  # as recorded
    assert error_rate["verdict"] == final["verdict"]
    last = error_rate["series"][-1]
    drawn = [*last["bands"], *last["limits"], *last["evidence"]]
    assert any("compare" in label for label in drawn)  # the comparison's bounds or evidence
    assert last["limits"]  # the SLO and the comparison's thresholds

    md = run_verdict("report", run_id, "--format", "md", "--store", store).stdout
    assert md.startswith(f"# Verdict: {headline}") and demo["reason"] in md
    assert f", {len(demo['looks'])} looks," in md

    out = tmp_path / "report.html"
    written = run_verdict("report", run_id, "--output", str(out), "--store", store)
    assert written.returncode == 0, written.stderr
    page = out.read_text(encoding="utf-8")
    parsed = check_page(page, metrics=3)
    assert parsed.ids["verdict"] == headline
    assert parsed.ids["reason"] == demo["reason"]
    check_in_chromium(page, tmp_path, headline, colour)


def test_an_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = run_verdict("report", "nosuchrun", "--store", store)
    assert result.returncode == 2 and "no run with id 'nosuchrun'" in result.stderr
    bad = run_verdict("report", "x", "--format", "pdf", "--store", store)
    assert bad.returncode == 2 and "--format" in bad.stderr


def test_a_report_reads_the_recorded_figures_whatever_the_checks_write_now() -> None:
    """Stored looks are the report's only source: a check statistic with names the report does
    not know (a later version of the checks) still gives a report, with what it can draw."""
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    run = new_run(RunKey("a", "ns", "r", "c"), stable_hash="s", params={}, started_at=now, now=now)
    look = {
        "kind": "look",
        "run": {"id": run.id, "analysis": "a", "namespace": "ns", "rollout": "r", "way": "web"},
        "time": "2026-11-26T10:05:00Z",
        "look": 1,
        "verdict": "inconclusive",
        "metrics": [
            {
                "name": "error-rate",
                "verdict": "inconclusive",
                "reason": "not yet",
                "critical": True,
                "canary": {"requests": 10, "bad": 1, "rate": 0.1},
                "baseline": {"requests": 100, "bad": 1, "rate": 0.01},
                "checks": [{"check": "compare", "statistic": {"eValue": 3.2, "upperRatio": 9}}],
            }
        ],
    }
    report = build_report(run, [look])
    assert report.metrics[0].points[0].canary == 0.1
    assert report.metrics[0].points[0].bands == ()
    page = render_report(report, ReportFormat.html)
    check_page(page, metrics=1)


def test_sequential_evidence_and_relative_limits_are_drawn() -> None:
    """Checks that report e-values (evidence against its deciding threshold) and a limit
    relative to the baseline get their own lines."""
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    run = new_run(RunKey("a", "ns", "r", "c"), stable_hash="s", params={}, started_at=now, now=now)
    compare = {
        "eFail": 2.9e9,
        "failAt": 47.6,
        "ePass": 0.08,
        "passAt": 10.0,
        "baselineRate": 0.0007,
        "failAboveRatio": 2.5,
        "passBelowRatio": 2.7,
    }
    look = {
        "kind": "look",
        "run": {"id": run.id, "analysis": "a", "namespace": "ns", "rollout": "r", "way": "web"},
        "time": "2026-11-26T10:05:00Z",
        "look": 1,
        "verdict": "fail",
        "metrics": [
            {
                "name": "error-rate",
                "verdict": "fail",
                "reason": "shown above",
                "critical": True,
                "canary": {"requests": 160, "bad": 15, "rate": 0.09},
                "baseline": {"requests": 2880, "bad": 2, "rate": 0.0007},
                "checks": [{"check": "compare", "statistic": compare}],
            }
        ],
    }
    point = build_report(run, [look]).metrics[0].points[0]
    assert point.evidence == {
        "evidence the canary is worse (compare)": 2.9e9,
        "evidence the canary is no worse (compare)": 0.08,
    }
    assert point.evidence_limits == {"fails at (compare)": 47.6, "passes at (compare)": 10.0}
    assert point.limits["fails above (compare)"] == pytest.approx(0.00175)
    check_page(render_report(build_report(run, [look]), ReportFormat.html), metrics=1)


# --- from a real Prometheus through the web provider --------------------------------------


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("scenario", "headline", "colour", "deciding"),
    [("healthy", "PASS", GREEN, 4), ("error-regression", "FAIL", RED, 2)],
)
def test_a_web_provider_run_on_real_prometheus_is_reported(
    prometheus: PrometheusServer,
    tmp_path: Path,
    scenario: str,
    headline: str,
    colour: tuple[int, int, int],
    deciding: int,
) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    start = prometheus.scenarios[scenario].start
    clock = Clock(start)
    with TestClient(make_app(prometheus, store, clock)) as client:
        at = (0, 5, 10, 20)
        for m in at:
            clock.set(start + minutes(m))
            answer = client.post("/api/v1/verdict", json=body(scenario)).json()["result"]
        run_id = answer["run"]["id"]
        doc = client.get(f"/api/v1/runs/{run_id}/report", params={"format": "json"}).json()
        html = client.get(f"/api/v1/runs/{run_id}/report")
        md = client.get(f"/api/v1/runs/{run_id}/report", params={"format": "md"})
        missing = client.get("/api/v1/runs/nope/report")
    assert doc["run"]["way"] == "web" and doc["verdict"] == answer["verdict"]
    assert doc["headline"] == headline.lower()
    assert [lk["look"] for lk in doc["looks"]] == [1, 2, 3, 4]
    assert doc["decidingLook"] == deciding
    assert doc["steps"] == [
        {
            "step": None,
            "weight": None,
            "startedAt": start.isoformat().replace("+00:00", "Z"),
            "endedAt": (start + minutes(at[deciding - 1])).isoformat().replace("+00:00", "Z"),
            "verdict": headline.lower(),
            "lastLook": deciding,
        }
    ]
    error_rate = doc["metrics"][0]
    assert [p["look"] for p in error_rate["series"]] == [1, 2, 3, 4]
    assert error_rate["series"][-1]["canary"] == answer["metrics"][0]["canary"]["rate"]
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert md.status_code == 200 and md.text.startswith(f"# Verdict: {headline}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_run"
    check_page(html.text, metrics=3)
    check_in_chromium(html.text, tmp_path, headline, colour)


def test_a_web_run_stored_before_events_were_kept_still_has_a_report() -> None:
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    run = new_run(RunKey("a", "ns", "r", "c"), stable_hash="s", params={}, started_at=now, now=now)
    from dataclasses import replace

    run = replace(
        run,
        looks=3,
        verdict="pass",
        reason="all hold",
        updated_at=now + timedelta(minutes=9),
        answer={
            "verdict": "pass",
            "metrics": [
                {"name": "error-rate", "verdict": "pass", "canary": {"rate": 0.001}, "baseline": {}}
            ],
        },
    )
    report = build_report(run, [])
    assert report.verdict == "pass" and report.metrics[0].points[0].canary == 0.001
    assert report.deciding_look is None


# --- a busy service through the web provider ------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _screenshot(images: list[str], folder: Path) -> tuple[Any, list[int]]:
    """The plots (data URIs, as the report embeds them) stacked at their own size in one page,
    painted by Chromium: the screenshot's pixels, and each plot's top row in it."""
    from matplotlib import image

    sizes = [_png_size(base64.b64decode(src.split(",", 1)[1])) for src in images]
    tops = [sum(h for _, h in sizes[:i]) for i in range(len(sizes))]
    width, height = max(w for w, _ in sizes), sum(h for _, h in sizes)
    page = folder / "plots.html"
    page.write_text(
        '<!DOCTYPE html><html><body style="margin:0;background:#fff">'
        + "".join(f'<img style="display:block" src="{src}">' for src in images)
        + "</body></html>",
        encoding="utf-8",
    )
    shot = folder / "plots.png"
    done = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={folder / 'profile-plots'}",
            "--force-device-scale-factor=1",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    return image.imread(shot)[:, :, :3] * 255.0, tops


@pytest.mark.parametrize(
    ("scenario", "error_rate", "headline"),
    [("busy-healthy", 0.001, "pass"), ("busy-error-regression", 0.05, "fail")],
)
def test_a_busy_web_provider_run_draws_every_panel(
    tmp_path: Path, scenario: str, error_rate: float, headline: str
) -> None:
    """A service with tens of millions of requests per look: e-values reach the float cap
    (about 1e304), the report answers 200 and, painted by Chromium, every panel of every plot
    has its lines (coloured pixels inside the panel's frame)."""
    import numpy as np

    spec = default_analysis()
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    clock = SimulatedClock(start)
    traffic = TrafficModel(requests_per_second=1e5, canary_error_rate=error_rate)
    source = SimulatedSource(traffic, lambda _t: 50.0, seed=7)
    store_url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    app = create_app(
        analyses={spec.name: spec},
        store=open_store(store_url),
        sources=lambda _spec: source,
        clock=clock,
    )
    with TestClient(app) as client:
        for m in (0, 5, 10, 20):
            clock.sleep((start + minutes(m) - clock.now()).total_seconds())
            answer = client.post("/api/v1/verdict", json=body(spec.name)).json()["result"]
        run_id = answer["run"]["id"]
        html = client.get(f"/api/v1/runs/{run_id}/report")
        doc = client.get(f"/api/v1/runs/{run_id}/report", params={"format": "json"}).json()
    assert answer["verdict"] == headline
    assert html.status_code == 200, html.text[:500]
    assert doc["metrics"][0]["final"]["canary"]["requests"] > 1e7
    biggest = max(v for m in doc["metrics"] for p in m["series"] for v in p["evidence"].values())
    assert biggest > 1e300  # at the cap: the case that was blank

    parsed = check_page(html.text, metrics=3)
    pixels, tops = _screenshot([i["src"] for i in parsed.images], tmp_path)
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # lines; not grey, black, white
    store = open_store(store_url)
    try:
        report = load_report(store, run_id)
    finally:
        store.close()
    panels = 0
    for metric, top, img in zip(report.metrics, tops, parsed.images, strict=True):
        fig = metric_figure(report, metric)
        png = io.BytesIO()
        fig.savefig(png, format="png")  # lays the figure out
        assert png.getvalue() == base64.b64decode(img["src"].split(",", 1)[1])  # the one shown
        height = fig.bbox.height
        for axis in fig.axes:
            box = axis.get_window_extent()
            rows = slice(top + int(height - box.y1) + 2, top + int(height - box.y0) - 2)
            cols = slice(int(box.x0) + 2, int(box.x1) - 2)
            coloured = int(np.count_nonzero(saturated[rows, cols]))
            assert coloured > 300, f"{metric.name}: panel {axis.get_ylabel()!r} is blank"
            panels += 1
        evidence = fig.axes[-1]
        assert evidence.get_ylabel().startswith("e-value")
        assert "$10^{304}$" in [t.get_text() for t in evidence.texts]  # the largest, labelled
    assert panels == 2 + 3 + 2  # error-rate, success-rate: value + evidence; latency: + share
