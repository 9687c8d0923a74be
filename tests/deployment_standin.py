"""A stand-in for Kubernetes' Deployment controller on the Kubernetes API test server.

Every `tick()` (a background thread calls it every `period` seconds) moves one replica of an
unpaused Deployment to the ReplicaSet whose template is the Deployment's (its template without
the `pod-template-hash` label), as a rolling update with maxSurge 1 / maxUnavailable 0 would;
a ReplicaSet that becomes the Deployment's template again (a rollback) gets the next revision,
as the real controller does. Statuses (ReplicaSets' and the Deployment's) follow.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.kube_server import KubeServer

APPS = "apps", "v1"
REVISION = "deployment.kubernetes.io/revision"


def template(image: str, hash_: str | None = None) -> dict[str, Any]:
    labels = {"app": "checkout", **({"pod-template-hash": hash_} if hash_ else {})}
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "checkout", "image": image}]}}  # fmt: skip


def _plain(t: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(t)
    t.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    return t


class DeploymentStandIn:
    def __init__(self, kube: KubeServer, namespace: str, name: str = "checkout") -> None:
        self.kube, self.ns, self.name = kube, namespace, name
        self.history: list[tuple[int, int]] = []  # (stable replicas, canary replicas)

    def install(self, replicas: int = 4) -> None:
        """`stable` (revision 1, image :1, all replicas) being replaced by `canary` (:2)."""
        deployment = self.kube.put({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.ns, "generation": 2,
                         "annotations": {REVISION: "2"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "checkout"}},
                     "template": template("checkout:2")},
        })  # fmt: skip
        owner = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name,
                  "uid": deployment["metadata"]["uid"], "controller": True}]  # fmt: skip
        for hash_, image, rev, count in (("stable", "checkout:1", 1, replicas),
                                         ("canary", "checkout:2", 2, 0)):  # fmt: skip
            self.kube.put({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{self.name}-{hash_}", "namespace": self.ns,
                             "labels": {"app": "checkout", "pod-template-hash": hash_},
                             "annotations": {REVISION: str(rev)}, "ownerReferences": owner},
                "spec": {"replicas": count, "template": template(image, hash_)},
                "status": {"replicas": count, "readyReplicas": count},
            })  # fmt: skip
        self._status()

    def replicasets(self) -> list[dict[str, Any]]:
        return [r for r in self.kube.objects(*APPS, "replicasets")
                if r["metadata"]["namespace"] == self.ns]  # fmt: skip

    def ready(self, hash_: str) -> int:
        for rs in self.replicasets():
            if rs["metadata"]["labels"]["pod-template-hash"] == hash_:
                return int(rs["status"].get("readyReplicas", 0))
        return 0

    def canary_weight(self) -> float:
        total = self.ready("stable") + self.ready("canary")
        return 100.0 * self.ready("canary") / total if total else 0.0

    def _status(self) -> None:
        d = self.kube.get(*APPS, "deployments", self.ns, self.name)
        sets = self.replicasets()
        target = [r for r in sets if _plain(r["spec"]["template"]) == _plain(d["spec"]["template"])]
        updated = int(target[0]["status"]["readyReplicas"]) if target else 0
        total = sum(int(r["status"]["readyReplicas"]) for r in sets)

        def change(obj: dict[str, Any]) -> None:
            obj["status"] = {"observedGeneration": obj["metadata"].get("generation", 1),
                             "replicas": total, "updatedReplicas": updated,
                             "readyReplicas": total, "availableReplicas": total}  # fmt: skip

        self.kube.modify(*APPS, "deployments", self.ns, self.name, change)

    def tick(self) -> None:
        d = self.kube.get(*APPS, "deployments", self.ns, self.name)
        if d["spec"].get("paused"):
            return
        sets = self.replicasets()
        target = next((r for r in sets
                       if _plain(r["spec"]["template"]) == _plain(d["spec"]["template"])), None)  # fmt: skip
        if target is None:
            return
        top = max(int(r["metadata"]["annotations"][REVISION]) for r in sets)
        if int(target["metadata"]["annotations"][REVISION]) < top:
            self._set(target, revision=top + 1)
        others = [r for r in sets if r is not target and int(r["spec"]["replicas"]) > 0]
        if others:
            self._set(target, replicas=int(target["spec"]["replicas"]) + 1)
            self._set(others[0], replicas=int(others[0]["spec"]["replicas"]) - 1)
        self._status()
        self.history.append((self.ready("stable"), self.ready("canary")))

    def _set(self, rs: dict[str, Any], *, replicas: int | None = None,
             revision: int | None = None) -> None:  # fmt: skip
        def change(obj: dict[str, Any]) -> None:
            if replicas is not None:
                obj["spec"]["replicas"] = replicas
                obj["status"] = {"replicas": replicas, "readyReplicas": replicas}
            if revision is not None:
                obj["metadata"]["annotations"][REVISION] = str(revision)

        self.kube.modify(*APPS, "replicasets", self.ns, rs["metadata"]["name"], change)

    @contextmanager
    def running(self, period: float) -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(period):
                self.tick()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
