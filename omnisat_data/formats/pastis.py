"""Read a PASTIS / PASTIS-R tree into patches with their exact grids (datasets spec section 3).

A patch's native grid is the 128 x 128 grid of 10 m pixels in the UTM zone of its Sentinel-2 tile
(TILE t30uxv -> EPSG:32630, t31* -> 32631, t32ulu -> 32632), recovered by reprojecting its
Lambert-93 polygon and snapping to 10 m; its VHR grid is the 1280 x 1280 grid of 1 m pixels over the
same square, so 40 x 40 VHR pixels pair with each 4 x 4 Sentinel block. A patch that cannot be placed
is reported with its reason and left out; a tree that cannot be used raises `SourceError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import Transformer

from omnisat_data.geo.grid import Grid
from omnisat_data.io.atomic import replacing

from .treesatai import SourceError

PATCH_PX = 128
SENTINEL_RES = 10.0
VHR_RES = 1.0
SQUARE_TOLERANCE_M = 5.0  # the real polygons are 1276.9-1280 m squares, slightly rotated in Lambert-93
DATE_PROPERTIES = ("dates-S2", "dates-S1A", "dates-S1D")
# the Sentinel series: our series name -> (folder, file prefix); files are FOLDER/PREFIX_<id>.npy
FOLDERS = {"s2": ("DATA_S2", "S2"), "s1-asc": ("DATA_S1A", "S1A"), "s1-des": ("DATA_S1D", "S1D")}
NORM_SERIES = {prefix: folder for folder, prefix in FOLDERS.values()}  # "S2" -> "DATA_S2", ...
# the semantic classes of ANNOTATIONS/TARGET_<id>.npy, by id: 0 background, 1..18 crops, 19 void
CLASS_NAMES = ("Background", "Meadow", "Soft winter wheat", "Corn", "Winter barley", "Winter rapeseed",
               "Spring barley", "Sunflower", "Grapevine", "Beet", "Winter triticale", "Winter durum wheat",
               "Fruits, vegetables, flowers", "Potatoes", "Leguminous fodder", "Soybeans", "Orchard",
               "Mixed cereal", "Sorghum", "Void label")
BACKGROUND, VOID = 0, 19
CROP_IDS = range(1, 19)
SPOT_FOLDER = Path("DATA_SPOT") / "PASTIS_SPOT6_RVB_1M00_2019"  # PASTIS-HD's VHR images


def spot_path(out: Path, pid: int | str) -> Path:
    return out / SPOT_FOLDER / f"SPOT6_RVB_1M00_2019_{pid}.tif"


def series_path(out: Path, series: str, pid: int | str) -> Path:
    folder, prefix = FOLDERS[series]
    return out / folder / f"{prefix}_{pid}.npy"


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save (C order, as the released files), atomically."""
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save would append .npy to the name
        np.save(f, np.ascontiguousarray(array))


@dataclass(frozen=True)
class Patch:
    id: int
    fold: int
    tile: str
    sentinel: Grid  # 128 x 128 at 10 m, UTM of the tile
    vhr: Grid  # 1280 x 1280 at 1 m over the same square


def tile_crs(tile: str) -> str:
    """UTM CRS of a Sentinel-2 tile name such as t31tfj (northern hemisphere: latitude bands N to X)."""
    m = re.fullmatch(r"t?(\d{2})([c-hj-np-x])[a-z]{2}", str(tile).lower())
    if not m:
        raise ValueError(f"TILE {tile!r} is not a Sentinel-2 tile name such as t31tfj")
    zone, band = int(m[1]), m[2]
    return f"EPSG:{32600 + zone if band >= 'n' else 32700 + zone}"


def patch_grids(ring_2154: np.ndarray, crs: str) -> tuple[Grid, Grid]:
    """(Sentinel grid, VHR grid) of a patch polygon, or ValueError when it is not a 1280 m square."""
    x, y = Transformer.from_crs("EPSG:2154", crs, always_xy=True).transform(ring_2154[:, 0], ring_2154[:, 1])
    width, height = x.max() - x.min(), y.max() - y.min()
    size = PATCH_PX * SENTINEL_RES
    if abs(width - size) > SQUARE_TOLERANCE_M or abs(height - size) > SQUARE_TOLERANCE_M:
        raise ValueError(f"polygon is {width:.1f} x {height:.1f} m in {crs}, not a {size:.0f} m square patch")
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    return (Grid.square(crs, cx, cy, size, SENTINEL_RES, SENTINEL_RES),
            Grid.square(crs, cx, cy, size, VHR_RES, SENTINEL_RES))


@dataclass(frozen=True)
class PastisSource:
    root: Path
    patches: tuple[Patch, ...]
    features: dict[int, dict]  # ID_PATCH -> the metadata feature, as read
    problems: tuple[tuple[str, str], ...]  # (patch, reason) left out


def read_pastis(root: str | Path, require_dates: bool = True) -> PastisSource:
    root = Path(root)
    path = root / "metadata.geojson"
    if not path.is_file():
        raise SourceError(f"{path}: not found (is {root} a PASTIS tree?)")
    try:
        doc = json.loads(path.read_text())
        features = doc["features"]
    except (ValueError, KeyError) as error:
        raise SourceError(f"{path}: not a GeoJSON FeatureCollection ({error})") from None
    crs = str(doc.get("crs", {}).get("properties", {}).get("name", "EPSG:2154"))
    if not crs.endswith("2154"):
        raise SourceError(f"{path}: CRS {crs}, PASTIS footprints are in EPSG:2154")
    patches, by_id, problems = [], {}, []
    for k, feature in enumerate(features):
        props = feature.get("properties", {})
        if "ID_PATCH" not in props:
            raise SourceError(f"{path}: feature {k} has no ID_PATCH")
        value = props["ID_PATCH"]
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
            problems.append((f"feature {k}", f"ID_PATCH {value!r} is not a whole number: patch left out"))
            continue
        pid = int(value)
        if require_dates:
            missing = [p for p in DATE_PROPERTIES if p not in props]
            if missing:
                raise SourceError(f"{path}: patch {pid} has no {missing[0]} property (PASTIS-R needs "
                                  f"{', '.join(DATE_PROPERTIES)})")
        try:
            geometry = feature["geometry"]
            rings = geometry["coordinates"][0] if geometry["type"] == "Polygon" else geometry["coordinates"][0][0]
            sentinel, vhr = patch_grids(np.asarray(rings, float), tile_crs(props.get("TILE", "")))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            problems.append((f"patch {pid}", str(error)))
            continue
        patches.append(Patch(pid, int(props.get("Fold", 0)), str(props.get("TILE")), sentinel, vhr))
        by_id[pid] = feature
    return PastisSource(root, tuple(patches), by_id, tuple(problems))
