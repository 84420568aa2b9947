"""deploy/ is yamllint-clean and the Dockerfile builds one non-root image from uv.lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from tests.deploy.manifests import DEPLOY, ROOT


def test_yamllint_is_clean() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "-s",
            "-f",
            "parsable",
            "-c",
            str(DEPLOY / ".yamllint.yaml"),
            str(DEPLOY),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_is_multi_stage_non_root_and_from_the_lock_file() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M)
    assert len(stages) >= 2
    runtime = text.split(f"AS {stages[-1][1]}", 1)[1]
    assert "uv sync --frozen --no-dev" in text

    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    # The same uv as `make install` and a Python the project accepts.
    make_uv = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert make_uv and f"UV_VERSION={make_uv[1]}" in text
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    image = re.search(r"PYTHON_IMAGE=python:(\d+)\.(\d+)", text)
    assert image and (int(image[1]), int(image[2])) >= tuple(
        int(x) for x in re.findall(r"\d+", requires)[:2]
    )
    ignored = (ROOT / ".dockerignore").read_text()
    assert "!uv.lock" in ignored and "!hqx/" in ignored and "!services/" in ignored
