"""Reading a TreeSatAI tree into tiles: grids from the tifs, years, the Sentinel grid convention,
and bad input (unreadable tif, missing year, hostile names) isolated with a reason."""

from __future__ import annotations

import json
import shutil

import pytest

from omnisat_data.formats.treesatai import SourceError, read_treesatai
from omnisat_data.geo.grid import Grid
from omnisat_data.io.paths import safe_component


def test_one_tile_per_aerial_tif_with_its_grid_and_year(world, truth):
    source = read_treesatai(world / "sources" / "treesatai")
    expected = {name: (t["year"], Grid.from_dict(t["grid"])) for name, t in truth["treesatai_tiles"].items()}
    assert sorted(t.name for t in source.tiles) == sorted(expected) and not source.problems
    for tile in source.tiles:
        year, grid = expected[tile.name]
        assert tile.year == year
        assert tile.vhr.crs == "EPSG:25832" and tile.vhr.shape == (304, 304)
        # the archive's pixel-size quirk (0.2000000000001) is read as is and tolerated
        assert abs(tile.vhr.transform.a - 0.2) < 1e-9 and tile.vhr.transform.a != 0.2
        assert abs(tile.vhr.transform.c - grid.transform.c) < 1e-9
    assert set(source.splits) == {"train", "test"}
    assert all(name in source.labels for split in source.splits.values() for name in split)


def test_sentinel_pixel_covers_exactly_its_50_px_aerial_patch(world):
    for tile in read_treesatai(world / "sources" / "treesatai").tiles:
        s, a = tile.sentinel, tile.vhr
        assert s.shape == (6, 6) and s.res == (10.0, 10.0) and s.crs == a.crs
        for i in range(6):
            for j in range(6):
                for di, dj in ((0, 0), (1, 1)):  # upper-left and lower-right corners of pixel (i, j)
                    sx, sy = s.transform @ (j + dj, i + di)
                    ax, ay = a.transform @ (2 + 50 * (j + dj), 2 + 50 * (i + di))
                    assert abs(sx - ax) < 1e-6 and abs(sy - ay) < 1e-6


def test_bad_tiles_are_reported_and_the_others_kept(world, tmp_path):
    root = tmp_path / "treesatai"
    shutil.copytree(world / "sources" / "treesatai", root)
    tifs = sorted((root / "aerial" / "60m").glob("*.tif"))
    tifs[0].write_bytes(tifs[0].read_bytes()[:100])  # truncated
    footprints = root / "geojson" / "bb_60m.GeoJSON"
    doc = json.loads(footprints.read_text())
    dropped = tifs[1].name[:-4]
    doc["features"] = [f for f in doc["features"] if f["properties"]["IMG_ID"] != dropped]
    footprints.write_text(json.dumps(doc))

    source = read_treesatai(root)
    reasons = dict(source.problems)
    assert len(source.tiles) == len(tifs) - 2
    assert "cannot read the aerial tif" in reasons[str(tifs[0])]
    assert "no YEAR" in reasons[dropped]
    fallback = read_treesatai(root, year=2021)
    assert {t.name: t.year for t in fallback.tiles}[dropped] == 2021

    footprints.write_text("{not json")
    with pytest.raises(SourceError, match="bb_60m.GeoJSON"):
        read_treesatai(root)
    with pytest.raises(SourceError, match="no aerial tifs"):
        read_treesatai(tmp_path / "empty")


def test_hostile_names_stay_inside_their_folder(tmp_path):
    for hostile in ("../../x", "/etc/passwd", "a/../../b", "..\\..\\c", "x\0y"):
        name = safe_component(hostile)
        assert "/" not in name and "\\" not in name and "\0" not in name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert safe_component("Alnus_spec._5_13114_WEFL_NLF") == "Alnus_spec._5_13114_WEFL_NLF"
    assert safe_component("S1A_IW_GRDH_1SDV_20200103T170841") == "S1A_IW_GRDH_1SDV_20200103T170841"
    for empty in ("", ".", ".."):
        with pytest.raises(ValueError):
            safe_component(empty)
