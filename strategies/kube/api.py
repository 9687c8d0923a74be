"""The Kubernetes API client every part uses: the official client with a deadline on every call.

Every request has a connect and a read timeout (fail-safe rule I4: a stalled call is a fault, not
a silent wait): `DEFAULT_TIMEOUT` unless the call names its own; a watch may stay open for the
`timeoutSeconds` it asked the server for, plus `WATCH_GRACE`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from kubernetes import client, config

DEFAULT_TIMEOUT = (5.0, 20.0)
"""(connect, read) seconds of a Kubernetes call that does not name its own."""
WATCH_GRACE = 30.0
"""A watch's read timeout: the `timeoutSeconds` it asked for plus this (no events for that long
while the server should have ended the watch: the connection is stalled)."""
WATCH_DEFAULT = 300.0
"""A watch that names no `timeoutSeconds`: at most this long without a byte."""
_WATCH = re.compile(r"[?&]watch=(true|1)\b", re.IGNORECASE)
_WATCH_SECONDS = re.compile(r"[?&]timeoutSeconds=(\d+)")


class KubeConfigError(Exception):
    """No usable Kubernetes configuration (no kubeconfig, not inside a cluster)."""


class DeadlineApiClient(client.ApiClient):
    """The official client with a connect and a read timeout on every request."""

    def __init__(
        self, configuration: Any = None, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(configuration)
        self.timeout = timeout

    def deadline_for(self, url: str) -> tuple[float, float]:
        """The (connect, read) timeout of a request to `url` that names none."""
        connect, read = self.timeout
        if _WATCH.search(url):
            asked = _WATCH_SECONDS.search(url)
            read = float(asked.group(1)) + WATCH_GRACE if asked else WATCH_DEFAULT
        return connect, read

    def call_api(
        self,
        method: str,
        url: str,
        header_params: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        if _request_timeout is None:
            _request_timeout = self.deadline_for(url)
        return super().call_api(
            method,
            url,
            header_params=header_params,
            body=body,
            post_params=post_params,
            _request_timeout=_request_timeout,
        )


def kube_api_client(
    kubeconfig: str | None = None, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
) -> DeadlineApiClient:
    """The API client: from `kubeconfig`, else `KUBECONFIG`, else in-cluster; every call with a
    deadline."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or None
    given = "--kubeconfig" if kubeconfig else "KUBECONFIG"
    if path and os.pathsep not in path:
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise KubeConfigError(
                f"{given}: cannot read kubeconfig {path}: {error.strerror or error}"
            ) from None
    configuration = client.Configuration()
    try:
        if path:
            config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (
        config.ConfigException,
        yaml.YAMLError,  # not YAML
        OSError,
        AttributeError,  # YAML of another shape (a list, a string, a number...)
        LookupError,
        TypeError,
        ValueError,  # not UTF-8 text, bad base64 certificates
    ) as error:
        if path:
            raise KubeConfigError(
                f"{given}: cannot use kubeconfig {path}: {_first_line(error)}"
            ) from None
        raise KubeConfigError(
            f"cannot use the in-cluster service account: {_first_line(error)}; give "
            "--kubeconfig or KUBECONFIG outside a cluster"
        ) from None
    return DeadlineApiClient(configuration, timeout=timeout)


def _first_line(error: BaseException) -> str:
    """The error's text on one line (YAML errors span several: the problem and where)."""
    words = " ".join(str(error).split())
    return words if len(words) <= 300 else words[:300] + "..."
