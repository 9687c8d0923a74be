"""The Argo Rollouts web provider: `create_app` and the parts it is built from."""

from analyzer.api.app import create_app, run_json
from analyzer.api.looks import (
    Clock,
    LookRequest,
    LookService,
    PrometheusSources,
    ServeSettings,
    SourceFactory,
    SystemClock,
)
from analyzer.api.models import ApiError

__all__ = [
    "ApiError",
    "Clock",
    "LookRequest",
    "LookService",
    "PrometheusSources",
    "ServeSettings",
    "SourceFactory",
    "SystemClock",
    "create_app",
    "run_json",
]
