"""A full disk (ENOSPC) on a real small filesystem (a tmpfs mounted for the test): the build and the
training run stop with one line naming the file, leave no temporary file behind, and the same command
resumes once there is room again, to the same files as a build that never ran out of space."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMINGS = {"build-report.json"}  # holds seconds


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {r.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def grow(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in TIMINGS}


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".omnisat-" in p.name or p.name.endswith(".tmp")]


def test_a_full_disk_stops_the_build_in_one_line_and_the_rerun_resumes(world, built, small_disk):
    out = small_disk / "out"
    command = [sys.executable, "-m", "cli.data", "build", "treesatai", "--source", str(world / "sources" / "treesatai"),
               "--recipe", "recipes/demo.toml", "--catalog", str(world / "stac" / "items.ndjson"),
               "--out", str(out), "--workers", "0"]
    r = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on device writing " + str(out) in errors[0], r.stderr
    assert "run the same command again" in errors[0] and "Traceback" not in r.stderr
    assert temporaries(small_disk) == []
    grow(small_disk)
    r = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert digests(out) == digests(built[0])


def test_a_full_disk_stops_training_in_one_line_and_resume_goes_on(built, small_disk):
    out = small_disk / "run"
    command = [sys.executable, "-m", "cli.model", "train", "finetune", "--data", str(built[0]), "--out", str(out),
               "--model", "treesatai-ts-small", "--modalities", "s2", "--batch-size", "4", "--device", "cpu",
               "--epochs", "1"]
    r = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "no space left on device writing " + str(out) in r.stderr, (
        r.stderr
    )
    assert "--resume" in r.stderr and temporaries(small_disk) == []
    grow(small_disk)
    r = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (out / "last.pt").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 1
