"""What a build must write, computed independently: bilinear interpolation of the world's own render
functions, exact area averages of a source scene."""

from __future__ import annotations

import numpy as np
from pyproj import Transformer
from shapely.geometry import Polygon, box

from omnisat_data.grid import Grid
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


def expected_s2_series(field, scenes, tile_grid) -> tuple[list, int]:
    """[(scene, expected_s2)] a tile's Sentinel-2 series must hold, in time order: scenes with data over
    it, and of the granules of one datatake (same mission, sensing time and relative orbit in the
    product name) the one with the most valid pixels, the first on a tie; and how many were dropped."""
    frames = [(s, expected_s2(field, s, tile_grid)) for s in sorted(scenes, key=lambda s: (s.datetime, s.product))]
    frames = [(s, e) for s, e in frames if not np.isnan(e[:10]).all()]
    best = {}
    for s, e in frames:
        parts = s.product.split("_")
        key, valid = (parts[0], parts[2], parts[4]), int(np.isfinite(e[:10]).sum())
        if key not in best or valid > best[key][0]:
            best[key] = (valid, s.product)
    kept = [(s, e) for s, e in frames if s.product in {product for _, product in best.values()}]
    return kept, len(frames) - len(kept)


def expected_s1(field, scene, tile_grid):
    x, y = Transformer.from_crs(tile_grid.crs, scene.grid.crs, always_xy=True).transform(*tile_grid.pixel_centres())
    acc = 0.0
    for cx, cy, w in _neighbours(x, y, scene.grid):
        acc = acc + s1_values(field, scene, cx, cy).astype(float) * w
    return acc


def exact_area_average(src, grid: Grid, row: int, col: int) -> np.ndarray:
    """The source pixels weighted by the exact area they share with one output pixel (shapely)."""
    t = grid.transform
    corners = [t @ (col, row), t @ (col + 1, row), t @ (col + 1, row + 1), t @ (col, row + 1)]
    xs, ys = Transformer.from_crs(grid.crs, src.crs.to_string(), always_xy=True).transform(*zip(*corners))
    footprint = Polygon(zip(xs, ys))
    inv = ~src.transform
    cols, rows = zip(*[inv @ (x, y) for x, y in zip(xs, ys)])
    total, acc = 0.0, 0.0
    for r in range(int(np.floor(min(rows))), int(np.floor(max(rows))) + 1):
        for c in range(int(np.floor(min(cols))), int(np.floor(max(cols))) + 1):
            x0, y0 = src.transform @ (c, r + 1)
            x1, y1 = src.transform @ (c + 1, r)
            area = footprint.intersection(box(x0, y0, x1, y1)).area
            if area > 0:
                value = src.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0].astype(float)
                acc, total = acc + area * value, total + area
    return acc / total
