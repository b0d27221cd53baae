"""Session fixtures: one tiny synthetic world, served for real (HTTP Range server + pgstac STAC API)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.make import make_world, plan_world

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """A command as a user runs it: `python -m cli.data ...` or `python -m cli.model ...` (args after -m)."""
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    """Bad input: exit code 2 and one line on stderr that says `needle`."""
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("worlds") / "tiny"
    make_world(root, PRESETS["tiny"], workers=2)
    return root


@pytest.fixture(scope="session")
def plan():
    return plan_world(PRESETS["tiny"])


@pytest.fixture(scope="session")
def truth(world) -> dict:
    return json.loads((world / "truth.json").read_text())


@pytest.fixture(scope="session")
def servers(world):
    from omnisat_data.sim.serve.world import WorldServers

    with WorldServers(world) as s:
        yield s


def recipe_for(catalog: str, **changes):
    """The demo recipe with every modality from `catalog` (and any field changed)."""
    import dataclasses

    from omnisat_data.recipe import load_recipe

    root = Path(__file__).resolve().parent.parent
    return dataclasses.replace(load_recipe(root / "recipes" / "demo.toml").with_catalog(catalog), **changes)


@pytest.fixture(scope="session")
def built(world, tmp_path_factory):
    """TreeSatAI-TS built from the tiny world through the embedded catalog: (folder, report)."""
    from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai

    out = tmp_path_factory.mktemp("build") / "treesatai-ts"
    cfg = BuildConfig(world / "sources" / "treesatai", recipe_for(str(world / "stac" / "items.ndjson")), out,
                      workers=0)
    return out, build_treesatai(cfg)
