"""Reports of any stored run: every metric's panels are drawn (values, thresholds, evidence), at
any traffic level, for a run of one look, an aborted run, a run with no traffic, and e-values from
1e-300 to the float cap and beyond (infinity, NaN), with no exception and no warning.

Runs are real: judged by the engine over the simulated metric source (`verdict demo`, whose traffic
the tests set), stored in a real SQLite run store, read back and rendered with real matplotlib."""

from __future__ import annotations

import json
import logging
import math
import sys
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from analyzer.demo import run_demo
from analyzer.report import ReportFormat, RunReport, load_report, render_report
from analyzer.report.model import MetricHistory
from analyzer.report.plots import metric_figure
from analyzer.runs import RunKey, new_run
from analyzer.runs.store import RunStore, open_store
from metrics.simulated import TrafficModel

E_CAP_LOG = math.log10(sys.float_info.max)
E_FLOOR_LOG = -12.0
THRESHOLDS = ("SLO", "fails", "passes", "latency threshold")
SETTINGS = settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example renders a report
    suppress_health_check=[HealthCheck.too_slow],
)


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fails when the block emits a warning (Python's, numpy's) or matplotlib logs one."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Keep(level=logging.WARNING)
    mpl_log = logging.getLogger("matplotlib")
    mpl_log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn"):
            warnings.simplefilter("always")
            yield
    finally:
        mpl_log.removeHandler(handler)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in records] == []


def render_all(report: RunReport) -> dict[ReportFormat, str]:
    """The report in every format, with no warning; the JSON is strict (no NaN, no Infinity)."""
    with no_warnings():
        pages = {fmt: render_report(report, fmt) for fmt in ReportFormat}

    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in the JSON report")

    json.loads(pages[ReportFormat.json], parse_constant=refuse)
    return pages


@dataclass(frozen=True)
class Panel:
    label: str
    data: list[float]
    """The finite values of the data lines (canary, baseline, shares, evidence) inside the axis."""
    thresholds: dict[str, list[float]]
    texts: list[str]


def drawn_panels(report: RunReport, metric: MetricHistory) -> list[Panel]:
    """Each panel of the metric's figure: what is drawn inside its y range."""
    fig = metric_figure(report, metric)
    panels = []
    for axis in fig.axes:
        low, high = axis.get_ylim()
        data: list[float] = []
        thresholds: dict[str, list[float]] = {}
        for line in axis.get_lines():
            label = str(line.get_label())
            if label.startswith("_") or label.startswith("not enough evidence"):
                continue
            ys = np.asarray(line.get_ydata(), dtype=float)
            inside = [float(y) for y in ys if math.isfinite(y) and low <= y <= high]
            if label.startswith(THRESHOLDS):
                thresholds[label] = inside
            else:
                data += inside
        panels.append(
            Panel(str(axis.get_ylabel()), data, thresholds, [t.get_text() for t in axis.texts])
        )
    return panels


def check_panels(report: RunReport) -> list[list[Panel]]:
    """Every panel of every metric has its thresholds inside it, and data (or says why not).
    Returns each metric's panels, in the report's order (each figure drawn once)."""
    assert report.metrics
    drawn: list[list[Panel]] = []
    for metric in report.metrics:
        panels = drawn_panels(report, metric)
        drawn.append(panels)
        # the judge records no thresholds for a metric without data ("no data", no checks)
        judged = any(p.limits or p.share_limits or p.evidence_limits for p in metric.points)
        for i, panel in enumerate(panels):
            where = f"{metric.name}, panel {panel.label!r}"
            assert panel.thresholds or not judged, f"{where}: no threshold drawn"
            assert all(panel.thresholds.values()), f"{where}: a threshold outside the axis"
            no_requests = i == 0 and any("no requests recorded" in t for t in panel.texts)
            assert panel.data or no_requests, f"{where}: blank"
            if i == 0 and not panel.data:
                assert all(p.canary is None and p.baseline is None for p in metric.points)
    return drawn


def evidence_panel(panels: list[Panel]) -> Panel | None:
    """The evidence panel among a metric's panels (`drawn_panels`), if it has one."""
    return next((p for p in panels if p.label.startswith("e-value")), None)


def stored_e_values(metric: MetricHistory) -> list[float]:
    return [v for p in metric.points for v in p.evidence.values()]


