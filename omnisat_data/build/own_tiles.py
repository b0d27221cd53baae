"""Tiles of your own area: from a vector file of tile polygons, or a regular grid over a bounding box.

A tile is a square of `size_m` metres in a projected CRS (by default the UTM zone of the area's
centre), its corners on the 10 m Sentinel lattice of that CRS, so that on the scenes' own UTM grid
every Sentinel pixel of the tile is a scene pixel. Per format, as the released datasets:
  treesatai-ts: Sentinel grid size/10 px at 10 m; VHR grid at the recipe's VHR resolution (0.2 m:
                300 x 300 for 60 m tiles, so Sentinel pixel (i, j) covers VHR pixels [50i, 50i + 50));
  pastis-hd:    Sentinel grid 128 x 128 at 10 m, VHR grid 1280 x 1280 at 1 m for 1280 m tiles.
Polygons that are not squares of the tile size are reported with their reason and left out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import CRS

from omnisat_data.formats.treesatai import SourceError
from omnisat_data.geo.grid import Grid, transformer
from omnisat_data.geo.tile import SENTINEL_RES, Tile

SQUARE_TOLERANCE = 0.05  # a polygon's sides may differ from the tile size by 5 % (reprojection, rounding)
FIRST_PATCH_ID = 10000  # pastis-hd IDs when the file has no integer ID_PATCH (PASTIS starts at 10000)


@dataclass(frozen=True)
class OwnTiles:
    tiles: tuple[Tile, ...]
    polygons: dict[str, list[tuple[float, float]]]  # tile name -> square corners in the tile CRS
    problems: tuple[tuple[str, str], ...]  # (feature, reason) left out


def utm_crs(lon: float, lat: float) -> str:
    zone = int((lon + 180) // 6) + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def projected(crs: str, where: str) -> str:
    try:
        parsed = CRS.from_user_input(crs)
    except Exception:  # pyproj raises its own CRSError; any failure means the same thing here
        raise SourceError(f"{where}: CRS {crs!r} is not a CRS pyproj knows") from None
    if not parsed.is_projected:
        raise SourceError(f"{where}: CRS {crs} is not projected (tiles are squares in metres)")
    return parsed.to_string()


def safe_name(value: str) -> str:
    """A tile name usable as a file stem: letters, digits, '-', '_' and '.' only, never '..'."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value)).strip("._")
    return name or "tile"


def make_tile(name: str, cx: float, cy: float, crs: str, size_m: float, vhr_res: float, year: int) -> Tile:
    """The tile of `size_m` centred (to the 10 m lattice) on (cx, cy)."""
    return Tile(name, Grid.square(crs, cx, cy, size_m, vhr_res, SENTINEL_RES),
                Grid.square(crs, cx, cy, size_m, SENTINEL_RES, SENTINEL_RES), year)


def check_size(size_m: float) -> float:
    if size_m <= 0 or abs(size_m / SENTINEL_RES - round(size_m / SENTINEL_RES)) > 1e-9:
        raise SourceError(f"tile size {size_m:g} m: expected a positive multiple of {SENTINEL_RES:g} m")
    return float(size_m)


