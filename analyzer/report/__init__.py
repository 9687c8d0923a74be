"""Reports of one run (HTML with plots, JSON, Markdown), read from the run store."""

from __future__ import annotations

from enum import StrEnum

from analyzer.report.document import report_document
from analyzer.report.errors import ReportError, RunNotInStore
from analyzer.report.markdown import report_markdown
from analyzer.report.model import RunReport, build_report
from analyzer.runs.store import RunStore


class ReportFormat(StrEnum):
    html = "html"
    json = "json"
    md = "md"


MEDIA_TYPES = {
    ReportFormat.html: "text/html; charset=utf-8",
    ReportFormat.json: "application/json",
    ReportFormat.md: "text/markdown; charset=utf-8",
}


def load_report(store: RunStore, run_id: str) -> RunReport:
    """The report of a stored run. Raises `RunNotInStore`, or the store's `StoreUnavailable`."""
    run = store.get(run_id)
    if run is None:
        raise RunNotInStore(f"no run with id {run_id!r} in {store.description}")
    return build_report(run, store.events(run_id))


def render_report(report: RunReport, fmt: ReportFormat) -> str:
    """The report as text in `fmt` (HTML pages are self-contained: plots are embedded)."""
    if fmt is ReportFormat.json:
        import json

        return json.dumps(report_document(report), indent=2, allow_nan=False) + "\n"
    if fmt is ReportFormat.md:
        return report_markdown(report)
    from analyzer.report.html import report_html  # matplotlib is loaded only for HTML

    return report_html(report)


__all__ = [
    "MEDIA_TYPES",
    "ReportError",
    "ReportFormat",
    "RunNotInStore",
    "RunReport",
    "build_report",
    "load_report",
    "render_report",
    "report_document",
]