def expected_top(e_values: Sequence[float]) -> float:
    """Where the largest e-value is drawn: its log10, at most the float cap's, at least the floor."""
    top = max(e_values)
    return min(max(math.log10(top) if top > 0 else -math.inf, E_FLOOR_LOG), E_CAP_LOG)


# --- runs judged by the engine ------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunStore]:
    opened = open_store(f"sqlite:///{tmp_path_factory.mktemp('report-props') / 'runs.sqlite'}")
    yield opened
    opened.close()


@SETTINGS
@given(
    requests_per_second=st.sampled_from([0.0, 0.05, 100.0, 1e5, 1e6]),
    error_rate=st.sampled_from([0.001, 0.05, 0.5]),
    latency_factor=st.sampled_from([1.0, 3.0]),
    seed=st.integers(0, 3),
)
@example(requests_per_second=1e5, error_rate=0.001, latency_factor=1.0, seed=0)  # 10⁷ requests
@example(requests_per_second=1e4, error_rate=0.05, latency_factor=1.0, seed=0)  # aborted, look 1
@example(requests_per_second=0.0, error_rate=0.001, latency_factor=1.0, seed=0)  # no traffic
def test_every_panel_of_a_judged_run_is_drawn_at_any_traffic(
    store: RunStore,
    requests_per_second: float,
    error_rate: float,
    latency_factor: float,
    seed: int,
) -> None:
    traffic = TrafficModel(
        requests_per_second=requests_per_second,
        canary_error_rate=error_rate,
        canary_latency_factor=latency_factor,
    )
    demo = run_demo("healthy", seed, store=store, traffic=traffic)
    assert demo.run is not None
    looks = len(demo.result.looks)
    stored = store.get(demo.run.id)
    assert stored is not None and stored.looks == looks  # the run's own state is written
    final = demo.result.final
    assert final is not None and stored.verdict == str(final.verdict)
    report = load_report(store, demo.run.id)
    assert report.look_count == looks == len(report.looks)
    assert report.deciding_look == demo.result.looks[-1].look
    pages = render_all(report)
    assert f"{looks} looks" in pages[ReportFormat.md]
    drawn = check_panels(report)
    for metric, panels in zip(report.metrics, drawn, strict=True):
        panel = evidence_panel(panels)
        e_values = stored_e_values(metric)
        assert (panel is None) == (not e_values)  # no e-values: no data, nothing judged
        if panel is not None:
            assert max(panel.data) == pytest.approx(expected_top(e_values))


# --- stored runs with any figures -----------------------------------------------------------

E_VALUES = st.one_of(
    st.sampled_from(
        [0.0, 1e-300, 0.5, 1.0, 47.6, 1.014e304, 1e308, sys.float_info.max, math.inf, math.nan]
    ),
    st.floats(min_value=1e-300, max_value=1e308),
)
REQUESTS = st.sampled_from([0.0, 1.0, 1e7, 1.5e8])


@pytest.fixture(scope="module")
def recorded(store: RunStore) -> list[dict[str, Any]]:
    """The events of a promoted run of 24 looks, as the engine recorded them."""
    demo = run_demo("healthy", 0, store=store)
    assert demo.run is not None
    events = store.events(demo.run.id)
    assert sum(e["kind"] == "look" for e in events) == 24
    return events


def _with_figures(doc: dict[str, Any], draw: Any, zero: bool) -> dict[str, Any]:
    """A metric document with e-values and request counts drawn by hypothesis."""
    doc = deepcopy(doc)
    for check in doc.get("checks") or ():
        stat = check.get("statistic") or {}
        for key in ("eFail", "ePass"):
            if key in stat:
                stat[key] = draw(E_VALUES)
    for side in ("canary", "baseline"):
        figures = doc.get(side) or {}
        figures["requests"] = 0.0 if zero and side == "canary" else draw(REQUESTS)
        if zero and side == "canary":  # as the engine records a side with no requests
            figures.update({k: None for k in ("rate", "seconds") if k in figures})
            figures.update({"bad": 0.0} if "bad" in figures else {})
    return doc


def store_run(store: RunStore, events: Sequence[Mapping[str, Any]], looks: int) -> str:
    now = datetime.now(UTC)
    run = new_run(
        RunKey("checkout", "props", "checkout-props", uuid.uuid4().hex),  # a new run each time
        stable_hash="s",
        params={},
        started_at=now,
        now=now,
    )
    run = store.start(run)
    assert not store.events(run.id)
    for event in events:
        body = deepcopy(dict(event))
        body["run"] = {**body["run"], "id": run.id}
        store.add_event(run.id, str(body["kind"]), body)
    store.update(run.id, lambda r: replace(r, looks=looks))
    return run.id


