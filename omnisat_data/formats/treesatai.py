"""Read a TreeSatAI tree (the original archive layout) into tiles, labels and splits.

One tile per aerial tif (`aerial/60m/*.tif`, or the flat `aerial/*.tif` of the Hugging Face
release); its grid comes from the tif's own geotransform, its year from `geojson/bb_60m.GeoJSON`
(`IMG_ID`, `YEAR`) or from an explicit fallback year. A tif that cannot be read, or a tile with no
year, is reported with its reason and left out; it never stops the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from omnisat_data.geo.grid import Grid, crs_string
from omnisat_data.geo.tile import SENTINEL_RES, Tile
from omnisat_data.io.paths import safe_component

LABELS = Path("labels") / "TreeSatBA_v9_60m_multi_labels.json"
FOOTPRINTS = Path("geojson") / "bb_60m.GeoJSON"
SENTINEL_SHAPE = (6, 6)


@dataclass(frozen=True)
class TileRecord:
    """One feature of geojson/bb_60m.GeoJSON: the tile's name, flight year and footprint."""

    name: str
    year: int
    bounds: tuple[float, float, float, float]  # in `crs`
    crs: str


def read_footprints(source: Path) -> list[TileRecord]:
    path = Path(source) / FOOTPRINTS
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


class SourceError(ValueError):
    """The tree as a whole cannot be used (the message names the file)."""


@dataclass(frozen=True)
class TreeSatSource:
    root: Path
    tiles: tuple[Tile, ...]
    files: dict[str, Path]  # tile name -> aerial tif
    labels: dict[str, list[tuple[str, float]]]  # "<FILE>.tif" -> [(genus, fraction), ...]
    splits: dict[str, tuple[str, ...]]  # "train" / "test" (/ "val") -> "<FILE>.tif" names, as listed
    problems: tuple[tuple[str, str], ...]  # (file or tile, reason) left out


def aerial_folder(root: Path) -> Path:
    for folder in (root / "aerial" / "60m", root / "aerial"):
        if folder.is_dir() and any(folder.glob("*.tif")):
            return folder
    raise SourceError(f"{root}: no aerial tifs in aerial/60m/ or aerial/")


def read_years(root: Path) -> dict[str, int]:
    """IMG_ID (with or without .tif) -> YEAR from geojson/bb_60m.GeoJSON; {} when the file is absent."""
    if not (root / FOOTPRINTS).is_file():
        return {}
    try:
        records = read_footprints(root)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise SourceError(f"{root / FOOTPRINTS}: not a usable footprint file ({error})") from None
    return {r.name.removesuffix(".tif"): r.year for r in records}


def read_splits(root: Path) -> dict[str, tuple[str, ...]]:
    splits = {}
    for split in ("train", "val", "test"):
        path = root / f"{split}_filenames.lst"  # (the same lists as TreeSatAI-TS: formats/treesatai_ts.split_list)
        if path.is_file():
            splits[split] = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return splits


def read_treesatai(root: str | Path, year: int | None = None) -> TreeSatSource:
    """All tiles of a TreeSatAI tree; `year` is the fallback for tiles missing from the footprints file."""
    root = Path(root)
    folder = aerial_folder(root)
    years = read_years(root)
    labels_path = root / LABELS
    try:
        labels = json.loads(labels_path.read_text()) if labels_path.is_file() else {}
    except ValueError as error:
        raise SourceError(f"{labels_path}: not JSON ({error})") from None

    tiles, files, problems = [], {}, []
    for path in sorted(folder.glob("*.tif")):
        stem = path.name[: -len(".tif")]  # "Alnus_spec._5_13114_WEFL_NLF" keeps its inner dot
        try:
            name = safe_component(stem, "tile name")
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise ValueError("no CRS")
                grid = Grid(crs_string(src.crs), src.transform, (src.height, src.width))
        except (rasterio.errors.RasterioError, ValueError) as error:
            problems.append((str(path), f"cannot read the aerial tif: {error}"))
            continue
        tile_year = years.get(stem, year)
        if tile_year is None:
            problems.append((stem, f"no YEAR in {FOOTPRINTS} and no --year given"))
            continue
        tiles.append(Tile(name, grid, grid.centred(SENTINEL_SHAPE, SENTINEL_RES), int(tile_year)))
        files[name] = path
    return TreeSatSource(root, tuple(tiles), files, labels, read_splits(root), tuple(problems))
