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
