"""Find the Rollouts to watch: list, then watch from the list's resourceVersion; re-list when the
watch expires (410) or breaks. One thread per namespace (or one for all namespaces)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from strategies.argo.rollouts import GROUP, PLURAL, VERSION

_log = structlog.get_logger()
Rollout = dict[str, Any]


class RolloutWatch:
    def __init__(
        self,
        api_client: Any,
        *,
        namespaces: tuple[str, ...],
        on_change: Callable[[Rollout], None],
        on_delete: Callable[[str, str], None],
        timeout_seconds: int = 60,
    ) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self.namespaces = namespaces
        self._on_change = on_change
        self._on_delete = on_delete
        self.timeout_seconds = timeout_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[Any] = []
        self._state: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for namespace in self.namespaces or ("",):
            label = namespace or "all namespaces"
            self._state[label] = "starting"
            thread = threading.Thread(
                target=self._loop, args=(namespace,), name=f"verdict-watch-{label}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.stop()
        for thread in self._threads:
            thread.join(timeout=10)

    def health(self) -> dict[str, str]:
        """`/readyz` checks: `ok` once the watch of each namespace runs, or what is wrong."""
        with self._lock:
            return {f"rollout watch ({label})": state for label, state in self._state.items()}

    def _set(self, label: str, state: str) -> None:
        with self._lock:
            self._state[label] = state

    def _list(self, namespace: str) -> tuple[dict[str, Any], Callable[..., Any], tuple[Any, ...]]:
        func: Callable[..., Any]
        if namespace:
            args: tuple[Any, ...] = (GROUP, VERSION, namespace, PLURAL)
            func = self._api.list_namespaced_custom_object
        else:
            args = (GROUP, VERSION, PLURAL)
            func = self._api.list_cluster_custom_object
        listed: Any = func(*args)
        return dict(listed), func, args

    def _loop(self, namespace: str) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        label = namespace or "all namespaces"
        backoff = 0.5
        while not self._stop.is_set():
            try:
                listed, func, args = self._list(namespace)
                for item in listed.get("items", []):
                    self._on_change(item)
                version = listed.get("metadata", {}).get("resourceVersion")
                self._set(label, "ok")
                backoff = 0.5
                while not self._stop.is_set():
                    w = watch.Watch()  # type: ignore[no-untyped-call]
                    with self._lock:
                        self._watches.append(w)
                    try:
                        for event in w.stream(  # type: ignore[no-untyped-call]
                            func,
                            *args,
                            resource_version=version,
                            timeout_seconds=self.timeout_seconds,
                        ):
                            obj = event["raw_object"]
                            version = obj.get("metadata", {}).get("resourceVersion", version)
                            if event["type"] == "DELETED":
                                meta = obj.get("metadata", {})
                                self._on_delete(meta.get("namespace", ""), meta.get("name", ""))
                            elif event["type"] in ("ADDED", "MODIFIED"):
                                self._on_change(obj)
                            if self._stop.is_set():
                                break
                    finally:
                        with self._lock:
                            self._watches.remove(w)
            except ApiException as error:
                if error.status == 410:
                    _log.info("rollout watch expired; listing again", namespace=label)
                    continue
                self._set(label, f"the Kubernetes API answered {error.status}: {error.reason}")
                _log.warning("rollout watch failed", namespace=label, status=error.status)
            except Exception as error:
                if self._stop.is_set():
                    return
                self._set(label, f"cannot watch Rollouts: {str(error)[:200]}")
                _log.warning("rollout watch failed", namespace=label, error=str(error)[:300])
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
            time.sleep(0)
