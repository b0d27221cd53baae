"""Point resampling: exact at pixel centres, linear in between, never part nodata; reads touch each needed
block once and no other."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from omnisat_data.build.sentinel import footprint_blocks, plan_strips
from omnisat_data.geo.grid import Grid
from omnisat_data.geo.resample import bilinear, centres_in, centres_of, nearest, sample, support


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
    c, r = np.array([[[2.5, 3.2]]]), np.array([[[4.5, 4.7]]])  # one tile of 1 x 2 points
    assert support(c, r, "bilinear", (100, 100)).tolist() == [[4, 2, 6, 4]]
    assert support(c, r, "nearest", (100, 100)).tolist() == [[4, 2, 5, 4]]
    assert support(c + 500, r, "bilinear", (100, 100)).tolist() == [[0, 0, 0, 0]]  # outside: empty


def test_support_is_the_box_of_every_pixel_the_method_reads():
    """Against a brute force: the pixels bilinear (the two centres on each side) or nearest (the one holding
    the point) reads for every point of a tile, inside the raster, and their bounding box. Tiles as the
    builds make them: 6 x 6 lattices of pixel centres, up to a pixel apart, turned a little (a scene in
    another UTM zone), anywhere over and across the raster's edges."""
    rng = np.random.default_rng(0)
    jj, ii = np.meshgrid(np.arange(6.0), np.arange(6.0))
    angle, step = rng.uniform(-0.05, 0.05, (60, 1, 1)), rng.uniform(0.5, 1.0, (60, 1, 1))
    x0, y0 = rng.uniform(-8, 44, (60, 1, 1)), rng.uniform(-8, 40, (60, 1, 1))
    cols = x0 + step * (np.cos(angle) * jj - np.sin(angle) * ii)
    rows = y0 + step * (np.sin(angle) * jj + np.cos(angle) * ii)
    for method, offsets in (("bilinear", (0, 1)), ("nearest", (0,))):
        shift = 0.5 if method == "bilinear" else 0.0
        for i, got in enumerate(support(cols, rows, method, (37, 41)).tolist()):
            r = [int(np.floor(v - shift)) + o for v in rows[i].ravel() for o in offsets]
            c = [int(np.floor(v - shift)) + o for v in cols[i].ravel() for o in offsets]
            r, c = [v for v in r if 0 <= v < 37], [v for v in c if 0 <= v < 41]
            want = [min(r), min(c), max(r) + 1, max(c) + 1] if r and c else [0, 0, 0, 0]
            assert got == want, (method, i)


def test_tile_centres_land_on_scene_pixels_across_crs():
    tile = Grid.from_origin("EPSG:25832", 400100.0, 5383700.0, 10.0, (6, 6))
    x, y = centres_in(tile, "EPSG:32632")  # ETRS89 vs WGS84 UTM 32N: equal to about 0.1 mm
    cols, rows = Grid("EPSG:32632", Affine(10, 0, 400000.0, 0, -10, 5384000.0), (1, 1)).fractional_pixels(x, y)
    np.testing.assert_allclose(cols[0], np.arange(6) + 10.5, atol=1e-4)
    np.testing.assert_allclose(rows[:, 0], np.arange(6) + 30.5, atol=1e-4)