@SETTINGS
@given(data=st.data(), looks=st.sampled_from([1, 2, 6]), decided=st.booleans())
def test_every_panel_is_drawn_whatever_the_stored_figures(
    store: RunStore, recorded: list[dict[str, Any]], data: st.DataObject, looks: int, decided: bool
) -> None:
    """The recorded looks of a real run, cut to `looks` and stored again with e-values from 0 to
    the float cap and beyond (inf, NaN) and request counts up to 1.5e8 (or no canary traffic):
    every panel is drawn, the largest e-value at its place, and nothing warns."""
    zero = data.draw(st.booleans(), label="no canary traffic")
    kept: list[dict[str, Any]] = []
    for event in recorded:
        if event["kind"] == "look":
            if event["look"] > looks:
                continue
            event = {
                **event,
                "metrics": [_with_figures(m, data.draw, zero) for m in event["metrics"]],
            }
        elif event["kind"] == "decision":
            if not decided:
                continue
            event = {**event, "look": looks, "outcome": "aborted" if looks == 1 else "promoted"}
        kept.append(event)
    run_id = store_run(store, kept, looks)
    report = load_report(store, run_id)
    assert [lk.look for lk in report.looks] == list(range(1, looks + 1))
    render_all(report)
    drawn = check_panels(report)
    for metric, panels in zip(report.metrics, drawn, strict=True):
        e_values = stored_e_values(metric)
        panel = evidence_panel(panels)
        if not e_values:  # every e-value NaN: no evidence to draw
            assert panel is None
            continue
        assert panel is not None
        assert max(panel.data) == pytest.approx(expected_top(e_values))
        assert all(E_FLOOR_LOG <= y <= E_CAP_LOG for y in panel.data)


# --- what a reader sees ----------------------------------------------------------------------


def _legend(report: RunReport, metric: MetricHistory) -> list[list[tuple[str, str]]]:
    """Each panel's legend: (label, colour) in order."""
    from matplotlib.colors import to_hex

    fig = metric_figure(report, metric)
    legends = []
    for axis in fig.axes:
        legend = axis.get_legend()
        assert legend is not None
        entries = []
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
            pick = getattr(handle, "get_color", None) or getattr(handle, "get_facecolor", None)
            assert pick is not None, text.get_text()
            colour = pick()
            rgba = colour if isinstance(colour, str) else tuple(np.asarray(colour).ravel()[:4])
            entries.append((text.get_text(), to_hex(rgba)))
        legends.append(entries)
    return legends


def test_the_legend_has_one_order_and_one_colour_per_kind_of_line(store: RunStore) -> None:
    colours: dict[str, str] = {}
    seen_fails_and_passes = 0
    for scenario, traffic in [
        ("healthy", TrafficModel()),
        ("error-spike", TrafficModel(canary_error_rate=0.05)),
        ("busy", TrafficModel(requests_per_second=1e5)),
        ("latency-regression", TrafficModel(canary_latency_factor=3.0)),
    ]:
        demo = run_demo(scenario, 1, store=store, traffic=traffic)
        assert demo.run is not None
        report = load_report(store, demo.run.id)
        for metric in report.metrics:
            for entries in _legend(report, metric):
                labels = [label for label, _ in entries]
                for first, then in [("fails above", "passes below"), ("fails at", "passes at")]:
                    a = [i for i, x in enumerate(labels) if x.startswith(first)]
                    b = [i for i, x in enumerate(labels) if x.startswith(then)]
                    if a and b:
                        seen_fails_and_passes += 1
                        assert max(a) < min(b), labels
                if "canary" in labels and "baseline" in labels:
                    assert labels.index("canary") < labels.index("baseline")
                for label, colour in entries:
                    assert colours.setdefault(label, colour) == colour, label
    assert seen_fails_and_passes >= 4
    assert colours["fails above (compare)"] != colours["passes below (compare)"]


