"""Plan, then run: OUT/plan.json is written before any pixel is read, a resumed build reuses it instead of
searching again (and says so), a changed recipe, item file or --replan makes a new one; the dry run prints it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import recipe_for

from omnisat_data.build.plan import PLAN, Group, Unit, restrict
from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai, manifest_item_path
from omnisat_data.geo.grid import Grid
from omnisat_data.geo.tile import Tile
from omnisat_data.stac.acquisitions import Acquisition

ROOT = Path(__file__).resolve().parent.parent


def dataset_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("build-report.json", PLAN)}


@pytest.fixture()
def first(world, tmp_path):
    """A 3-tile build with its own copy of the item file (so that the test may change it)."""
    (tmp_path / "stac").mkdir()
    (tmp_path / "data").symlink_to(world / "data")  # the items' hrefs are relative: ../data/...
    items = tmp_path / "stac" / "items.ndjson"
    shutil.copy(world / "stac" / "items.ndjson", items)
    cfg = BuildConfig(world / "sources" / "treesatai", recipe_for(str(items)), tmp_path / "out", workers=0, limit=3)
    return cfg, build_treesatai(cfg), items


def forget(cfg: BuildConfig, stem: str) -> None:
    """Make one tile pending again, as a build killed before its manifest item leaves it."""
    manifest_item_path(cfg.out, stem).unlink()


def test_the_plan_is_written_and_a_resumed_build_reads_it_instead_of_searching(first):
    cfg, report, _ = first
    assert report.failed == {}
    plan = json.loads((cfg.out / PLAN).read_text())
    section = plan["sections"]["sentinel"]
    assert sorted(t for g in section["groups"] for t in g["tiles"]) == sorted(report.done) and len(report.done) == 3
    assert sum(len(g["units"]) for g in section["groups"]) == report.units > 0
    assert not report.plan["sentinel"].reused and report.searches == 2 * len(section["groups"])
    before = dataset_files(cfg.out)

    forget(cfg, report.done[1])
    again = build_treesatai(cfg)
    assert again.searches == 0 and again.done == [report.done[1]]  # read from the plan, not searched
    use = again.plan["sentinel"]
    assert use.reused and use.groups_reused == 1 and use.groups_searched == 0
    assert dataset_files(cfg.out) == before
    assert json.loads(json.dumps(again.to_dict()))["plan"]["sentinel"]["reused"] is True


def test_a_changed_recipe_or_item_file_or_replan_searches_again(first):
    cfg, report, items = first
    changed = dataclasses.replace(cfg, recipe=dataclasses.replace(
        cfg.recipe, s2=dataclasses.replace(cfg.recipe.s2, header_bytes=32768)))  # not a value field: tiles stay
    forget(cfg, report.done[0])
    again = build_treesatai(changed)
    assert again.searches > 0 and not again.plan["sentinel"].reused and again.done == [report.done[0]]
    assert "recipe" in again.plan["sentinel"].why_new

    items.write_text(items.read_text() + "\n")  # the same items, other bytes: the file may have changed
    forget(cfg, report.done[0])
    third = build_treesatai(changed)
    assert third.searches > 0 and not third.plan["sentinel"].reused

    forget(cfg, report.done[0])
    fourth = build_treesatai(dataclasses.replace(changed, replan=True))
    assert fourth.searches > 0 and fourth.plan["sentinel"].why_new == "--replan"

    forget(cfg, report.done[0])
    fifth = build_treesatai(changed)
    assert fifth.searches == 0 and fifth.plan["sentinel"].reused


def test_a_group_whose_search_failed_is_searched_again(first):
    cfg, report, _ = first
    plan = json.loads((cfg.out / PLAN).read_text())
    group = plan["sections"]["sentinel"]["groups"][0]
    group["units"], group["failed"] = [], {str(i): "search failed: HTTP 503" for i in range(len(group["tiles"]))}
    (cfg.out / PLAN).write_text(json.dumps(plan))
    forget(cfg, group["tiles"][0])
    again = build_treesatai(cfg)
    assert again.failed == {} and again.done == [group["tiles"][0]]
    assert again.plan["sentinel"].groups_searched == 1 and again.searches == 2


def test_the_dry_run_prints_the_plan_and_reads_a_saved_one(first):
    cfg, report, items = first
    command = [sys.executable, "-m", "cli.data", "build", "treesatai", "--source", str(cfg.source), "--recipe",
               str(ROOT / "recipes" / "demo.toml"), "--catalog", str(items), "--out", str(cfg.out), "--limit", "3",
               "--dry-run"]
    forget(cfg, report.done[2])
    before = (cfg.out / PLAN).read_bytes()
    r = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 already complete" in r.stdout and f"reused {cfg.out / PLAN}" in r.stdout, r.stdout
    assert (cfg.out / PLAN).read_bytes() == before and not manifest_item_path(cfg.out, report.done[2]).exists()


def test_acquisitions_survive_the_plan_file_and_groups_restrict_to_pending_tiles():
    when = dt.datetime(2022, 5, 3, 10, 30, 21, 24000, tzinfo=dt.UTC)
    acq = Acquisition("S2A_32UMU_20220503_0_L2A", "S2A_MSIL2A_20220503T103021_N0400_R108_T32UMU_20220503T183049",
                      "s2", when, (("B02", "https://x/B02.tif"), ("B03", "https://x/B03.tif")), -1000, "auto")
    back = Acquisition.from_dict(json.loads(json.dumps(acq.to_dict())))
    assert back == acq and back.sort_key == acq.sort_key

    grid = Grid.from_origin("EPSG:32632", 0, 60, 10, (6, 6))
    tiles = [Tile(name, grid, grid, 2022) for name in "abc"]
    group = Group("2022", tiles, 2022, [Unit(acq, (0, 2)), Unit(back, (1,)), Unit(acq, (0,))], {2: "why"})
    kept = restrict(group, {"b", "c"})
    assert [t.name for t in kept.tiles] == ["b", "c"]
    assert kept.units == [Unit(acq, (1,)), Unit(back, (0,))] and kept.failed == {1: "why"}  # tile a's unit gone


def test_groups_in_z_order_make_compact_patches():
    # the engine writes batches in group order: in Z-order every 4 consecutive cells of a 4 x 4 lattice
    # aligned on 4 form a 2 x 2 square (sorted by column, a 1 x 4 strip); negative cell indices too
    from omnisat_data.build.plan import z_order

    for origin in (0, -4, 8):
        cells = sorted(((c, r) for c in range(origin, origin + 4) for r in range(origin, origin + 4)),
                       key=lambda cell: z_order(*cell))
        for start in range(0, 16, 4):
            cols, rows = zip(*cells[start : start + 4])
            assert max(cols) - min(cols) == 1 and max(rows) - min(rows) == 1, cells[start : start + 4]
