"""The complete Rollout examples: a canary with Istio (controller mode) and a blue/green Rollout
with pre- and post-promotion analysis. Rollouts are validated against the Argo Rollouts CRD,
Services against the Kubernetes OpenAPI schemas, and each example is checked to be wired to what
the chart deploys (the annotation's analysis, the ClusterAnalysisTemplate and its arguments)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from analyzer.spec import load_analyses
from tests.helm import lint, template
from tests.helpers import REPO
from tests.test_serve_argo import _validate as validate_argo

EXAMPLES = REPO / "examples" / "argo"


def _documents(name: str) -> dict[str, dict[str, Any]]:
    """kind/name -> object of an example file."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def _validate_all(docs: dict[str, dict[str, Any]]) -> None:
    for obj in docs.values():
        if obj["kind"] == "Rollout":
            validate_argo(obj, "rollout-crd.yaml")
        elif obj["apiVersion"].startswith("networking.istio.io/"):
            continue  # checked against the Rollout by the tests below
        else:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def _chart_analyses(objects: list[dict[str, Any]], folder: Path) -> list[str]:
    """The analyses the rendered chart serves, loaded as `verdict serve` loads them."""
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-analyses")
    ]
    folder.mkdir()
    for name, text in config["data"].items():
        (folder / name).write_text(text)
    return sorted(load_analyses(folder))


def test_the_istio_canary_is_valid_and_verdict_drives_its_paused_steps(tmp_path: Path) -> None:
    docs = _documents("rollout-canary-istio.yaml")
    _validate_all(docs)
    rollout = docs["Rollout/checkout"]
    canary = rollout["spec"]["strategy"]["canary"]
    steps = canary["steps"]
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    assert weights == [5, 10, 50]
    for i, step in enumerate(steps):
        if "setWeight" in step:  # each weight is held until Verdict (or a person) resumes
            assert steps[i + 1] == {"pause": {}}
    # the annotation names an analysis the chart serves by default, in controller mode
    analysis = rollout["metadata"]["annotations"]["verdict.dev/analysis"]
    assert analysis in _chart_analyses(template(), tmp_path / "analyses")
    # the Services and the VirtualService route the Rollout names exist and point at each other
    assert f"Service/{canary['canaryService']}" in docs
    assert f"Service/{canary['stableService']}" in docs
    routing = canary["trafficRouting"]["istio"]["virtualService"]
    service = docs[f"VirtualService/{routing['name']}"]
    routes = {r["name"]: r for r in service["spec"]["http"]}
    for name in routing["routes"]:
        hosts = {d["destination"]["host"]: d["weight"] for d in routes[name]["route"]}
        assert hosts == {canary["stableService"]: 100, canary["canaryService"]: 0}
    selector = rollout["spec"]["selector"]["matchLabels"]
    assert selector.items() <= rollout["spec"]["template"]["metadata"]["labels"].items()
    for key in ("Service/checkout-canary", "Service/checkout-stable"):
        assert docs[key]["spec"]["selector"] == selector
        assert docs[key]["metadata"]["namespace"] == rollout["metadata"]["namespace"]


def test_the_blue_green_rollout_analyses_before_and_after_promotion(tmp_path: Path) -> None:
    docs = _documents("rollout-bluegreen.yaml")
    _validate_all(docs)
    strategy = docs["Rollout/checkout"]["spec"]["strategy"]["blueGreen"]
    assert f"Service/{strategy['activeService']}" in docs
    assert f"Service/{strategy['previewService']}" in docs
    assert strategy["scaleDownDelaySeconds"] >= 600  # the old version stays up to roll back to

    values = yaml.safe_load((EXAMPLES / "bluegreen-analyses.yaml").read_text())
    assert "1 chart(s) linted, 0 chart(s) failed" in lint(values)
    objects = template(values)
    served = _chart_analyses(objects, tmp_path / "analyses")
    (cluster_template,) = [o for o in objects if o["kind"] == "ClusterAnalysisTemplate"]
    required = {
        a["name"]
        for a in cluster_template["spec"]["args"]
        if "value" not in a and "valueFrom" not in a
    }
    for phase in ("prePromotionAnalysis", "postPromotionAnalysis"):
        analysis = strategy[phase]
        assert analysis["templates"] == [
            {"templateName": cluster_template["metadata"]["name"], "clusterScope": True}
        ]
        given = {a["name"]: a for a in analysis["args"]}
        assert required <= set(given)
        assert given["analysis"]["value"] in served
        assert given["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
        assert given["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}
    pre = strategy["prePromotionAnalysis"]["args"][0]["value"]
    post = strategy["postPromotionAnalysis"]["args"][0]["value"]
    assert pre != post
    # before the switch the preview (new) service is the canary; after it the active one is
    analyses = values["analyses"]
    assert analyses[pre]["canary"]["destination_service_name"].endswith("-preview")
    assert analyses[post]["canary"]["destination_service_name"].endswith("-active")
