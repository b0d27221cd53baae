"""What a build must write, computed independently: bilinear interpolation of the world's own render
functions, exact area averages of a source scene."""

from __future__ import annotations

import numpy as np
from pyproj import Transformer
from shapely.geometry import Polygon, box

from omnisat_data.geo.grid import Grid
from omnisat_data.sim.world.render import s1_values, s2_mask_values, s2_values

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


def _complete(values) -> bool:
    return bool(np.isfinite(values).all())


def _mosaic(ranked):
    """Pixel by pixel, all channels together, from the first frame that has the pixel."""
    out = np.full_like(ranked[0], np.nan)
    for values in ranked:
        hole = ~np.isfinite(out).all(axis=0)
        take = hole & np.isfinite(values).all(axis=0)
        out[:, take] = values[:, take]
    return out


def expected_s2_series(field, scenes, tile_grid) -> tuple[list, dict]:
    """[(scene, values)] a tile's Sentinel-2 series must hold, in time order, and counts of what the rule
    did. Of the granules of one datatake (same mission, sensing time and relative orbit in the product
    name), the first complete one in time order; if none is complete, the mosaic of its granules with
    the most valid pixels first (first valid value wins), named after that one, kept only if complete."""
    frames = [(s, expected_s2(field, s, tile_grid)) for s in sorted(scenes, key=lambda s: (s.datetime, s.product))]
    frames = [(s, e) for s, e in frames if np.isfinite(e).any()]
    takes: dict[tuple, list] = {}
    for s, e in frames:
        parts = s.product.split("_")
        takes.setdefault((parts[0], parts[2], parts[4]), []).append((s, e))
    kept, counts = [], {"duplicates": 0, "mosaicked": 0, "dropped": 0}
    for members in takes.values():
        complete = [(s, e) for s, e in members if _complete(e)]
        if complete:
            kept.append(complete[0])
            counts["duplicates"] += len(members) - 1
            continue
        ranked = sorted(members, key=lambda m: -int(np.isfinite(m[1]).all(axis=0).sum()))
        mosaic = _mosaic([e for _, e in ranked])
        if _complete(mosaic):
            kept.append((ranked[0][0], mosaic))
            counts["mosaicked"] += 1
        else:
            counts["dropped"] += 1
    kept.sort(key=lambda m: (m[0].datetime, m[0].product))
    return kept, counts


def expected_s1_series(field, scenes, tile_grid) -> list:
    """[(scene, values)] of one orbit direction: every complete slice (both slices of a pass where they
    overlap); a pass with no complete slice, the mosaic of its slices if that is complete."""
    frames = [(s, expected_s1(field, s, tile_grid)) for s in sorted(scenes, key=lambda s: (s.start, s.item_id))]
    passes: dict[tuple, list] = {}
    for s, e in frames:
        if np.isfinite(e).any():
            parts = s.item_id.split("_")
            passes.setdefault((parts[0], parts[6], parts[7]), []).append((s, e))
    kept = []
    for members in passes.values():
        complete = [(s, e) for s, e in members if _complete(e)]
        if complete:
            kept.extend(complete)
            continue
        ranked = sorted(members, key=lambda m: -int(np.isfinite(m[1]).all(axis=0).sum()))
        mosaic = _mosaic([e for _, e in ranked])
        if _complete(mosaic):
            kept.append((ranked[0][0], mosaic))
    return sorted(kept, key=lambda m: (m[0].start, m[0].item_id))


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


def check_series_file(path, field, s2_scenes, s1_scenes, tile_grid) -> dict:
    """A TreeSatAI-TS h5 against the world: every value finite, products and values as the rules say
    (Sentinel-2 rounded to whole DN / percent, masks (T, 10, 6, 6) with snow and cloud first);
    returns the expected Sentinel-2 counts and the number of frames checked."""
    import h5py

    with h5py.File(path, "r") as f:
        arrays = {k: f[k][()] for k in f}
    for key in ("sen-2-data", "sen-2-masks", "sen-1-asc-data", "sen-1-des-data"):
        assert np.isfinite(arrays[key]).all(), f"{path.name}: {key} holds NaN or inf"
    frames, counts = expected_s2_series(field, s2_scenes, tile_grid)
    assert [p.decode() for p in arrays["sen-2-products"]] == [s.product for s, _ in frames], path.name
    data, masks = arrays["sen-2-data"], arrays["sen-2-masks"]
    assert masks.shape == (len(frames), 10) + tile_grid.shape and not masks[:, 2:].any()
    if frames:
        want = np.stack([e for _, e in frames])
        assert np.abs(data - want[:, :10]).max() <= 0.5 + 1e-6
        assert np.abs(masks[:, :2] - want[:, 10:]).max() <= 0.5 + 1e-6
        assert (data == np.rint(data)).all()
    checked = len(frames)
    for series, direction in (("sen-1-asc", "ascending"), ("sen-1-des", "descending")):
        kept = expected_s1_series(field, [s for s in s1_scenes if s.direction == direction], tile_grid)
        assert [p.decode() for p in arrays[f"{series}-products"]] == [s.item_id for s, _ in kept], path.name
        if kept:
            np.testing.assert_allclose(arrays[f"{series}-data"], np.stack([e for _, e in kept]), rtol=2e-6)
        checked += len(kept)
    return {**counts, "checked": checked}
