"""Every command answers --help; the main job's demo path works on a small world."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [["--help"], ["world", "--help"], ["world", "make", "--help"], ["stac", "--help"],
            ["stac", "serve", "--help"], ["stac", "search", "--help"], ["demo", "--help"],
            ["build", "--help"], ["build", "treesatai", "--help"], ["build", "pastis-r", "--help"], ["build", "grid", "--help"],
            ["verify-alignment", "--help"]]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_data_cli_help(args):
    r = subprocess.run([sys.executable, "-m", "cli.data", *args], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage" in r.stdout


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["train", "pretrain", "--help"],
                                  ["train", "finetune", "--help"], ["train", "probe", "--help"],
                                  ["evaluate", "--help"], ["embed", "--help"]], ids=lambda a: " ".join(a))
def test_model_cli_help(args):
    r = subprocess.run([sys.executable, "-m", "cli.model", *args], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage" in r.stdout


def test_search_command_on_the_embedded_catalog(world):
    r = subprocess.run([sys.executable, "-m", "cli.data", "stac", "search", str(world / "stac" / "items.ndjson"),
                        "--collection", "sentinel-1-rtc", "--orbit-state", "ascending", "--limit", "1000"],
                       capture_output=True, text=True)
    assert r.returncode == 0
    ids = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert ids and all(i.startswith("S1A_IW_GRDH_1SDV_") for i in ids)
    import json

    truth = json.loads((world / "truth.json").read_text())
    assert set(ids) == {k for k, v in truth["s1"].items() if v["direction"] == "ascending"}


def test_world_make_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "something").write_text("x")
    r = subprocess.run([sys.executable, "-m", "cli.data", "world", "make", str(tmp_path), "--preset", "tiny"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is not empty" in r.stderr


def test_readme_states_the_compile_call_train_py_makes():
    """What the README says `--compile` does is the call in the trainer, letter for letter."""
    import re

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    code = (root / "omnisat_model" / "train.py").read_text()
    calls = re.findall(r"`(torch\.compile\([^`]*\))`", readme)
    assert calls and all(call in code for call in calls), calls


def test_demo_never_removes_a_folder_it_did_not_make(tmp_path):
    """DIR/world without world.json is the user's: refused in one line, left as it was."""
    keep = tmp_path / "world" / "my-notes.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    r = subprocess.run([sys.executable, "-m", "cli.data", "demo", str(tmp_path), "--no-train"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "not a demo world" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert keep.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["world"]
    partial = tmp_path / "other" / ".demo-world.partial"
    partial.mkdir(parents=True)
    (partial / "x").write_text("also mine")
    r = subprocess.run([sys.executable, "-m", "cli.data", "demo", str(tmp_path / "other"), "--no-train"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not made by the demo" in r.stderr and (partial / "x").read_text() == "also mine"
