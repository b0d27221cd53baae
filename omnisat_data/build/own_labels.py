"""Labels for your own area: class polygons (any vector file GDAL reads, in any CRS) -> what each format stores.

TreeSatAI-TS (labels JSON, as released): per tile, each class's share of the tile's 60 m square, from
exact polygon areas (shapely) in the tile's CRS, `[[class, fraction], ...]` largest first, rounded to
4 decimals; the loaders apply the 0.07 threshold. Class names are the field's values as text.

PASTIS-HD (ANNOTATIONS/TARGET_<id>.npy (3, 128, 128) uint8, the class in every channel as the world
and PASTIS's loaders read channel 0; INSTANCE_ANNOTATIONS/INSTANCES_<id>.npy (128, 128) int64):
a pixel takes the class of the polygon containing its centre (GDAL's rasterisation rule; the last
polygon in the file wins where polygons overlap), 0 background where none does; a polygon whose area
lies mostly (more than half) outside the patch is void, 19, as PASTIS marks parcels cut by the patch
edge. Classes are the field's integer values, PASTIS's nomenclature (1-18; 0 and 19 reserved). Each
polygon's instance id is its feature index + 1 (stable across patches), 0 where no polygon is.

Without labels (pretraining): TreeSatAI-TS tiles get the explicit entry [["unlabelled", 1.0]],
PASTIS-HD patches all-background targets and no instances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.strtree import STRtree

from omnisat_data.formats.pastis import BACKGROUND, CROP_IDS, VOID
from omnisat_data.formats.treesatai import SourceError
from omnisat_data.formats.treesatai_ts import UNLABELLED
from omnisat_data.geo.tile import Tile

from .own_tiles import read_vector_file

VOID_OUTSIDE_SHARE = 0.5  # a parcel with more of its area outside the patch than this is void


@dataclass
class ClassPolygons:
    """The polygons of a label file and their class values, reprojected per tile CRS on demand."""

    source: str
    crs: str
    geometries: np.ndarray  # shapely geometries in `crs`
    values: tuple  # the label field's value per polygon
    _by_crs: dict = field(default_factory=dict)

    def in_crs(self, crs: str) -> tuple[np.ndarray, STRtree]:
        if crs not in self._by_crs:
            from omnisat_data.geo.grid import transformer

            to = transformer(self.crs, crs)
            moved = shapely.transform(self.geometries, lambda x, y: to.transform(x, y), interleaved=False) \
                if crs != self.crs else self.geometries
            moved = shapely.make_valid(moved)
            self._by_crs[crs] = (moved, STRtree(moved))
        return self._by_crs[crs]


def read_class_polygons(path: Path, label_field: str) -> ClassPolygons:
    """Polygons and the `label_field` of each; one clear line for an unreadable file, a missing field,
    a null value or a non-polygon."""
    frame = read_vector_file(path)
    if label_field not in frame.columns:
        raise SourceError(
            f"{path}: no field {label_field!r} (fields: {', '.join(c for c in frame.columns if c != 'geometry')})"
        )
    geometries, values = [], []
    for k, (geometry, value) in enumerate(zip(frame.geometry, frame[label_field])):
        if geometry is None or geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise SourceError(f"{path}: feature {k}: geometry is {getattr(geometry, 'geom_type', None)}, not a polygon")
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise SourceError(f"{path}: feature {k}: field {label_field!r} is empty")
        geometries.append(geometry)
        values.append(value.item() if isinstance(value, np.generic) else value)
    crs = frame.crs.to_string() if frame.crs is not None else "EPSG:4326"
    return ClassPolygons(str(path), crs, np.array(geometries, dtype=object), tuple(values))


def class_fractions(polygons: ClassPolygons, tile: Tile) -> list[list]:
    """[[class, share of the tile's area], ...] largest first (the TreeSatAI labels JSON entry)."""
    square = shapely.box(*tile.sentinel.bounds)
    moved, tree = polygons.in_crs(tile.sentinel.crs)
    shares: dict[str, float] = {}
    for k in tree.query(square, predicate="intersects"):
        area = shapely.intersection(moved[k], square).area
        if area > 0:
            name = str(polygons.values[k])
            shares[name] = shares.get(name, 0.0) + area / square.area
    return [[name, round(share, 4)] for name, share in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
            if round(share, 4) > 0]


def treesatai_labels(polygons: ClassPolygons | None, tiles: list[Tile]) -> dict[str, list]:
    """The labels JSON of own-area tiles: class fractions, or the explicit unlabelled entry."""
    if polygons is None:
        return {f"{t.name}.tif": [[UNLABELLED, 1.0]] for t in tiles}
    return {f"{t.name}.tif": class_fractions(polygons, t) for t in tiles}


def pastis_class(polygons: ClassPolygons, k: int) -> int:
    value = polygons.values[k]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value \
            or int(value) not in (BACKGROUND, VOID, *CROP_IDS):
        raise SourceError(f"{polygons.source}: feature {k}: class {value!r} is not a PASTIS class id (integer "
                          f"{CROP_IDS.start}-{CROP_IDS.stop - 1}; 0 background, 19 void)")
    return int(value)


def pastis_annotations(polygons: ClassPolygons | None, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """(TARGET (3, H, W) uint8, INSTANCES (H, W) int64) of one patch on its 10 m grid."""
    from rasterio.features import rasterize

    shape = tile.sentinel.shape
    semantic = np.zeros(shape, np.uint8)
    instances = np.zeros(shape, np.int64)
    if polygons is not None:
        square = shapely.box(*tile.sentinel.bounds)
        moved, tree = polygons.in_crs(tile.sentinel.crs)
        hits = sorted(int(k) for k in tree.query(square, predicate="intersects"))
        classes, ids = [], []
        for k in hits:
            inside = shapely.intersection(moved[k], square).area / moved[k].area if moved[k].area > 0 else 0.0
            classes.append(VOID if 1 - inside > VOID_OUTSIDE_SHARE else pastis_class(polygons, k))
            ids.append(k + 1)
        if hits:
            transform = tile.sentinel.transform
            semantic = rasterize(zip(moved[hits], classes), out_shape=shape, transform=transform, fill=BACKGROUND,
                                 dtype="uint8")
            instances = rasterize(zip(moved[hits], ids), out_shape=shape, transform=transform, fill=0,
                                  dtype="int64")
    return np.stack([semantic] * 3), instances
