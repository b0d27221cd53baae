"""An independent bilinear interpolation of the world's own render functions: what a build must write."""

from __future__ import annotations

import numpy as np
from pyproj import Transformer

from omnisat_data.world.render import s1_values, s2_mask_values, s2_values

S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
S2_RES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10}  # the others are 20 m


def _neighbours(x, y, grid):
    """The four source pixel centres around each point and their bilinear weights (NaN off the scene)."""
    left, top, res = grid.bounds[0], grid.bounds[3], grid.res[0]
    u, v = (x - left) / res - 0.5, (top - y) / res - 0.5
    i, j = np.floor(u), np.floor(v)
    wu, wv = u - i, v - j
    corners = []
    for dj, di, w in ((0, 0, (1 - wu) * (1 - wv)), (0, 1, wu * (1 - wv)), (1, 0, (1 - wu) * wv), (1, 1, wu * wv)):
        inside = (i + di >= 0) & (i + di < grid.width) & (j + dj >= 0) & (j + dj < grid.height)
        corners.append((left + (i + di + 0.5) * res, top - (j + dj + 0.5) * res, np.where(inside, w, np.nan)))
    return corners


def expected_s2(field, scene, tile_grid):
    """(12, 6, 6): the 10 bands minus the harmonisation offset, then snow and cloud, NaN where no data."""
    x, y = Transformer.from_crs(tile_grid.crs, scene.grid.crs, always_xy=True).transform(*tile_grid.pixel_centres())
    out = []
    for band in S2_BANDS:
        res = S2_RES.get(band, 20)
        acc = 0.0
        for cx, cy, w in _neighbours(x, y, scene.band_grid(res)):
            dn = s2_values(field, scene, [band], cx, cy)[0].astype(float)
            acc = acc + np.where(dn == 0, np.nan, dn) * w
        out.append(acc - (1000 if scene.offset_applied else 0))
    for key in ("SNW", "CLD"):
        acc = 0.0
        for cx, cy, w in _neighbours(x, y, scene.band_grid(20)):
            acc = acc + s2_mask_values(field, scene, cx, cy)[key].astype(float) * w
        out.append(acc)
    return np.stack(out)


def expected_s1(field, scene, tile_grid):
    x, y = Transformer.from_crs(tile_grid.crs, scene.grid.crs, always_xy=True).transform(*tile_grid.pixel_centres())
    acc = 0.0
    for cx, cy, w in _neighbours(x, y, scene.grid):
        acc = acc + s1_values(field, scene, cx, cy).astype(float) * w
    return acc
