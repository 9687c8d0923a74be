"""The Argo Rollouts web provider (HTTP only): `create_app` / `web_app` over the run service.

The run service, its sources and settings live in `analyzer.runs`; the names tests and the CLI
build an app from are re-exported here for convenience.
"""

from analyzer.api.app import create_app, web_app
from analyzer.api.errors import http_error
from analyzer.api.models import ApiError
from analyzer.api.settings import ServeSettings
from analyzer.runs import PrometheusSources, run_json

__all__ = [
    "ApiError",
    "PrometheusSources",
    "ServeSettings",
    "create_app",
    "http_error",
    "run_json",
    "web_app",
]
