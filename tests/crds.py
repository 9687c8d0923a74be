"""The Argo Rollouts CRD schemas kept with the tests, as strict JSON Schemas.

`crd_schema("rollout-crd.yaml")` is the CRD's `openAPIV3Schema` made strict (see `strict`);
`validate(document, crd_file)` raises AssertionError listing every problem; `problems(...)`
returns them. The Kubernetes API test server (`tests/kube_server.py`) validates every Argo object
written with these.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import REPO

# byte copies of Argo Rollouts' CRDs (provenance in SOURCE.md there)
CRDS = REPO / "tests" / "data" / "argo-rollouts"
CRD_FILES = {
    "Rollout": "rollout-crd.yaml",
    "AnalysisRun": "analysis-run-crd.yaml",
    "AnalysisTemplate": "analysis-template-crd.yaml",
    "ClusterAnalysisTemplate": "cluster-analysis-template-crd.yaml",
}


ARGO_CD_APPLICATION = REPO / "tests" / "data" / "argo-cd" / "application-crd.yaml"
"""Argo CD's `Application` CRD, a byte copy (provenance in SOURCE.md there)."""


def crd_dir() -> Path:
    if not (CRDS / "cluster-analysis-template-crd.yaml").exists():
        pytest.fail(f"the Argo Rollouts CRDs are not in {CRDS}")
    return CRDS


def strict(schema: Any) -> Any:
    """An openAPIV3Schema as JSON Schema: int-or-string fields accept both; objects that list
    their properties (and do not preserve unknown fields) reject unknown keys, so a typo fails
    here instead of being pruned by the API server."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in [k for k in out if k.startswith("x-kubernetes-")]:
        out.pop(key)
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_schema(crd_file: str) -> dict[str, Any]:
    crd = yaml.safe_load((crd_dir() / crd_file).read_text())
    return dict(strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))


@functools.cache
def application_schema() -> dict[str, Any]:
    """Argo CD's `Application` schema (argoproj.io/v1alpha1), strict as `crd_schema`."""
    if not ARGO_CD_APPLICATION.exists():
        pytest.fail(f"the Argo CD Application CRD is not at {ARGO_CD_APPLICATION}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the file is 400 kB
    crd = yaml.load(ARGO_CD_APPLICATION.read_text(), Loader=loader)
    return dict(strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))


def problems(document: dict[str, Any], crd_file: str) -> list[str]:
    """Every way `document` breaks the CRD's schema, as `path: message` lines."""
    validator = jsonschema.Draft7Validator(crd_schema(crd_file))
    found = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])
    return [f"{list(p.path)}: {p.message}" for p in found]


def validate(document: dict[str, Any], crd_file: str) -> None:
    found = problems(document, crd_file)
    assert not found, "\n".join(found)
