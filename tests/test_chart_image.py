"""The top-level Dockerfile and the chart agree: the chart's default image is the one the
Dockerfile builds (name, version), and its user, port and entrypoint are the chart's. The image is
not built here (no container runtime); hadolint checks the Dockerfile against its rules."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.helm import CHART, template
from tests.helpers import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, rest = pending.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def _last(keyword: str) -> str:
    values = [rest for k, rest in final_stage() if k == keyword]
    assert values, f"the final stage has no {keyword}"
    return values[-1]


def labels() -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword, rest in final_stage():
        if keyword == "LABEL":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                out[key] = value
    return out


def _deployment_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def test_the_dockerfile_is_multi_stage_and_its_final_stage_runs_as_a_non_root_user() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(":" in image.split()[0] and not image.endswith(":latest") for image in froms)
    user = _last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies)  # no sources, only the venv


def test_the_chart_runs_the_dockerfile_image_user_port_and_entrypoint() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    image = labels()
    assert image["org.opencontainers.image.title"] == values["image"]["repository"]
    assert image["org.opencontainers.image.version"] == chart["appVersion"] == project["version"]

    objects = template()
    container = _deployment_container(objects)
    assert container["image"] == f"{values['image']['repository']}:{chart['appVersion']}"

    uid, _, gid = _last("USER").partition(":")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod_context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (pod_context["runAsUser"], pod_context["runAsGroup"]) == (int(uid), int(gid))
    assert pod_context["runAsNonRoot"] is True

    (exposed,) = _last("EXPOSE").split()
    port = container["ports"][0]["containerPort"]
    assert int(exposed.split("/")[0]) == port
    args = container["args"]
    assert args[args.index("--port") + 1] == str(port)

    entrypoint = json.loads(_last("ENTRYPOINT"))
    assert entrypoint == ["verdict"]
    assert "command" not in container  # the chart's args run under the image's ENTRYPOINT
    assert "verdict" in project["scripts"]  # and the entrypoint is the project's command
    workdir = _last("WORKDIR")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert workdir in mounts  # the working folder is writable under a read-only root


def test_the_image_holds_what_the_package_needs_and_nothing_else() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything is excluded unless listed
    kept = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        rest.split()[0].rstrip("/")
        for keyword, rest in instructions()
        if keyword == "COPY" and not rest.startswith("--from=")
    }
    copied = {name for c in copied for name in c.split()}
    assert {"analyzer", "metrics", "strategies"} <= kept & copied
    assert "tests" not in kept and "benchmarks" not in kept
    assert packages - kept == {"benchmarks"}  # benchmarks stay out of the image


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_root_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text()
    bad.write_text(re.sub(r"^USER .*$", "USER root", text, flags=re.MULTILINE))
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3002" in done.stdout
