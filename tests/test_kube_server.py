"""The Kubernetes API test server speaks the dialect the official `kubernetes` client expects."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.kube_server import JSON_PATCH, KubeServer

NS = "shop"


def rollout(name: str = "checkout", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS, "annotations": {"verdict.dev/analysis": "x"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:2"}]},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 5}, {"pause": {}}]}},
        },
        "status": status or {"currentStepIndex": 0},
    }


def custom(kube: KubeServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client())


ARGO = ("argoproj.io", "v1alpha1")


def test_get_list_and_create_with_the_official_client(kube: KubeServer) -> None:
    api = custom(kube)
    created = api.create_namespaced_custom_object(*ARGO, NS, "rollouts", rollout())
    assert created["metadata"]["generation"] == 1 and created["metadata"]["resourceVersion"]
    got = api.get_namespaced_custom_object(*ARGO, NS, "rollouts", "checkout")
    assert got["spec"]["replicas"] == 2
    listed = api.list_cluster_custom_object(*ARGO, "rollouts")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["checkout"]
    with pytest.raises(ApiException) as error:
        api.create_namespaced_custom_object(*ARGO, NS, "rollouts", rollout())
    assert error.value.status == 409
    with pytest.raises(ApiException) as missing:
        api.get_namespaced_custom_object(*ARGO, NS, "rollouts", "nope")
    assert missing.value.status == 404


def test_patches_are_recorded_and_status_is_a_subresource(kube: KubeServer) -> None:
    kube.put(
        rollout(
            currentStepIndex=1,
            pauseConditions=[{"reason": "CanaryPauseStep", "startTime": "2026-11-26T10:00:00Z"}],
        )
    )
    api = custom(kube)
    api.patch_namespaced_custom_object(
        *ARGO, NS, "rollouts", "checkout", {"spec": {"paused": True}}
    )
    main = kube.get(*ARGO, "rollouts", NS, "checkout")
    assert main["spec"]["paused"] is True and main["metadata"]["generation"] == 2
    # the main resource ignores status; /status ignores everything else
    api.patch_namespaced_custom_object(
        *ARGO, NS, "rollouts", "checkout", {"status": {"abort": True}}
    )
    assert "abort" not in kube.get(*ARGO, "rollouts", NS, "checkout")["status"]
    api.patch_namespaced_custom_object_status(
        *ARGO, NS, "rollouts", "checkout", {"status": {"pauseConditions": None, "abort": True}}
    )
    after = kube.get(*ARGO, "rollouts", NS, "checkout")
    assert after["status"] == {"currentStepIndex": 1, "abort": True}
    assert after["metadata"]["generation"] == 2
    status_patch = kube.writes(plural="rollouts", name="checkout")[-1]
    assert status_patch.path.endswith("/rollouts/checkout/status")
    assert status_patch.content_type == "application/merge-patch+json"
    assert status_patch.body == {"status": {"pauseConditions": None, "abort": True}}


def test_json_patches_apply_and_a_failed_test_op_is_refused(kube: KubeServer) -> None:
    kube.put(rollout())
    api = custom(kube)
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
    ]
    api.patch_namespaced_custom_object(
        *ARGO, NS, "rollouts", "checkout", ops, _content_type=JSON_PATCH
    )
    assert kube.get(*ARGO, "rollouts", NS, "checkout")["spec"]["replicas"] == 3
    assert kube.writes(method="PATCH")[-1].content_type == JSON_PATCH
    with pytest.raises(ApiException) as error:
        api.patch_namespaced_custom_object(
            *ARGO, NS, "rollouts", "checkout", ops, _content_type=JSON_PATCH
        )
    assert error.value.status == 422


def test_a_stale_resource_version_is_a_409_conflict(kube: KubeServer) -> None:
    stored = kube.put(rollout())
    stale = stored["metadata"]["resourceVersion"]
    kube.modify(*ARGO, "rollouts", NS, "checkout", lambda o: o["spec"].update(replicas=4))
    with pytest.raises(ApiException) as error:
        custom(kube).patch_namespaced_custom_object(
            *ARGO,
            NS,
            "rollouts",
            "checkout",
            {"metadata": {"resourceVersion": stale}, "spec": {"paused": True}},
        )
    assert error.value.status == 409
    assert "paused" not in kube.get(*ARGO, "rollouts", NS, "checkout")["spec"]


def test_argo_objects_are_validated_against_the_crd(kube: KubeServer) -> None:
    bad = rollout()
    bad["spec"]["strategy"]["canary"]["stepz"] = []
    with pytest.raises(ApiException) as error:
        custom(kube).create_namespaced_custom_object(*ARGO, NS, "rollouts", bad)
    assert error.value.status == 422 and "stepz" in error.value.body
    assert kube.rejected and "stepz" in kube.rejected[-1][1][0]
    kube.put(rollout())
    with pytest.raises(ApiException):
        custom(kube).patch_namespaced_custom_object_status(
            *ARGO, NS, "rollouts", "checkout", {"status": {"abort": "yes"}}
        )


def test_argo_cd_applications_are_validated_against_argo_cds_crd(kube: KubeServer) -> None:
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "checkout", "namespace": "argocd"},
        "spec": {"project": "default", "destination": {"namespace": NS}},
        "status": {"sync": {"status": "OutOfSync", "revision": "abc"}, "health": {"status": "Healthy"}},
    }
    kube.put(app)  # valid: kept, status included (the CRD has no status subresource)
    found = custom(kube).get_namespaced_custom_object(*ARGO, "argocd", "applications", "checkout")
    assert found["status"]["sync"]["status"] == "OutOfSync"
    bad = {**app, "metadata": {"name": "typo", "namespace": "argocd"},
           "status": {"sync": {"state": "Synced"}}}  # fmt: skip
    with pytest.raises(ApiException) as error:
        custom(kube).create_namespaced_custom_object(*ARGO, "argocd", "applications", bad)
    assert error.value.status == 422 and "state" in error.value.body


def test_watch_streams_changes_and_an_expired_version_is_410(kube: KubeServer) -> None:
    api = custom(kube)
    kube.put(rollout("a"))
    seen: list[tuple[str, str]] = []
    listed = api.list_namespaced_custom_object(*ARGO, NS, "rollouts")
    version = listed["metadata"]["resourceVersion"]
    done = threading.Event()

    def follow() -> None:
        w = watch.Watch()
        for event in w.stream(
            api.list_namespaced_custom_object,
            *ARGO,
            NS,
            "rollouts",
            resource_version=version,
            timeout_seconds=5,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                w.stop()
        done.set()

    thread = threading.Thread(target=follow)
    thread.start()
    kube.put(rollout("b"))
    kube.modify(*ARGO, "rollouts", NS, "a", lambda o: o["spec"].update(paused=True))
    assert done.wait(10)
    thread.join()
    assert seen == [("ADDED", "b"), ("MODIFIED", "a")]

    kube.compact()
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(
            api.list_namespaced_custom_object,
            *ARGO,
            NS,
            "rollouts",
            resource_version=version,
            timeout_seconds=2,
        ):
            pass
    assert gone.value.status == 410


def test_core_and_coordination_resources_work_with_typed_clients(kube: KubeServer) -> None:
    core = client.CoreV1Api(kube.api_client())
    core.create_namespaced_event(
        NS,
        {
            "metadata": {"generateName": "checkout."},
            "involvedObject": {"kind": "Rollout", "name": "checkout", "namespace": NS},
            "reason": "Promoted",
            "message": "pass",
            "type": "Normal",
        },
    )
    events = core.list_namespaced_event(NS).items
    assert [e.reason for e in events] == ["Promoted"]
    leases = client.CoordinationV1Api(kube.api_client())
    lease = leases.create_namespaced_lease(
        NS,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="verdict"),
            spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
        ),
    )
    lease.spec.holder_identity = "b"
    leases.replace_namespaced_lease("verdict", NS, lease)
    lease.spec.holder_identity = "c"  # same (now stale) resourceVersion
    with pytest.raises(ApiException) as error:
        leases.replace_namespaced_lease("verdict", NS, lease)
    assert error.value.status == 409
    assert leases.read_namespaced_lease("verdict", NS).spec.holder_identity == "b"
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web", "hash": "a"}},
        }
    )
    core.patch_namespaced_service("web", NS, {"spec": {"selector": {"hash": "b"}}})
    assert kube.get("", "v1", "services", NS, "web")["spec"]["selector"] == {
        "app": "web",
        "hash": "b",
    }
    assert kube.writes(plural="services")[-1].content_type == (
        "application/strategic-merge-patch+json"
    )


def test_injected_failures_and_reactions(kube: KubeServer) -> None:
    kube.put(rollout())
    reacted: list[str] = []
    kube.react(lambda server, resource, obj: reacted.append(obj["metadata"]["name"]))
    kube.fail_next("PATCH", r"/rollouts/checkout$", 409)
    api = custom(kube)
    with pytest.raises(ApiException) as error:
        api.patch_namespaced_custom_object(
            *ARGO, NS, "rollouts", "checkout", {"spec": {"paused": True}}
        )
    assert error.value.status == 409 and reacted == []
    api.patch_namespaced_custom_object(
        *ARGO, NS, "rollouts", "checkout", {"spec": {"paused": True}}
    )
    assert reacted == ["checkout"]
    assert [r.status for r in kube.writes(plural="rollouts")] == [409, 200]


def test_virtual_service_weights_are_patched_and_their_shape_checked(kube: KubeServer) -> None:
    vs = ("networking.istio.io", "v1beta1")
    route = [
        {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
        {"destination": {"host": "web", "subset": "canary"}, "weight": 0},
    ]
    api = custom(kube)
    api.create_namespaced_custom_object(
        *vs,
        NS,
        "virtualservices",
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"name": "primary", "route": route}]},
        },
    )
    ops = [
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 95},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 5},
    ]
    api.patch_namespaced_custom_object(
        *vs, NS, "virtualservices", "web", ops, _content_type=JSON_PATCH
    )
    stored = kube.get(*vs, "virtualservices", NS, "web")
    assert [r["weight"] for r in stored["spec"]["http"][0]["route"]] == [95, 5]
    # the versions of a resource share their objects
    assert (
        kube.get("networking.istio.io", "v1", "virtualservices", NS, "web")["spec"]
        == (stored["spec"])
    )
    bad = [{"op": "replace", "path": "/spec/http/0/route/1/weight", "value": "5"}]
    with pytest.raises(ApiException) as error:
        api.patch_namespaced_custom_object(
            *vs, NS, "virtualservices", "web", bad, _content_type=JSON_PATCH
        )
    assert error.value.status == 422
