"""Where runs live: the `RunStore` protocol, SQLite (default) and PostgreSQL stores."""

from analyzer.runs.store.base import EventsOf, RunStore
from analyzer.runs.store.errors import (
    RunNotFound,
    RunUnreadable,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from analyzer.runs.store.factory import DEFAULT_STORE_URL, open_store

__all__ = [
    "DEFAULT_STORE_URL",
    "EventsOf",
    "RunNotFound",
    "RunStore",
    "RunUnreadable",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]
