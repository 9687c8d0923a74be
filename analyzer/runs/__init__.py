"""The run core every way in drives: the run model, one look at a run, the run service (locks,
look budget, expiry, domain errors), the metric sources of looks and the run store.

Nothing here imports the HTTP app, the controller or the CLI: they sit on top of it.
"""

from analyzer.runs.errors import (
    BadInput,
    CannotJudge,
    OverBudget,
    QueryRejected,
    RunBusy,
    RunError,
    RunExpired,
    SourceDown,
    StoreDown,
    UnknownAnalysis,
)
from analyzer.runs.model import (
    Look,
    Run,
    RunKey,
    advance,
    answer_json,
    look_window,
    metric_from_dict,
    metric_to_dict,
    new_run,
    run_json,
)
from analyzer.runs.service import LookRequest, RunService, RunSettings
from analyzer.runs.sources import PrometheusSources, SourceFactory, query_limits
from analyzer.runs.telemetry import Telemetry

__all__ = [
    "BadInput",
    "CannotJudge",
    "Look",
    "LookRequest",
    "OverBudget",
    "PrometheusSources",
    "QueryRejected",
    "Run",
    "RunBusy",
    "RunError",
    "RunExpired",
    "RunKey",
    "RunService",
    "RunSettings",
    "SourceDown",
    "SourceFactory",
    "StoreDown",
    "Telemetry",
    "UnknownAnalysis",
    "advance",
    "answer_json",
    "look_window",
    "metric_from_dict",
    "metric_to_dict",
    "new_run",
    "query_limits",
    "run_json",
]