def test_a_look_that_neither_passed_nor_failed_is_ringed_and_explained(store: RunStore) -> None:
    """At an early look the canary can sit beyond the line it fails above without failing: too
    few requests yet. The plot rings each such look and says so at the first one."""
    demo = run_demo("healthy", 0, store=store, traffic=TrafficModel(canary_error_rate=0.004))
    assert demo.run is not None
    report = load_report(store, demo.run.id)
    explained = 0
    for metric in report.metrics:
        fig = metric_figure(report, metric)
        value_axis = fig.axes[0]
        rings = [
            line
            for line in value_axis.get_lines()
            if str(line.get_label()).startswith("not enough evidence yet")
        ]
        undecided = [
            p for p in metric.points if p.verdict == "inconclusive" and p.canary is not None
        ]
        assert len(rings) == (1 if undecided else 0)
        if not undecided:
            continue
        assert len(np.asarray(rings[0].get_xdata())) == len(undecided)
        drawn_legend = value_axis.get_legend()
        assert drawn_legend is not None
        legend = [t.get_text() for t in drawn_legend.get_texts()]
        assert any(t.startswith("not enough evidence yet") for t in legend)
        beyond = [
            p
            for p in undecided
            if any(
                (label.startswith(("fails above", "SLO max")) and p.canary > limit)  # type: ignore[operator]
                or (label.startswith("SLO min") and p.canary < limit)  # type: ignore[operator]
                for label, limit in p.limits.items()
            )
        ]
        notes = [t for t in value_axis.texts if t.get_text().startswith("not enough evidence yet")]
        assert len(notes) == (1 if beyond else 0)
        explained += len(notes)
    assert explained >= 1  # this run has such a look


def test_a_run_aborted_at_its_first_look_is_readable(store: RunStore) -> None:
    demo = run_demo(
        "error-spike",
        0,
        store=store,
        traffic=TrafficModel(requests_per_second=1e4, canary_error_rate=0.05),
    )
    assert (
        demo.run is not None and len(demo.result.looks) == 1 and demo.result.decision == "aborted"
    )
    report = load_report(store, demo.run.id)
    error_rate = report.metrics[0]
    fig = metric_figure(report, error_rate)
    value_axis = fig.axes[0]
    canary = next(line for line in value_axis.get_lines() if line.get_label() == "canary")
    assert canary.get_marker() == "o" and canary.get_markersize() >= 6
    texts = [t.get_text() for t in value_axis.texts]
    shown = f"{error_rate.points[0].canary * 100:.3g} %"  # type: ignore[operator]
    assert shown in texts  # the value beside its marker
    lines = {str(line.get_label()): line for line in value_axis.get_lines()}
    for label in ("SLO max (slo)", "fails above (compare)"):
        assert np.asarray(lines[label].get_xdata()).tolist() == [0, 1]  # across the axis
    evidence = fig.axes[-1]
    values = [t.get_text() for t in evidence.texts if not t.get_text().endswith(" %")]
    assert len(values) == len(error_rate.points[0].evidence)  # each e-value beside its marker
    assert all(v.startswith(("$10^", "≤")) or float(v) >= 0 for v in values)


# --- Markdown from hostile names ------------------------------------------------------------

HOSTILE = {
    "name": "<script>alert(1)</script>[x](javascript:alert(2))",
    "reason": '<img src=x onerror="alert(3)"> ![i](javascript:alert(4)) <javascript:alert(5)>',
}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(k, v or "") for k, v in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_markdown_shows_hostile_names_as_text(
    store: RunStore, recorded: list[dict[str, Any]]
) -> None:
    events = []
    for event in recorded:
        if event["kind"] == "look":
            metrics = [dict(m) for m in event["metrics"]]
            metrics[0] = {**metrics[0], "name": HOSTILE["name"], "reason": HOSTILE["reason"]}
            event = {**event, "metrics": metrics}
        events.append(event)
    report = load_report(store, store_run(store, events, 24))
    pages = render_all(report)
    for fmt in (ReportFormat.md, ReportFormat.html):
        page = pages[fmt]
        html = (
            MarkdownIt("commonmark").enable("table").render(page)
            if fmt is ReportFormat.md
            else page
        )
        parsed = _Tags()
        parsed.feed(html)
        assert "script" not in parsed.tags and "a" not in parsed.tags
        assert [t for t in parsed.tags if t == "img"] == (
            ["img"] * 3 if fmt is ReportFormat.html else []
        )  # the plots only
        assert not [k for k, _ in parsed.attributes if k.startswith("on")]
        links = [v for k, v in parsed.attributes if k in ("href", "src", "action", "formaction")]
        assert not [v for v in links if "javascript:" in v.lower()]
        text = "".join(parsed.text)
        assert HOSTILE["name"] in text and HOSTILE["reason"] in text  # shown as written
