"""Grid derivation as methods of the grid value: centred Sentinel grids, squares on the 10 m lattice,
lattice-aligned covers, lon/lat footprints (values worked out by hand)."""

from __future__ import annotations

import numpy as np
from affine import Affine

from omnisat_data.geo.grid import Grid


def test_centred_grid_of_a_real_treesatai_tile_has_no_float_noise():
    # the aerial grid as GDAL reads a real TreeSatAI tif: 0.2 m pixels written as 0.2000000000000455
    aerial = Grid("EPSG:25832", Affine(0.2000000000000455, 0, 412345.3, 0, -0.2000000000000455, 5512345.9),
                  (304, 304))
    s2 = aerial.centred((6, 6), 10.0)
    # centre (412345.3 + 30.4, 5512345.9 - 30.4); 6 x 10 m around it
    assert s2.transform == Affine(10.0, 0.0, 412345.7, 0.0, -10.0, 5512345.5) and s2.shape == (6, 6)
    assert s2.crs == aerial.crs


def test_a_square_is_centred_then_snapped_to_the_lattice():
    g = Grid.square("EPSG:32632", 500_004.0, 5_400_996.0, 1280.0, 1.0, 10.0)
    # left 500004 - 640 = 499364 -> 499360; top 5400996 + 640 = 5401636 -> 5401640
    assert g.transform == Affine(1.0, 0.0, 499360.0, 0.0, -1.0, 5401640.0) and g.shape == (1280, 1280)
    s = Grid.square("EPSG:32632", 500_004.0, 5_400_996.0, 1280.0, 10.0, 10.0)
    assert s.bounds == g.bounds and s.shape == (128, 128)


def test_covering_grid_is_aligned_to_its_cells():
    x, y = np.array([601.0, 1799.0, 1799.0, 601.0]), np.array([-59.0, -59.0, 61.0, 61.0])
    g = Grid.covering("EPSG:32632", x, y, 60.0)
    # x: floor(601/60)=10 -> 600, ceil(1799/60)=30 -> 1800; y: floor(-59/60)=-1 -> -60, ceil(61/60)=2 -> 120
    assert g.bounds == (600.0, -60.0, 1800.0, 120.0) and g.shape == (3, 20)


def test_lonlat_footprint_of_a_utm_grid():
    # the origin of UTM zone 32's central meridian (9 E) on the equator, 100 m square
    g = Grid.from_origin("EPSG:32632", 500_000.0, 100.0, 10.0, (10, 10))
    west, south, east, north = g.lonlat_footprint().bounds
    assert abs(west - 9.0) < 1e-9 and abs(south) < 1e-9
    assert abs(north - 100.0 / 110_574.0) < 2e-6 and abs(east - 9.0 - 100.0 / 111_320.0 / 0.9996) < 2e-6