def _rect_blocks(rects, block):
    bh, bw = block
    return [(r, c) for r0, r1, c0, c1 in rects
            for r in range(r0 // bh, -(-r1 // bh)) for c in range(c0 // bw, -(-c1 // bw))]


def _windows(*rects):
    return np.array([[r0, c0, r0 + h, c0 + w] for r0, c0, h, w in rects], dtype=np.int64)


@pytest.mark.parametrize("windows", [
    _windows((10, 10, 4, 4), (10, 20, 4, 4)),  # two tiles in one block
    _windows((10, 10, 4, 4), (10, 610, 4, 4)),  # apart
    _windows((0, 0, 300, 10), (0, 0, 10, 300)),  # an L: its box would hold 9 blocks for 5
    _windows((10, 10, 4, 300), (10, 200, 200, 100)),  # 5 blocks needed, their box holds 6
    _windows((120, 120, 16, 16), (250, 5, 8, 8), (0, 0, 0, 0)),  # a corner of 4 blocks; a tile outside
])
def test_strips_read_each_needed_block_once_and_no_other(windows):
    block, shape = (128, 128), (1000, 1000)
    strips = plan_strips(windows, footprint_blocks(windows, block), block, shape)
    read = _rect_blocks([r for s in strips for r in s.rects], block)
    assert sorted(read) == sorted(footprint_blocks(windows, block))  # each needed block once, no other
    inside = [i for i, w in enumerate(windows) if w[2] > w[0]]
    assert sorted(i for s in strips for i in s.tiles) == inside  # every tile sampled once
    for s in strips:
        for i in s.tiles:  # sampled in the strip holding its last row, the rows above it kept until then
            assert s.top < windows[i, 2] <= s.bottom
        later = [i for t in strips if t.top > s.top for i in t.tiles]
        assert all(windows[i, 0] >= s.keep for i in later)


def test_strips_span_short_blocks():
    windows = _windows((3, 0, 4, 4), (300, 0, 4, 4))
    strips = plan_strips(windows, footprint_blocks(windows, (16, 512)), (16, 512), (1000, 512))  # 16-row blocks
    assert [(s.top, s.bottom) for s in strips] == [(0, 256), (256, 512)]  # STRIP_ROWS at once, not 16
    assert [s.rects for s in strips] == [((0, 16, 0, 512),), ((288, 304, 0, 512),)]


def test_strip_reads_give_what_sampling_the_whole_raster_gives(tmp_path, monkeypatch):
    """Tiles straddling block rows and columns, near the edges, over nodata, read through small blocks in
    many strips: every value equals sampling the whole raster at once (float64, nodata as NaN)."""
    import rasterio

    from omnisat_data.build import sentinel

    monkeypatch.setattr(sentinel, "STRIP_ROWS", 16)
    rng = np.random.default_rng(3)
    path = tmp_path / "band.tif"
    grid = Grid("EPSG:32632", Affine(10, 0, 400000.0, 0, -10, 5384000.0), (150, 170))
    data = rng.integers(1, 5000, (150, 170)).astype(np.uint16)
    data[40:44, 60:90] = 0  # nodata
    with rasterio.open(path, "w", driver="GTiff", width=170, height=150, count=1, dtype="uint16", crs=grid.crs,
                       transform=grid.transform, tiled=True, blockxsize=16, blockysize=16, nodata=0) as dst:
        dst.write(data[None])
    cc, rr = np.meshgrid(np.arange(6) + 0.5, np.arange(6) + 0.5)
    offsets = rng.uniform(-4, 168, (60, 2))
    cols, rows = cc[None] + offsets[:, :1, None], rr[None] + offsets[:, 1:, None] * 150 / 170
    whole = np.where(data == 0, np.nan, data.astype(np.float64))[None]
    with rasterio.open(path) as src:
        for method in ("bilinear", "nearest"):
            values, count = sentinel._read_asset(src, grid, method, cols, rows)
            want = np.stack([sample(whole, cols[i], rows[i], method)[0] for i in range(60)])
            np.testing.assert_array_equal(values, want)
            assert count.read == count.minimum == len(footprint_blocks(support(cols, rows, method, (150, 170)),
                                                                        (16, 16)))


def test_blocks_read_are_counted_against_the_footprint_minimum(tmp_path):
    """Uncompressed 64 px blocks of uint16 (8,192 bytes each): two tiles whose bilinear windows share a block
    read the 2 blocks they need; a diagonal pair, the 3 they need (their box would hold 4)."""
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
        # blocks (0, 0), (0, 1) and (0, 1), (1, 1): 3 read, not the 4 of their box
        _, count = _read_asset(src, grid, "nearest", np.stack([cols + 60, cols + 70]), np.stack([rows + 10, rows + 60]))
        assert count == BlockCount(read=3, minimum=3, read_bytes=3 * 8192, minimum_bytes=3 * 8192)


def test_centres_of_many_grids_are_each_grids_centres():
    grids = [Grid.from_origin("EPSG:25832", 400100.0 + 70 * k, 5383700.0 - 30 * k, 10.0, (6, 6)) for k in range(5)]
    grids.append(Grid.from_origin("EPSG:32633", 250000.0, 5383700.0, 10.0, (6, 6)))
    x, y = centres_of(grids, "EPSG:32632")
    for k, g in enumerate(grids):
        gx, gy = centres_in(g, "EPSG:32632")
        assert np.array_equal(x[k], gx) and np.array_equal(y[k], gy)  # the same numbers, bit for bit
