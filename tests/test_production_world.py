"""The production-layout world of the cloud benchmarks, at 1/16 of the side: its COGs are laid out as
Planetary Computer's (blocks, predictor, overviews, types, grids), and the build reads it over HTTP Range
touching only the blocks the tiles need, with the values GDAL's own bilinear warp gives."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import build_cloud  # noqa: E402
import production_world  # noqa: E402

from omnisat_data.formats.treesatai_ts import S2_BANDS  # noqa: E402
from omnisat_data.sim.serve.assets import AssetServer  # noqa: E402
from omnisat_data.sim.serve.world import rewrite_items  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("production") / "world"
    production_world.make(root, dates=2, cells=1, per_cell=25, scale=16, workers=2)
    return root


def _structure(path: Path) -> tuple:
    with rasterio.open(path) as ds:
        return (ds.dtypes[0], ds.shape, ds.block_shapes[0], ds.compression.name, ds.tags(ns="IMAGE_STRUCTURE")
                .get("PREDICTOR"), len(ds.overviews(1)) > 0, ds.nodata, ds.transform)


def test_the_layout_is_planetary_computers_at_a_sixteenth(small):
    layout = production_world.Layout(16)
    scene = production_world.s2_scenes(layout, 1)[0]
    folder = small / "data" / "sentinel-2-l2a" / scene.item_id
    side, block = layout.s2_side, layout.s2_block
    assert (side, block) == (686, 64)
    assert _structure(folder / "B02.tif")[:7] == ("uint16", (side, side), (block, block), "deflate", "2", True, 0)
    assert _structure(folder / "B11.tif")[:3] == ("uint16", (side // 2, side // 2), (block, block))
    assert _structure(folder / "SCL.tif")[:2] == ("uint8", (side // 2, side // 2))
    s1 = production_world.s1_scenes(layout)[0]
    dtype, shape, blocks, compress, predictor, overviews, nodata, transform = _structure(
        small / "data" / "sentinel-1-rtc" / s1.item_id / "vv.tif")
    assert (dtype, shape, blocks, predictor, nodata) == ("float32", (809, 1720), (32, 32), "3", -32768.0)
    assert transform.c % 10 and transform.f % 10  # its own grid, off the Sentinel-2 lattice
    items = build_cloud.series_items(build_cloud.load_items(small / "stac" / "items.ndjson"))
    assert sorted(items["s2"][0].assets) == sorted([*S2_BANDS, "SCL"])  # as Planetary Computer: no SNW / CLD
    assert [len(items[s]) for s in ("s2", "s1-asc", "s1-des")] == [2, 1, 1]
    assert all(i.id.endswith("_rtc") for i in items["s1-asc"] + items["s1-des"])


def test_the_build_reads_the_minimum_blocks_and_warps_as_gdal(small, tmp_path):
    with AssetServer(small) as server:
        items = rewrite_items(small / "stac" / "items.ndjson", server.url, tmp_path / "items.ndjson")
        result = build_cloud.run_ours(small, items, tmp_path / "out", workers=0)
        assert server.counters.requests > 0
    assert result["failed"] == 0 and result["tile_dates"] == 25 * (2 + 1 + 1)
    assert result["blocks_read"] == result["blocks_minimum"] > 0
    scene = production_world.s2_scenes(production_world.Layout(16), 2)[1]
    for tile in build_cloud.tiles_of(small):
        with h5py.File(tmp_path / "out" / "sentinel" / f"{tile.name}.h5", "r") as f:
            ours = f["sen-2-data"][1]  # the second date; baseline 04.00: the build removed the 1000 DN offset
        for k, band in enumerate(S2_BANDS):
            with rasterio.open(small / "data" / "sentinel-2-l2a" / scene.item_id / f"{band}.tif") as src:
                want = np.zeros(tile.sentinel.shape, np.float32)
                reproject(rasterio.band(src, 1), want, dst_transform=tile.sentinel.transform,
                          dst_crs=tile.sentinel.rio_crs, resampling=Resampling.bilinear)
            np.testing.assert_allclose(ours[k].astype(np.float32) + 1000, np.round(want), atol=1, err_msg=band)


def test_a_block_that_groups_share_is_read_once(small, tmp_path):
    # 500 m groups: the cell's 25 tiles in many groups, neighbours sharing blocks (640 m at 10 m, 1.28 km at
    # 20 m); the scene is opened once for all of them, so the build reads each needed block once
    with AssetServer(small) as server:
        items = rewrite_items(small / "stac" / "items.ndjson", server.url, tmp_path / "items.ndjson")
        result = build_cloud.run_ours(small, items, tmp_path / "out", workers=2, group_size_m=500)
    distinct, _ = build_cloud.physical_minimum(small, tmp_path / "out", items)
    per_group, _ = build_cloud.physical_minimum(small, tmp_path / "out", items, distinct=False)
    assert per_group > distinct * 1.2  # the groups do share blocks: one read per group would read more
    assert result["failed"] == 0 and result["blocks_read"] == distinct
