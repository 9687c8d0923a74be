"""Fixtures of the reliability suite: a fault proxy in front of the real Prometheus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import PrometheusServer
from tests.reliability.fault_proxy import FaultProxy


@pytest.fixture
def fault_proxy(prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    """A `FaultProxy` in front of the session's Prometheus, with no fault active."""
    proxy = FaultProxy(upstream=prometheus.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()