def _text(value) -> str:
    """A property as text; "" when absent (a file mixing `name` and `id` gives the others NaN, not None)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def patch_id(props: dict, k: int) -> int:
    value = props.get("ID_PATCH")
    return int(value) if isinstance(value, (int, np.integer)) else FIRST_PATCH_ID + k


def read_vector_file(path: Path):
    """A GeoDataFrame of any vector file GDAL reads, with at least one feature; one line naming the file."""
    import geopandas

    try:
        frame = geopandas.read_file(path)
    except Exception as error:  # pyogrio's errors vary by driver; the file is what is wrong
        raise SourceError(f"{path}: not a vector file GDAL can read ({' '.join(str(error).split())})") from None
    if frame.empty:
        raise SourceError(f"{path}: no features")
    return frame


def tiles_from_file(path: Path, size_m: float, crs: str | None, vhr_res: float, year: int,
                    integer_ids: bool = False) -> OwnTiles:
    """One tile per polygon of a vector file (any format GDAL reads; GeoJSON without CRS is lon/lat).

    Names: the `name` (or `id`) property, else the feature's index; `integer_ids` (pastis-hd): the
    integer `ID_PATCH` property, else 10000 + index."""
    size_m = check_size(size_m)
    frame = read_vector_file(path)
    source_crs = frame.crs.to_string() if frame.crs is not None else "EPSG:4326"
    if crs is None:
        centre = frame.to_crs("EPSG:4326").union_all().centroid if frame.crs is not None else frame.union_all().centroid
        crs = utm_crs(centre.x, centre.y)
    crs = projected(crs, str(path))
    to_tile = transformer(source_crs, crs)
    tiles, polygons, problems, seen = [], {}, [], set()
    for k, (geometry, props) in enumerate(zip(frame.geometry, frame.drop(columns="geometry").to_dict("records"))):
        if integer_ids:
            name = str(patch_id(props, k))
        else:
            name = safe_name(_text(props.get("name")) or _text(props.get("id")) or f"tile_{k:05d}")
        where = f"feature {k} ({name})"
        if geometry is None or geometry.geom_type not in ("Polygon", "MultiPolygon"):
            problems.append((where, f"geometry is {getattr(geometry, 'geom_type', None)}, not a polygon"))
            continue
        ring = np.asarray((geometry.geoms[0] if geometry.geom_type == "MultiPolygon" else geometry).exterior.coords)
        x, y = to_tile.transform(ring[:, 0], ring[:, 1])
        width, height = x.max() - x.min(), y.max() - y.min()
        if abs(width - size_m) > SQUARE_TOLERANCE * size_m or abs(height - size_m) > SQUARE_TOLERANCE * size_m:
            problems.append(
                (where, f"polygon is {width:.1f} x {height:.1f} m in {crs}, not a {size_m:g} m square tile")
            )
            continue
        if name in seen:
            problems.append((where, f"name {name} used by an earlier feature"))
            continue
        seen.add(name)
        tile = make_tile(name, (x.min() + x.max()) / 2, (y.min() + y.max()) / 2, crs, size_m, vhr_res, year)
        tiles.append(tile)
        polygons[name] = corners(tile)
    return OwnTiles(tuple(tiles), polygons, tuple(problems))


MAX_BBOX_TILES = 1_000_000  # a box with more tiles than this needs --limit (or smaller boxes)


def tiles_from_bbox(bbox: tuple[float, float, float, float], size_m: float, crs: str | None, vhr_res: float,
                    year: int, integer_ids: bool = False, limit: int | None = None) -> OwnTiles:
    """A regular grid of tiles over a lon/lat bounding box (west, south, east, north), cells aligned to
    multiples of the tile size in `crs`; names r<row>_c<col> (pastis-hd: 10000 + index)."""
    size_m = check_size(size_m)
    west, south, east, north = bbox
    if not (west < east and south < north):
        raise SourceError(f"bbox {bbox}: expected west < east and south < north (lon/lat)")
    crs = projected(crs or utm_crs((west + east) / 2, (south + north) / 2), "--crs")
    lon = np.array([west, east, east, west])
    lat = np.array([south, south, north, north])
    x, y = transformer("EPSG:4326", crs).transform(lon, lat)
    cells = Grid.covering(crs, np.asarray(x), np.asarray(y), size_m)  # one cell per tile
    x0, y1 = cells.transform.c, cells.transform.f
    tiles, polygons = [], {}
    rows, cols = cells.shape
    if limit is None and rows * cols > MAX_BBOX_TILES:
        raise SourceError(f"bbox {bbox}: {rows * cols:,} tiles of {size_m:g} m; give --limit or a smaller box "
                          f"(at most {MAX_BBOX_TILES:,} at once)")
    for r in range(rows):
        if limit is not None and len(tiles) >= limit:  # names grow in row-major order: the first N by name
            break
        for c in range(cols):
            if limit is not None and len(tiles) >= limit:
                break
            name = str(FIRST_PATCH_ID + r * cols + c) if integer_ids else f"r{r:04d}_c{c:04d}"
            tile = make_tile(name, x0 + (c + 0.5) * size_m, y1 - (r + 0.5) * size_m, crs, size_m, vhr_res, year)
            tiles.append(tile)
            polygons[name] = corners(tile)
    return OwnTiles(tuple(tiles), polygons, ())


def corners(tile: Tile) -> list[tuple[float, float]]:
    left, bottom, right, top = tile.sentinel.bounds
    return [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]


def fold_of(name: str) -> int:
    """PASTIS-style fold 1-5 of a tile, from its name (deterministic)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 + 1


def split_of(name: str) -> str:
    """TreeSatAI-style split of a tile, from its name: 80 % train, 20 % test (val is carved from train)."""
    return "test" if int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 == 0 else "train"
