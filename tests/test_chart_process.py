"""The chart's wiring is real, not only well-formed: the rendered Deployment, started as a local
process, answers /readyz and gives Argo Rollouts a verdict.

The container is taken from `helm template` as is: the Dockerfile's ENTRYPOINT with the rendered
args, the rendered environment (values, Secret references resolved from the rendered Secrets), and
every volume the pod mounts mapped to a temporary folder holding what Kubernetes would put there
(the analyses ConfigMap's files, the token Secret's items, empty folders for the claim and
emptyDirs). Only what a laptop cannot be is changed: the listening port (a free one), the address
(loopback) and `$(VAR)` references expanded as the kubelet does. Controller mode is off (there is
no Kubernetes API here). Prometheus is the real one of the test fixtures; the request is the
rendered ClusterAnalysisTemplate's metric, evaluated as Argo does (tests/argo_client.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.argo_client import FAILED, SUCCESSFUL, WebMetric
from tests.conftest import PrometheusServer, free_port
from tests.helm import template
from tests.helpers import scenario_analysis, stop_process
from tests.test_chart_image import final_stage

pytestmark = pytest.mark.prometheus

SCENARIOS = ("healthy", "error-regression")


@dataclass(frozen=True)
class Pod:
    """The rendered objects and the local stand-ins for what the kubelet would provide."""

    objects: list[dict[str, Any]]
    root: Path

    def find(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
        return found[0]

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.find("Deployment")["spec"]["template"]["spec"])

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.spec["containers"][0])

    def secret_value(self, name: str, key: str) -> str:
        return base64.b64decode(self.find("Secret", name)["data"][key]).decode()

    def volume_dirs(self) -> dict[str, Path]:
        """mountPath -> a local folder with the volume's content."""
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        out: dict[str, Path] = {}
        for mount in self.container["volumeMounts"]:
            volume = volumes[mount["name"]]
            folder = self.root / "volumes" / mount["name"]
            folder.mkdir(parents=True)
            if "configMap" in volume:
                data = self.find("ConfigMap", volume["configMap"]["name"])["data"]
                for key, text in data.items():
                    (folder / key).write_text(text)
            elif "secret" in volume:
                source = self.find("Secret", volume["secret"]["secretName"])["data"]
                for item in volume["secret"].get("items") or [
                    {"key": k, "path": k} for k in source
                ]:
                    (folder / item["path"]).write_bytes(base64.b64decode(source[item["key"]]))
            else:
                assert "persistentVolumeClaim" in volume or "emptyDir" in volume, volume
            out[mount["mountPath"]] = folder
        return out

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for entry in self.container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
                continue
            source = entry["valueFrom"]
            if "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                env[entry["name"]] = {
                    "metadata.name": "verdict-7d9f8c6b5-abcde",
                    "metadata.namespace": self.find("Deployment")["metadata"]["namespace"],
                }[field]
            else:
                ref = source["secretKeyRef"]
                env[entry["name"]] = self.secret_value(ref["name"], ref["key"])
        return env


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in container args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def _command(pod: Pod, port: int, mounts: dict[str, Path]) -> list[str]:
    entrypoint = json.loads(next(rest for k, rest in reversed(final_stage()) if k == "ENTRYPOINT"))
    program = Path(sys.executable).parent / entrypoint[0]  # the console script pip installed
    env = pod.environment()
    args = [_expand(a, env) for a in pod.container["args"]]
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    # one pass, longest mount path first, so a replaced folder is never replaced again
    paths = sorted(mounts, key=len, reverse=True)
    pattern = re.compile("(" + "|".join(re.escape(p) for p in paths) + ")(?=/|$)")
    args = [pattern.sub(lambda m: str(mounts[m.group(1)]), a) for a in args]
    return [str(program), *entrypoint[1:], *args]


@contextlib.contextmanager
def _started(pod: Pod) -> Iterator[str]:
    mounts = pod.volume_dirs()
    port = free_port()
    command = _command(pod, port, mounts)
    workdir = next(rest for k, rest in reversed(final_stage()) if k == "WORKDIR")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(pod.root), **pod.environment()}
    log = pod.root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=mounts.get(workdir, pod.root),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, pod, process, log)
        yield url
    finally:
        stop_process(process)


def _wait_ready(url: str, pod: Pod, process: subprocess.Popen[bytes], log: Path) -> None:
    probe = pod.container["readinessProbe"]["httpGet"]
    assert probe["port"] == pod.container["ports"][0]["name"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"verdict serve exited {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + probe["path"], timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{probe['path']} never answered 200:\n{log.read_text()}")


def _analyses(prometheus: PrometheusServer) -> dict[str, Any]:
    # no prometheus.url in the files: the chart's prometheus.url serves every analysis
    return {name: scenario_analysis(name, prometheus.scenarios[name]) for name in SCENARIOS}


def _argo_metric(pod: Pod, url: str, scenario: str, start: str) -> WebMetric:
    """The rendered template's metric with its args filled in as Argo would for a Rollout."""
    template_ = pod.find("ClusterAnalysisTemplate")
    args: dict[str, str] = {}
    for arg in template_["spec"]["args"]:
        if "value" in arg:
            args[arg["name"]] = arg["value"]
        elif "valueFrom" in arg:
            ref = arg["valueFrom"]["secretKeyRef"]
            args[arg["name"]] = pod.secret_value(ref["name"], ref["key"])
    args.update(
        {
            "verdict-url": url,  # the Service's address, here the local port
            "analysis": scenario,
            "namespace": "shop",
            "rollout": "checkout",
            "canary-hash": "7d9f8c6b5",
            "stable-hash": "5c4b3a291",
        }
    )
    text = yaml.safe_dump(template_["spec"]["metrics"][0])
    text = re.sub(r"\{\{\s*args\.([a-z-]+)\s*\}\}", lambda m: args[m.group(1)], text)
    metric = WebMetric.from_template_metric(yaml.safe_load(text))
    # the scenarios' traffic lies in the past: the run starts there instead of at the first call
    return WebMetric(**{**metric.__dict__, "json_body": {**metric.json_body, "start": start}})


def test_the_rendered_deployment_answers_readyz_and_argo_gets_verdicts(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    objects = template(
        {
            "controller": {"enabled": False},
            "prometheus": {"url": prometheus.url},
            "analyses": _analyses(prometheus),
        }
    )
    pod = Pod(objects=objects, root=tmp_path)
    with _started(pod) as url:
        ready = httpx.get(url + "/readyz", timeout=5)
        alive = httpx.get(url + pod.container["livenessProbe"]["httpGet"]["path"], timeout=5)
        measured = {
            name: _argo_metric(
                pod, url, name, prometheus.scenarios[name].start.isoformat()
            ).measure()
            for name in SCENARIOS
        }
        unauthenticated = httpx.post(url + "/api/v1/verdict", json={}, timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert alive.status_code == 200
    assert measured["error-regression"].phase == FAILED, measured["error-regression"]
    assert json.loads(measured["error-regression"].value or "{}")["verdict"] == "fail"
    assert measured["healthy"].phase == SUCCESSFUL, measured["healthy"]
    assert json.loads(measured["healthy"].value or "{}")["verdict"] == "pass"
    assert unauthenticated.status_code == 401  # the generated token is really required
