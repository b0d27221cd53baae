"""Every command answers --help; the main job's demo path works on a small world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    ["--help"],
    ["world", "--help"],
    ["world", "make", "--help"],
    ["stac", "--help"],
    ["stac", "serve", "--help"],
    ["stac", "search", "--help"],
    ["demo", "--help"],
    ["build", "--help"],
    ["build", "treesatai", "--help"],
    ["build", "pastis-r", "--help"],
    ["build", "grid", "--help"],
    ["verify-alignment", "--help"],
]


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
    # truth is keyed by ESA product; Planetary Computer's RTC ids drop its unique id and end in _rtc
    assert set(ids) == {k.rsplit("_", 1)[0] + "_rtc" for k, v in truth["s1"].items() if v["direction"] == "ascending"}


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
    code = (root / "omnisat_train" / "train.py").read_text()
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


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args, needle", [
    (["-m", "cli.data", "build", "grid", "--recipe", "recipes/grid-demo.toml", "--out", "{tmp}/o", "--bbox",
      "7.6,48.58,7.61,48.59", "--tile-size", "0m"], "tile size 0"),
    (["-m", "cli.data", "build", "grid", "--recipe", "recipes/grid-demo.toml", "--out", "{tmp}/o", "--bbox",
      "7.6,48.58,7.61,48.59", "--limit", "-1"], "--limit"),
    (["-m", "cli.data", "build", "grid", "--recipe", "recipes/grid-demo.toml", "--out", "{tmp}/o", "--bbox",
      "7.0,48.0,8.0,49.0"], "--limit"),  # 3 million 60 m tiles: refused before any is made
    (["-m", "cli.data", "verify-alignment", "tests/data/treesatai-ts-sample", "--max-shift-px", "nan",
      "--report", "{tmp}/r.json"], "--max-shift-px"),
    (["-m", "cli.model", "train", "pretrain", "--data", "tests/data", "--out", "{tmp}/r", "--modalities", "s2"],
     "two modalities"),
])
def test_misuse_is_one_line(tmp_path, args, needle):
    r = subprocess.run([sys.executable, *[a.format(tmp=tmp_path) for a in args]], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()


def test_cuda_without_a_gpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from omnisat_train.train import TrainConfig, TrainError, setup

    with pytest.raises(TrainError, match="sees no GPU"):
        setup(TrainConfig(task="pretrain", data=tmp_path, out=tmp_path / "r", modalities=("s2", "s1-asc"),
                          device="cuda"))


def test_mixed_name_and_id_properties_name_every_tile(tmp_path):
    """pandas fills a missing property with NaN: a feature with only an `id` must not be named "nan"."""
    import json

    from omnisat_data.build.own_tiles import tiles_from_file

    def square(x, y):
        return [[x, y], [x + 60, y], [x + 60, y - 60], [x, y - 60], [x, y]]

    features = [
        {
            "type": "Feature",
            "properties": {"name": "first"},
            "geometry": {"type": "Polygon", "coordinates": [square(500000, 5400000)]},
        },
        {
            "type": "Feature",
            "properties": {"id": "second"},
            "geometry": {"type": "Polygon", "coordinates": [square(500200, 5400000)]},
        },
        {
            "type": "Feature",
            "properties": {"other": 1},
            "geometry": {"type": "Polygon", "coordinates": [square(500400, 5400000)]},
        },
    ]
    path = tmp_path / "t.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32632"}}}))
    own = tiles_from_file(path, 60.0, None, 0.2, 2022)
    assert [t.name for t in own.tiles] == ["first", "second", "tile_00002"] and own.problems == ()


def test_a_symlinked_source_file_is_copied_not_linked(tmp_path):
    from omnisat_data.io.atomic import place_copy

    outside = tmp_path / "elsewhere.tif"
    outside.write_bytes(b"pixels")
    link = tmp_path / "src" / "a.tif"
    link.parent.mkdir()
    link.symlink_to(outside)
    place_copy(link, tmp_path / "out" / "a.tif")
    placed = tmp_path / "out" / "a.tif"
    assert not placed.is_symlink() and placed.read_bytes() == b"pixels"


def test_workers_beyond_the_machine_are_capped():
    """`--workers 10000` once spawned one process per unit: a local pool holds at most two per core."""
    from omnisat_data.io.workers import executor, max_local_workers

    with executor(10_000) as pool:
        assert pool._max_workers == max_local_workers() <= 2 * (os.cpu_count() or 1)


def test_tree_digests_ignore_timings_only(tmp_path):
    """scripts/digest_tree.py, the byte-identity check of builds: a report's seconds do not count, a value does."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from digest_tree import digests

    a, b = tmp_path / "a", tmp_path / "b"
    for root, seconds in ((a, 1.5), (b, 9.0)):
        (root / "x").mkdir(parents=True)
        (root / "x" / "data.bin").write_bytes(b"\x00\x01")
        (root / "build-report.json").write_text(json.dumps({"done": 3, "seconds": seconds}))
    assert digests(a) == digests(b) and len(digests(a)) == 2
    (b / "build-report.json").write_text(json.dumps({"done": 4, "seconds": 9.0}))
    assert digests(a) != digests(b)


def test_train_options_are_training_config_fields():
    """The train commands' options are generated from TrainConfig: each names a field, with that field's type."""
    import dataclasses

    from cli.model import OPTIONS, _command
    from omnisat_train.train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(OPTIONS) <= fields
    params = _command("finetune").__signature__.parameters
    assert list(params) == ["config", *[f.name for f in dataclasses.fields(TrainConfig) if f.name in OPTIONS]]
    assert params["epochs"].annotation is int and params["lr"].annotation is float
    assert params["init"].annotation is Path and params["modalities"].annotation is str
