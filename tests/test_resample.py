"""Point resampling: exact at pixel centres, linear in between, never part nodata; reads cost no extra blocks."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from omnisat_data.build.sentinel import plan_reads
from omnisat_data.geo.grid import Grid
from omnisat_data.geo.resample import Window, bilinear, centres_in, nearest, support


def test_bilinear_is_exact_on_centres_and_linear_between():
    rows, cols = np.mgrid[0:5, 0:7].astype(float)
    plane = (3 * cols - 2 * rows + 1)[None]  # a linear ramp: bilinear must reproduce it everywhere inside
    c = np.array([0.5, 3.5, 1.25, 6.0, 2.9])
    r = np.array([0.5, 2.5, 3.75, 1.0, 0.6])
    np.testing.assert_allclose(bilinear(plane, c, r)[0], 3 * (c - 0.5) - 2 * (r - 0.5) + 1, atol=1e-12)


def test_bilinear_is_nan_when_any_neighbour_is_nodata_or_outside():
    data = np.ones((1, 4, 4))
    data[0, 1, 1] = np.nan
    out = bilinear(data, np.array([1.2, 2.9, 0.2, 3.6]), np.array([1.2, 2.9, 3.0, 1.0]))[0]
    assert np.isnan(out[0]) and out[1] == 1.0 and np.isnan(out[2]) and np.isnan(out[3])


def test_nearest_takes_the_containing_pixel():
    data = np.arange(16.0).reshape(1, 4, 4)
    assert nearest(data, np.array([0.99, 1.0, 3.99]), np.array([0.0, 2.5, 3.2]))[0].tolist() == [0.0, 9.0, 15.0]


def test_support_is_the_pixels_bilinear_touches():
    c, r = np.array([[2.5, 3.2]]), np.array([[4.5, 4.7]])
    assert support(c, r, "bilinear", (100, 100)) == Window(row=4, col=2, height=2, width=2)
    assert support(c, r, "nearest", (100, 100)) == Window(row=4, col=2, height=1, width=2)
    assert support(c + 500, r, "bilinear", (100, 100)) is None


def test_tile_centres_land_on_scene_pixels_across_crs():
    tile = Grid.from_origin("EPSG:25832", 400100.0, 5383700.0, 10.0, (6, 6))
    x, y = centres_in(tile, "EPSG:32632")  # ETRS89 vs WGS84 UTM 32N: equal to about 0.1 mm
    cols, rows = Grid("EPSG:32632", Affine(10, 0, 400000.0, 0, -10, 5384000.0), (1, 1)).fractional_pixels(x, y)
    np.testing.assert_allclose(cols[0], np.arange(6) + 10.5, atol=1e-4)
    np.testing.assert_allclose(rows[:, 0], np.arange(6) + 30.5, atol=1e-4)


@pytest.mark.parametrize("spread,expected_reads", [(0, 1), (10, 1), (600, 2)])
def test_plan_reads_merges_only_when_it_costs_no_extra_blocks(spread, expected_reads):
    a = Window(10, 10, 4, 4)
    b = Window(10, 10 + spread, 4, 4)
    reads = plan_reads([a, b, None], (128, 128))
    assert len(reads) == expected_reads
    assert sorted(i for _, members in reads for i in members) == [0, 1]


def test_plan_reads_keeps_an_l_shape_apart():
    tall, wide = Window(0, 0, 300, 10), Window(0, 0, 10, 300)  # share block (0, 0); their box would need 9 blocks
    reads = plan_reads([tall, wide], (128, 128))
    assert [w for w, _ in reads] == [tall, wide]


def test_blocks_read_are_counted_against_the_footprint_minimum(tmp_path):
    """Uncompressed 64 px blocks of uint16 (8,192 bytes each): two tiles whose bilinear windows share a block
    are read as one window of the 2 blocks they need; a diagonal pair is read apart, 3 blocks."""
    import rasterio

    from omnisat_data.build.sentinel import BlockCount, _read_asset

    path = tmp_path / "band.tif"
    grid = Grid("EPSG:32632", Affine(10, 0, 400000.0, 0, -10, 5384000.0), (256, 256))
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint16", crs=grid.crs,
                       transform=grid.transform, tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(np.arange(256 * 256, dtype=np.uint16).reshape(1, 256, 256))
    cols, rows = np.meshgrid(np.arange(6) + 0.5, np.arange(6) + 0.5)
    with rasterio.open(path) as src:
        # windows cols 60-66 and 70-76, rows 10-16: blocks (0, 0), (0, 1) and (0, 1)
        values, count = _read_asset(src, grid, "bilinear", np.stack([cols + 60, cols + 70]), np.stack([rows + 10] * 2))
        assert count == BlockCount(read=2, minimum=2, read_bytes=2 * 8192, minimum_bytes=2 * 8192)
        np.testing.assert_array_equal(values[0], (rows + 10 - 0.5) * 256 + cols + 60 - 0.5)  # bilinear on a plane
        # blocks (0, 0), (0, 1) and (0, 1), (1, 1): their box would need 4 blocks for 3, so they are read apart
        _, count = _read_asset(src, grid, "nearest", np.stack([cols + 60, cols + 70]), np.stack([rows + 10, rows + 60]))
        assert count == BlockCount(read=3, minimum=3, read_bytes=3 * 8192, minimum_bytes=3 * 8192)


def test_plan_reads_never_merges_into_a_block_no_tile_needs():
    """5 blocks needed, their box holds 6: read apart (at production layout the sixth block is a whole MB)."""
    wide, corner = Window(10, 10, 4, 300), Window(10, 200, 200, 100)  # (0, 0-2) and (0-1, 1-2) of 128 px blocks
    reads = plan_reads([wide, corner], (128, 128))
    assert [w for w, _ in reads] == [wide, corner]
