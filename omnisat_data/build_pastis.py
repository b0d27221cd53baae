"""`omnisat-data build pastis-r`: a PASTIS-R tree + a VHR STAC collection -> a PASTIS-HD tree.

The flow, top to bottom (the TreeSatAI build's engine: its grouping, catalogs, pool and writers):
  1. read the PASTIS-R tree (patches and their exact grids: pastis_tree.py); skip patches whose
     VHR image is already written;
  2. group patches by neighbourhood; one VHR search per group;
  3. one unit of work per (VHR item, group): open the image once, and for every patch it covers read
     the window it needs, area-average it onto the patch's 1 m grid and write
     DATA_SPOT/PASTIS_SPOT6_RVB_1M00_2019/SPOT6_RVB_1M00_2019_<ID>.tif (in the worker: no raster
     travels back);
  4. carry the source tree over unchanged (hard links where possible) and write the per-fold
     NORM_*_patch.json files the source lacks; a build report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from shapely.geometry import box, shape

from .atomic import place_copy, write_json
from .executors import executor
from .catalog.search import Catalog, CatalogError, Search, open_catalog
from .cog import write_gtiff
from .grid import Grid
from .pastis_tree import read_pastis
from .recipe import Recipe, RecipeError
from .resample import Window, area_average, transformer
from .serve.assets import gdal_http_env
from .series_units import group_tiles, lonlat
from .tile import Tile

SPOT_FOLDER = Path("DATA_SPOT") / "PASTIS_SPOT6_RVB_1M00_2019"
VHR_YEAR = 2019  # the PASTIS-HD SPOT images are of 2019; the search window is that year
REPORT = "build-report.json"
NORM_SERIES = {"S2": "DATA_S2", "S1A": "DATA_S1A", "S1D": "DATA_S1D"}


def spot_path(out: Path, pid: int) -> Path:
    return out / SPOT_FOLDER / f"SPOT6_RVB_1M00_2019_{pid}.tif"


@dataclass(frozen=True)
class PastisConfig:
    source: Path
    recipe: Recipe
    out: Path
    workers: int = 2
    scheduler: str | None = None  # a Dask scheduler address: the units run on its workers


@dataclass
class PastisReport:
    patches_total: int = 0
    done: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    source_problems: dict[str, str] = field(default_factory=dict)
    searches: int = 0
    norm_written: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"patches": {"total": self.patches_total, "done": len(self.done), "skipped": len(self.skipped),
                            "failed": len(self.failed)}, "failed": self.failed,
                "source_problems": self.source_problems, "searches": self.searches,
                "norm_written": self.norm_written, "seconds": round(self.seconds, 2)}


# -- the unit of work (runs in a worker process) -------------------------------------------------------

def vhr_unit(href: str, targets: list[tuple[int, dict, str]], bands: int = 3,
             header_bytes: int = 16384) -> dict[int, str]:
    """Open one VHR image; for each (patch id, VHR grid as dict, output path): read the window under the
    patch, area-average it onto the grid, write the tif. Returns patch id -> "" (done) or the reason."""
    results = {}
    with rasterio.Env(**gdal_http_env(header_bytes)), rasterio.open(href) as src:
        crs = src.crs.to_string()
        for pid, grid_dict, path in targets:
            grid = Grid.from_dict(grid_dict)
            try:
                left, bottom, right, top = grid.bounds
                xs, ys = transformer(grid.crs, crs).transform([left, right, right, left], [top, top, bottom, bottom])
                window = rasterio.windows.from_bounds(min(xs), min(ys), max(xs), max(ys), src.transform)
                window = window.round_offsets().round_lengths()
                window = rasterio.windows.Window(window.col_off - 2, window.row_off - 2, window.width + 4, window.height + 4)
                full = rasterio.windows.Window(0, 0, src.width, src.height)
                window = window.intersection(full)
                data = src.read(list(range(1, bands + 1)), window=window).astype(np.float64)
                values = area_average(data, src.transform, crs, grid, window=Window(
                    int(window.row_off), int(window.col_off), int(window.height), int(window.width)))
                if np.isnan(values).any():
                    raise ValueError(f"the image covers {100 * (1 - np.isnan(values[0]).mean()):.1f} % of the patch")
                write_gtiff(Path(path), np.rint(values).astype(np.uint8), grid)
                results[pid] = ""
            except (ValueError, rasterio.errors.RasterioError) as error:
                results[pid] = f"{href}: {' '.join(str(error).split())}"
    return results


# -- normalisation files --------------------------------------------------------------------------------

def fold_statistics(root: Path, folder: str, prefix: str, folds: dict[int, list[int]]) -> dict:
    """{"Fold_k": {"mean": [C], "std": [C]}} over every pixel and date of the fold's patches."""
    out = {}
    for fold in sorted(folds):
        n, s, s2 = 0, 0.0, 0.0
        for pid in folds[fold]:
            path = root / folder / f"{prefix}_{pid}.npy"
            if not path.is_file():
                continue
            a = np.load(path).astype(np.float64)  # (T, C, H, W)
            n += a.shape[0] * a.shape[2] * a.shape[3]
            s = s + a.sum(axis=(0, 2, 3))
            s2 = s2 + (a * a).sum(axis=(0, 2, 3))
        if n:
            mean = s / n
            out[f"Fold_{fold}"] = {"mean": [float(v) for v in mean],
                                   "std": [float(v) for v in np.sqrt(np.maximum(s2 / n - mean**2, 0))]}
    return out


