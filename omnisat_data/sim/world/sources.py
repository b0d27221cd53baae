"""The source benchmarks over the world, in their original on-disk formats (datasets spec §1 and §3).

A TreeSatAI tree (aerial/60m tiles, mono-date s1/s2 tiles, genus-fraction labels, train/test lists,
geojson/bb_60m.GeoJSON) and a PASTIS-R tree (metadata.geojson, DATA_S2, DATA_S1A, DATA_S1D,
ANNOTATIONS, INSTANCE_ANNOTATIONS). These are the grids that `omnisat-data build` augments.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer

from omnisat_data.geo.grid import Grid
from omnisat_data.io.atomic import write_json
from omnisat_data.io.raster import write_gtiff

from .config import FIELD_CRS, SPOT_CRS, WorldConfig
from .field import Field
from .legend import LEGEND, S2_RESOLUTION, SPECIES_OF_GENUS
from .render import content_coords, s1_values, s2_values
from .scenes import PastisPatch, S1Scene, S2Scene, TreeSatTile

MONO_S2_ORDER = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
PASTIS_S2_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
# TreeSatAI's archive stores pixel sizes with float noise; the world reproduces it.
AERIAL_PIXEL = (0.2000000000001, -0.1999999999994)


def genus_fractions(field: Field, grid: Grid) -> dict[str, float]:
    """Share of the tile's area covered by each genus (1 m sampling of the hard land-cover map)."""
    left, bottom, right, top = grid.bounds
    n = max(int(round(right - left)), 1)
    xs = left + (np.arange(n) + 0.5) * (right - left) / n
    ys = top - (np.arange(n) + 0.5) * (top - bottom) / n
    x, y = np.meshgrid(xs, ys)
    fx, fy = Transformer.from_crs(grid.crs, FIELD_CRS, always_xy=True).transform(x, y)
    classes, _ = field.land_cover(np.asarray(fx), np.asarray(fy))
    out: dict[str, float] = {}
    for k, count in zip(*np.unique(classes, return_counts=True)):
        genus = LEGEND[int(k)].genus
        if genus is not None:
            out[genus] = out.get(genus, 0.0) + count / classes.size
    return {g: round(v, 4) for g, v in sorted(out.items(), key=lambda kv: -kv[1])}


def name_tiles(field: Field, tiles: list[TreeSatTile]) -> tuple[list[TreeSatTile], dict[str, list]]:
    """TreeSatAI names: `<Genus>_<species>_<n>_<objectID>_WEFL_NLF` after the stand's dominant genus."""
    named, labels = [], {}
    for k, tile in enumerate(tiles):
        fractions = genus_fractions(field, tile.grid)
        species = SPECIES_OF_GENUS[next(iter(fractions))]
        name = f"{species}_{k % 7 + 1}_{1000 + 37 * k}_WEFL_NLF"
        named.append(dataclasses.replace(tile, name=name))
        labels[name + ".tif"] = [[g, f] for g, f in fractions.items()]
    return named, labels


def mono_grids(tile: TreeSatTile) -> tuple[Grid, Grid]:
    """The archive's 6 x 6 s2 and s1 grids (EPSG:32632, 10 m), not snapped to the aerial grid."""
    left, top = tile.grid.transform.c, tile.grid.transform.f
    s2 = Grid.from_origin(FIELD_CRS, left - 3.7435, top - 3.3749, 10.0, (6, 6))
    s1 = Grid.from_origin(FIELD_CRS, round(left), round(top), 10.0, (6, 6))
    return s2, s1


