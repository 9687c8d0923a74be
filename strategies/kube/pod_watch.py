"""The pods of Argo Rollouts, kept from one list and a watch, so that a controller's tick reads
its Rollout's pods from memory instead of listing them (one request a look less).

`PodWatch` lists the pods that carry a label (`rollouts-pod-template-hash`: every pod of a
Rollout's ReplicaSets has it) in each watched namespace, or in all, then watches from the list's
resourceVersion; it lists again when the watch expires (410) or breaks. It keeps of each pod only
what the health gate judges (its metadata's name, uid, labels and times, and its status), indexed
by namespace and label value.

`pods(namespace, labels)` answers None while the namespace's watch is not running (starting,
failing, listing again): the caller then lists the pods itself, as without the watch. A pod
deleted while the watch was down is forgotten at the next list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog

_log = structlog.get_logger()

Pod = dict[str, Any]
_KEPT_METADATA = ("name", "namespace", "uid", "labels", "creationTimestamp", "deletionTimestamp")


def compact(pod: Pod) -> Pod:
    """What the health gate reads of a pod (`strategies.health.classify_pods`)."""
    meta = pod.get("metadata") or {}
    return {
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
        "status": pod.get("status") or {},
    }


class PodWatch:
    """Pods labelled `label`, per namespace and label value (module docstring)."""

    def __init__(
        self,
        api_client: Any,
        *,
        label: str,
        namespaces: tuple[str, ...] = (),
        timeout_seconds: int = 60,
    ) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self.label = label
        self.namespaces = namespaces
        self.timeout_seconds = timeout_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[Any] = []
        self._lock = threading.Lock()
        # (namespace, label value) -> pod name -> compact pod
        self._pods: dict[tuple[str, str], dict[str, Pod]] = {}
        # where each pod is filed (its label value can change)
        self._filed: dict[tuple[str, str], str] = {}
        self._live: dict[str, bool] = {}  # watched namespace ("" all) -> watch running

    # --- life --------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for namespace in self.namespaces or ("",):
            self._live[namespace] = False
            thread = threading.Thread(
                target=self._loop,
                args=(namespace,),
                name=f"verdict-pods-{namespace or 'all'}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watches = list(self._watches)
            for namespace in self._live:
                self._live[namespace] = False
        for w in watches:
            w.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    # --- reads ---------------------------------------------------------------------------------

    def live(self, namespace: str) -> bool:
        with self._lock:
            return self._live.get(namespace, False) or self._live.get("", False)

    def pods(self, namespace: str, labels: dict[str, str]) -> list[Pod] | None:
        """The pods of `namespace` with every label of `labels` (which must name this watch's
        label); None when the watch of the namespace is not running."""
        value = labels.get(self.label)
        if value is None:
            raise ValueError(f"the pods are filed by {self.label}: give it")
        with self._lock:
            if not (self._live.get(namespace, False) or self._live.get("", False)):
                return None
            filed = self._pods.get((namespace, value), {})
            return [
                pod
                for pod in filed.values()
                if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            ]

    # --- the list and the watch -------------------------------------------------------------------

    def _list_function(self, namespace: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        # plain functions (no return type): the watch yields the pods as dicts, not models
        if namespace:

            def in_namespace(*args: Any, **kwargs: Any) -> Any:
                return self._core.list_namespaced_pod(*args, **kwargs)

            return in_namespace, (namespace,)

        def everywhere(*args: Any, **kwargs: Any) -> Any:
            return self._core.list_pod_for_all_namespaces(*args, **kwargs)

        return everywhere, ()

    def _replace(self, namespace: str, items: list[Pod]) -> None:
        """The namespace's pods (all namespaces': "") as listed: every other one is forgotten."""
        with self._lock:
            for key in [k for k in self._filed if not namespace or k[0] == namespace]:
                self._drop(key)
            for pod in items:
                self._file(compact(pod))

    def _file(self, pod: Pod) -> None:
        meta = pod["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self._drop(key)
        value = (meta.get("labels") or {}).get(self.label)
        if value is None:
            return
        self._pods.setdefault((key[0], str(value)), {})[key[1]] = pod
        self._filed[key] = str(value)

    def _drop(self, key: tuple[str, str]) -> None:
        value = self._filed.pop(key, None)
        if value is None:
            return
        filed = self._pods.get((key[0], value))
        if filed is not None:
            filed.pop(key[1], None)
            if not filed:
                del self._pods[(key[0], value)]

    def _set_live(self, namespace: str, live: bool) -> None:
        with self._lock:
            self._live[namespace] = live

    @staticmethod
    def _failed(failures: int, **fields: object) -> None:
        """The first failure in a row is a warning (e.g. no `watch` on pods: looks list their
        pods from then on), the ones after it are not repeated at that level."""
        say = _log.warning if failures == 1 else _log.debug
        say("pod watch failed; looks list their pods until it runs", **fields)

    def _loop(self, namespace: str) -> None:
        import json

        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        label = namespace or "all namespaces"
        func, args = self._list_function(namespace)
        backoff = 0.5
        failures = 0  # in a row
        while not self._stop.is_set():
            try:
                listed = json.loads(
                    func(*args, label_selector=self.label, _preload_content=False).data
                )
                self._replace(namespace, listed.get("items") or [])
                version = (listed.get("metadata") or {}).get("resourceVersion")
                self._set_live(namespace, True)
                if failures:
                    _log.info("pod watch running again", namespace=label)
                failures = 0
                backoff = 0.5
                while not self._stop.is_set():
                    w = watch.Watch()  # type: ignore[no-untyped-call]
                    with self._lock:
                        self._watches.append(w)
                    try:
                        for event in w.stream(  # type: ignore[no-untyped-call]
                            func,
                            *args,
                            label_selector=self.label,
                            resource_version=version,
                            timeout_seconds=self.timeout_seconds,
                        ):
                            pod = event["raw_object"]
                            meta = pod.get("metadata") or {}
                            version = meta.get("resourceVersion", version)
                            with self._lock:
                                if event["type"] == "DELETED":
                                    self._drop((str(meta.get("namespace")), str(meta.get("name"))))
                                elif event["type"] in ("ADDED", "MODIFIED"):
                                    self._file(compact(pod))
                            if self._stop.is_set():
                                break
                    finally:
                        with self._lock:
                            self._watches.remove(w)
            except ApiException as error:
                self._set_live(namespace, False)
                if error.status == 410:
                    _log.info("pod watch expired; listing again", namespace=label)
                    continue
                failures += 1
                self._failed(failures, namespace=label, status=error.status, reason=error.reason)
            except Exception as error:
                self._set_live(namespace, False)
                if self._stop.is_set():
                    return
                failures += 1
                self._failed(failures, namespace=label, error=str(error)[:300])
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