# -- the build ------------------------------------------------------------------------------------------

def check_recipe(recipe: Recipe) -> None:
    if recipe.format != "pastis-hd":
        raise RecipeError(f"recipe format is {recipe.format!r}; build pastis-r needs pastis-hd")
    if recipe.vhr is None:
        raise RecipeError("[vhr] missing: build pastis-r adds the VHR modality from it")
    if recipe.vhr.resampling != "average":
        raise RecipeError(f"[vhr].resampling {recipe.vhr.resampling!r}: VHR is put on the patch grid by area averaging (average)")


def search_vhr(tiles: list[Tile], recipe: Recipe, catalogs: dict[str, Catalog], window: str) -> dict[str, tuple[str, list[int]]]:
    """VHR items of one group: item id -> (href, indices of the tiles it covers entirely)."""
    vhr = recipe.vhr
    footprints = [lonlat(t) for t in tiles]
    west, south, east, north = np.array([f.bounds for f in footprints]).T
    bbox = (float(west.min()), float(south.min()), float(east.max()), float(north.max()))
    catalog = catalogs.setdefault(vhr.catalog, open_catalog(vhr.catalog))
    out = {}
    for item in catalog.search(Search(collections=(vhr.collection,), bbox=bbox,
                                      datetime=window, filter=vhr.filter)):
        key = vhr.assets[0]
        if key not in item.assets:
            continue
        covered = shape(item.geometry) if item.geometry else box(*bbox)
        members = [i for i, f in enumerate(footprints) if covered.contains(f)]
        if members:
            out[item.id] = (item.assets[key].href, members)
    return out


def build_pastis(cfg: PastisConfig, progress=None) -> PastisReport:
    t0 = time.perf_counter()
    check_recipe(cfg.recipe)
    report = PastisReport()
    source = read_pastis(cfg.source)
    report.source_problems = dict(source.problems)
    report.patches_total = len(source.patches)
    cfg.out.mkdir(parents=True, exist_ok=True)
    pending = []
    for p in source.patches:
        (report.skipped if spot_path(cfg.out, p.id).is_file() else pending).append(p.id)
    by_id = {p.id: p for p in source.patches}
    tiles = [Tile(str(pid), by_id[pid].vhr, by_id[pid].sentinel, VHR_YEAR) for pid in pending]

    # one search per group; each patch takes the first item (by id) that covers it entirely
    catalogs: dict[str, Catalog] = {}
    assigned: dict[str, tuple[str, list[Tile]]] = {}
    vhr_window = f"{VHR_YEAR}-01-01T00:00:00Z/{VHR_YEAR}-12-31T23:59:59Z"
    for group in group_tiles(tiles, cfg.recipe.group_size_m, lambda t: (vhr_window, VHR_YEAR)):
        try:
            found = search_vhr(group.tiles, cfg.recipe, catalogs, group.window)
        except CatalogError as error:
            report.failed.update({t.name: f"search failed: {error}" for t in group.tiles})
            continue
        report.searches += 1
        taken = set()
        for item_id in sorted(found):
            href, members = found[item_id]
            mine = [group.tiles[i] for i in members if i not in taken]
            taken.update(members)
            if mine:
                assigned.setdefault(item_id, (href, []))[1].extend(mine)
        for i, t in enumerate(group.tiles):
            if i not in taken:
                report.failed[t.name] = f"no {cfg.recipe.vhr.collection} item of {VHR_YEAR} covers the patch"

    # units: (VHR item, its patches), written by the workers
    with executor(cfg.workers, cfg.scheduler) as pool:
        futures = [(pool.submit(vhr_unit, href, [(int(t.name), t.vhr.to_dict(), str(spot_path(cfg.out, int(t.name))))
                                                 for t in members], header_bytes=cfg.recipe.vhr.header_bytes), members)
                   for href, members in assigned.values()]
        for k, (future, members) in enumerate(futures):
            try:
                for pid, reason in future.result().items():
                    if reason:
                        report.failed[str(pid)] = reason
                    else:
                        report.done.append(pid)
            except Exception as error:  # a worker that died or an unreadable image: its patches fail
                for t in members:
                    report.failed[t.name] = f"{error.__class__.__name__}: {' '.join(str(error).split())}"
            if progress:
                progress("vhr", k + 1, len(futures))

    # the source tree, carried over unchanged
    for path in sorted(cfg.source.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            place_copy(path, cfg.out / path.relative_to(cfg.source))
    folds: dict[int, list[int]] = {}
    for p in source.patches:
        folds.setdefault(p.fold, []).append(p.id)
    for name, folder in NORM_SERIES.items():
        target = cfg.out / f"NORM_{name}_patch.json"
        if not target.is_file() and (cfg.source / folder).is_dir():
            write_json(target, fold_statistics(cfg.source, folder, name, folds))
            report.norm_written.append(target.name)
    report.seconds = time.perf_counter() - t0
    write_json(cfg.out / REPORT, report.to_dict())
    return report
