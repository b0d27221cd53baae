"""What a TreeSatAI-TS build would search and read: tiles grouped by neighbourhood and year, one search each.

Pure planning over a TreeSatAI source tree and a catalog; the build (issue: build treesatai) runs
these same searches and then reads the assets listed here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from pyproj import Transformer

from .catalog.search import Catalog, Search
from .recipe import series_year, time_window

GROUP_SIZE_M = 5000.0  # tiles within one 5 km cell share a search
S2_ASSETS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "SCL", "CLD", "SNW")
S1_ASSETS = ("vv", "vh")


@dataclass(frozen=True)
class TileRecord:
    name: str
    year: int
    bounds: tuple[float, float, float, float]  # in `crs`
    crs: str


@dataclass(frozen=True)
class GroupPlan:
    year: int
    tiles: int
    bbox: tuple[float, float, float, float]  # WGS84
    items: dict[str, int]  # modality -> items found
    assets: dict[str, int]
    bytes: dict[str, int]


def read_footprints(source: Path) -> list[TileRecord]:
    path = Path(source) / "geojson" / "bb_60m.GeoJSON"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: TreeSatAI footprint file not found")
    doc = json.loads(path.read_text())
    crs_name = doc.get("crs", {}).get("properties", {}).get("name", "EPSG:25832")
    crs = "EPSG:" + crs_name.split(":")[-1]
    out = []
    for k, f in enumerate(doc["features"]):
        props = f.get("properties", {})
        for key in ("IMG_ID", "YEAR"):
            if key not in props:
                raise ValueError(f"{path}: feature {k} has no {key} property")
        ring = np.asarray(f["geometry"]["coordinates"][0])
        out.append(TileRecord(str(props["IMG_ID"]), int(props["YEAR"]),
                              (ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max()), crs))
    return out


def group_tiles(tiles: list[TileRecord]) -> dict[tuple[int, int, int], list[TileRecord]]:
    """Neighbouring tiles of one time window: (year, cell x, cell y) -> tiles."""
    groups: dict = defaultdict(list)
    for t in tiles:
        cx, cy = int(t.bounds[0] // GROUP_SIZE_M), int(t.bounds[1] // GROUP_SIZE_M)
        groups[(series_year(t.year), cx, cy)].append(t)
    return dict(sorted(groups.items()))


def _lonlat_bbox(tiles: list[TileRecord]) -> tuple[float, float, float, float]:
    b = np.array([t.bounds for t in tiles])
    xs = np.array([b[:, 0].min(), b[:, 2].max(), b[:, 0].min(), b[:, 2].max()])
    ys = np.array([b[:, 1].min(), b[:, 1].min(), b[:, 3].max(), b[:, 3].max()])
    lon, lat = Transformer.from_crs(tiles[0].crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return (round(float(lon.min()), 6), round(float(lat.min()), 6), round(float(lon.max()), 6), round(float(lat.max()), 6))


def _size(href: str) -> int:
    if urlparse(href).scheme in ("", "file"):
        p = Path(urlparse(href).path)
        return p.stat().st_size if p.is_file() else 0
    return 0  # remote sizes come from the build's HEAD requests


def plan_searches(source: Path, catalog: Catalog, s2_collection: str = "sentinel-2-l2a",
                  s1_collection: str = "sentinel-1-rtc") -> list[GroupPlan]:
    plans = []
    for (year, _, _), tiles in group_tiles(read_footprints(source)).items():
        bbox = _lonlat_bbox(tiles)
        items, assets, nbytes = {}, {}, {}
        for modality, collection, keys in (("s2", s2_collection, S2_ASSETS), ("s1", s1_collection, S1_ASSETS)):
            found = list(catalog.search(Search(collections=(collection,), bbox=bbox, datetime=time_window(year))))
            hrefs = [i.assets[k].href for i in found for k in keys if k in i.assets]
            items[modality], assets[modality] = len(found), len(hrefs)
            nbytes[modality] = sum(_size(h) for h in hrefs)
        plans.append(GroupPlan(year, len(tiles), bbox, items, assets, nbytes))
    return plans