def write_treesatai(root: Path, field: Field, tiles: list[TreeSatTile], labels: dict, sheets_data: dict,
                    s2_scenes: list[S2Scene], s1_scenes: list[S1Scene]) -> None:
    """Write the TreeSatAI archive tree for `tiles`; `sheets_data` maps sheet id -> (array, grid)."""
    for tile in tiles:
        data, sheet_grid = sheets_data[tile.sheet]
        inv = ~sheet_grid.transform
        col, row = inv @ (tile.grid.transform.c, tile.grid.transform.f)
        col, row = int(round(col)), int(round(row))
        patch = data[:, row : row + 304, col : col + 304]
        noisy = Grid(tile.grid.crs, Affine(AERIAL_PIXEL[0], 0, tile.grid.transform.c, 0, AERIAL_PIXEL[1],
                                           tile.grid.transform.f), (304, 304))
        write_gtiff(root / "aerial" / "60m" / f"{tile.name}.tif", patch, noisy)
        # One mono-date Sentinel acquisition per tile, in the flight year (the clearest summer scene).
        s2_grid, s1_grid = mono_grids(tile)
        summer = [s for s in s2_scenes if s.datetime.year == max(tile.year, 2017) and s.datetime.month in (6, 7, 8)
                  and s.swath_edge is None and s.shift == (0.0, 0.0)]
        scene = max(summer or s2_scenes, key=lambda s: s.weather.cloud_threshold)  # inf = cloud-free
        x, y = s2_grid.pixel_centres()
        bands = [s2_values(field, scene, [b], x, y)[0].astype(np.int32) - (1000 if scene.offset_applied else 0)
                 for b in MONO_S2_ORDER]
        write_gtiff(
            root / "s2" / "60m" / f"{tile.name}.tif", np.clip(np.stack(bands), 0, None).astype(np.uint16), s2_grid
        )
        s1 = next(s for s in s1_scenes if s.start.year == max(tile.year, 2017) and s.direction == "ascending")
        x, y = s1_grid.pixel_centres()
        db = 10 * np.log10(s1_values(field, s1, x, y))
        write_gtiff(root / "s1" / "60m" / f"{tile.name}.tif",
                    np.stack([db[0], db[1], db[0] / db[1]]).astype(np.float32), s1_grid, nodata=-9999.0)
    write_json(root / "labels" / "TreeSatBA_v9_60m_multi_labels.json", labels)
    names = [t.name + ".tif" for t in tiles]
    order = np.random.default_rng(0).permutation(len(names))
    n_test = max(2, len(names) // 5)  # 20 %: every genus needs support in a small test split
    test = sorted(names[i] for i in order[:n_test])
    train = sorted(names[i] for i in order[n_test:])
    (root / "train_filenames.lst").write_text("\n".join(train) + "\n")
    (root / "test_filenames.lst").write_text("\n".join(test) + "\n")
    features = []
    for t in tiles:
        left, bottom, right, top = t.grid.bounds
        ring = [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
        features.append({"type": "Feature", "properties": {"IMG_ID": t.name, "YEAR": t.year},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    write_json(root / "geojson" / "bb_60m.GeoJSON", {
        "type": "FeatureCollection", "name": "bb_60m",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25832"}}, "features": features})


def _dates(values: list) -> dict[str, int]:
    return {str(i): int(d.strftime("%Y%m%d")) for i, d in enumerate(values)}


def write_pastis(root: Path, field: Field, cfg: WorldConfig, patches: list[PastisPatch], s2_scenes: list[S2Scene],
                 s1_scenes: list[S1Scene]) -> None:
    """Write the PASTIS-R tree: one 128 x 128 patch per feature, series over the PASTIS span."""
    start, end = (dt.date.fromisoformat(d) for d in cfg.pastis_span)
    tile_name = patches[0].tile[1:].upper()
    s2, days = [], set()
    for s in sorted(s2_scenes, key=lambda s: (s.datetime, s.orbit)):  # PASTIS keeps one acquisition per day
        if s.mgrs == tile_name and start <= s.datetime.date() <= end and s.datetime.date() not in days:
            s2.append(s)
            days.add(s.datetime.date())
    s1 = {"S1A": [], "S1D": []}
    for s in s1_scenes:
        key = "S1A" if s.direction == "ascending" else "S1D"
        if start <= s.start.date() <= end and s.slice_number == 1:
            s1[key].append(s)
    to_2154 = Transformer.from_crs(FIELD_CRS, SPOT_CRS, always_xy=True)
    features = []
    for p in patches:
        x, y = p.grid.pixel_centres()
        frames, bases = [], {}
        for scene in s2:
            frame = np.empty((len(PASTIS_S2_ORDER),) + x.shape, np.int32)
            for res in (10, 20):
                sel = [i for i, b in enumerate(PASTIS_S2_ORDER) if S2_RESOLUTION[b] == res]
                if (scene.shift, res) not in bases:
                    bases[(scene.shift, res)] = field.basis(*content_coords(scene, x, y), res)
                frame[sel] = s2_values(field, scene, [PASTIS_S2_ORDER[i] for i in sel], x, y, bases[(scene.shift, res)])
            frames.append(frame - (1000 if scene.offset_applied else 0))
        _save(root / "DATA_S2" / f"S2_{p.patch_id}.npy", np.stack(frames).astype(np.int16))
        for key, scenes in s1.items():
            for s in scenes:
                if (s.shift, 10) not in bases:
                    bases[(s.shift, 10)] = field.basis(*content_coords(s, x, y), 10)
            db = np.stack([10 * np.log10(s1_values(field, s, x, y, bases[(s.shift, 10)])) for s in scenes])
            _save(root / f"DATA_{key}" / f"{key}_{p.patch_id}.npy",
                  np.concatenate([db, db[:, :1] - db[:, 1:2]], axis=1).astype(np.float16))
        classes, ids = field.land_cover(x, y)
        semantic = np.array([c.pastis for c in LEGEND], dtype=np.uint8)[classes]
        _save(root / "ANNOTATIONS" / f"TARGET_{p.patch_id}.npy", np.stack([semantic] * 3))
        parcel = np.where(semantic > 0, ids, 0)
        uniq, inverse = np.unique(parcel, return_inverse=True)
        instances = (
            inverse.reshape(parcel.shape).astype(np.int64) if uniq[0] == 0 else inverse.reshape(parcel.shape) + 1
        )
        _save(root / "INSTANCE_ANNOTATIONS" / f"INSTANCES_{p.patch_id}.npy", instances.astype(np.int64))
        left, bottom, right, top = p.grid.bounds
        xs, ys = to_2154.transform([left, right, right, left, left], [top, top, bottom, bottom, top])
        features.append({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[[
            [round(a, 3), round(b, 3)] for a, b in zip(xs, ys)]]]},
            "properties": {"ID_PATCH": p.patch_id, "Fold": p.fold, "N_Parcel": int(len(np.unique(instances)) - 1),
                           "Parcel_Cover": round(float((semantic > 0).mean()), 4), "TILE": p.tile,
                           "dates-S2": _dates([s.datetime for s in s2]),
                           "dates-S1A": _dates([s.start for s in s1["S1A"]]),
                           "dates-S1D": _dates([s.start for s in s1["S1D"]])}})
    write_json(root / "metadata.geojson", {
        "type": "FeatureCollection", "name": "metadata",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}}, "features": features})


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


