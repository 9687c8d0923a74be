"""What the standalone strategies share about talking to the Kubernetes API."""

from __future__ import annotations

import urllib3.exceptions


class KubeUnreachable(Exception):
    """The Kubernetes API did not answer (or answered a server error)."""


NETWORK_ERRORS: tuple[type[BaseException], ...] = (OSError, urllib3.exceptions.HTTPError)
"""What the official client raises when the API server cannot be reached."""
