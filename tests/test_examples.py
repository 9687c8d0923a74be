"""Every file under `examples/` is accepted by the command the README names beside it: the
standalone rollouts by `verdict canary run`, the folder of Argo examples by `verdict serve`, the
manifests by the Kubernetes and Argo Rollouts schemas `kubectl apply` checks them against, the
Helm values by `helm install`, the screenshot by the README that shows it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from strategies.rollout_file import load_rollout_file
from tests.crds import validate
from tests.helm import template
from tests.helpers import REPO
from tests.test_chart_examples import _chart_analyses
from tests.test_serve_start import serving

EXAMPLES = REPO / "examples"
README = REPO / "README.md"
COMMANDS = {
    "standalone/canary.yaml": "verdict canary run --config examples/standalone/canary.yaml",
    "standalone/bluegreen.yaml": "verdict canary run --config examples/standalone/bluegreen.yaml",
    "standalone/rolling.yaml": "verdict canary run --config examples/standalone/rolling.yaml",
    "argo/analysis.yaml": "verdict serve --config examples/argo/",
    "argo/bluegreen-analyses.yaml": "helm install verdict charts/verdict -f",
    "argo/cluster-analysis-template.yaml": "kubectl apply -f",
    "argo/rollout.yaml": "kubectl apply -f",
    "argo/controller-rollout.yaml": "kubectl apply -f",
    "argo/rollout-canary-istio.yaml": "kubectl apply -f",
    "argo/rollout-bluegreen.yaml": "kubectl apply -f",
    "report/screenshot.png": "![",
}
"""Each example (its path under examples/) and the command the README names beside it."""


def _paragraphs() -> list[str]:
    """The README's paragraphs (and code blocks), each as one line of single spaces."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", README.read_text())]


def test_every_example_has_a_readme_line_naming_its_command() -> None:
    found = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file()}
    assert found == set(COMMANDS), "an example without a command, or a command without a file"
    paragraphs = _paragraphs()
    for example, command in COMMANDS.items():
        assert any(f"examples/{example}" in text and command in text for text in paragraphs), (
            f"no README paragraph names examples/{example} with `{command}`"
        )


@pytest.mark.parametrize("example", [e for e, c in COMMANDS.items() if "canary run" in c])
def test_canary_run_accepts_the_standalone_example(example: str, tmp_path: Path) -> None:
    path = EXAMPLES / example
    file = load_rollout_file(path)
    assert file.rollout.strategy in ("canary", "blueGreen", "rolling")
    # the command itself takes the file and stops only where the cluster starts
    result = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "canary", "run", "--config", str(path),
         "--kubeconfig", str(tmp_path / "no-cluster"),
         "--store", f"sqlite:///{tmp_path / 'runs.sqlite'}"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"--kubeconfig: cannot read kubeconfig {tmp_path / 'no-cluster'}" in " ".join(
        result.stderr.split()
    )


def test_serve_accepts_the_argo_folder(tmp_path: Path) -> None:
    import httpx

    with serving(tmp_path, EXAMPLES / "argo") as (_, url, _log):
        document = httpx.get(f"{url}/openapi.json", timeout=5).json()
    served = document["components"]["schemas"]["VerdictRequest"]["properties"]["analysis"]
    assert served.get("enum") == ["checkout"], served


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("example", [e for e, c in COMMANDS.items() if c == "kubectl apply -f"])
def test_the_manifests_are_valid_kubernetes_and_argo_objects(example: str) -> None:
    documents = _documents(EXAMPLES / example)
    assert documents
    crds = {
        "Rollout": "rollout-crd.yaml",
        "ClusterAnalysisTemplate": "cluster-analysis-template-crd.yaml",
        "AnalysisTemplate": "analysis-template-crd.yaml",
    }
    for document in documents:
        kind = document["kind"]
        if kind in crds:
            validate(document, crds[kind])
        elif document["apiVersion"].startswith("networking.istio.io/"):
            assert document["spec"]["http"], document  # checked against its Rollout elsewhere
        else:
            kubernetes_validate.validate(
                document, kubernetes_validate.latest_version(), strict=True
            )


def test_helm_install_accepts_the_blue_green_analyses(tmp_path: Path) -> None:
    values = EXAMPLES / "argo" / "bluegreen-analyses.yaml"
    objects = template(extra=("-f", str(values)))
    served = _chart_analyses(objects, tmp_path / "analyses")
    assert served == sorted(yaml.safe_load(values.read_text())["analyses"])


def test_the_readme_shows_the_report_screenshot() -> None:
    png = EXAMPLES / "report" / "screenshot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"!\[[^\]]+\]\(examples/report/screenshot\.png\)", README.read_text())
