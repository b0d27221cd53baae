"""Session fixtures: one tiny synthetic world, served for real (HTTP Range server + pgstac STAC API)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnisat_data.world.config import PRESETS
from omnisat_data.world.make import make_world, plan_world


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
    from omnisat_data.serve.world import WorldServers

    with WorldServers(world) as s:
        yield s
