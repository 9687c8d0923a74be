"""Pick a run store from its URL: `sqlite:///path` (default) or `postgresql://...`."""

from __future__ import annotations

from urllib.parse import urlsplit

from analyzer.runs.store.base import RunStore
from analyzer.runs.store.errors import StoreConfigError

DEFAULT_STORE_URL = "sqlite:///verdict-runs.sqlite"


def open_store(url: str = DEFAULT_STORE_URL) -> RunStore:
    """A store for `url`. Opens nothing yet: the first use connects (and creates the table).

    Raises `StoreConfigError` for a URL that names no store Verdict knows.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from analyzer.runs.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        try:
            from analyzer.runs.store.postgres import PostgresStore
        except ImportError as error:  # the `postgres` extra is not installed
            raise StoreConfigError(
                f"a PostgreSQL store needs psycopg: pip install 'verdict[postgres]' ({error})"
            ) from None
        return PostgresStore(url)
    raise StoreConfigError(
        f"unknown run store {url.split('@')[-1]!r}: use sqlite:///path.db or "
        "postgresql://user:password@host:5432/database"
    )
