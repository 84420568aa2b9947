"""`hqx archive inspect`: same parser offline, one-line errors, exact JSON summary."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.ingest.inspect import main
from tests.factories.archives import ArchiveSpec, build_archive, hostile_corpus


def _sha(ids: list[int]) -> str:
    return hashlib.sha256("\n".join(map(str, sorted(ids))).encode()).hexdigest()


def test_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ArchiveSpec(following=[2**60 + 3, 12], follower=[99, 2**62, 5], nested="x", bom=True)
    path = tmp_path / "twitter.zip"
    path.write_bytes(build_archive(spec))
    assert main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "owner": {"account_id": spec.owner_id, "username": spec.username},
        "following_count": 2,
        "follower_count": 3,
        "following_sha256": _sha(spec.following),
        "follower_sha256": _sha(spec.follower),
    }


def test_hostile_archive_is_one_line_without_traceback(tmp_path: Path) -> None:
    data, code = hostile_corpus()["symlink"]
    path = tmp_path / "evil.zip"
    path.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "services.ingest.inspect", str(path), "--json"],
        capture_output=True, text=True, check=False, cwd=Path(__file__).parents[3],
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"rejected: {code.value}: ")
    assert "Traceback" not in proc.stderr


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.zip")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot read")
