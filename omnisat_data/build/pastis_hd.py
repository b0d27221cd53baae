"""`omnisat-data build pastis-r`: a PASTIS-R tree + a VHR STAC collection -> a PASTIS-HD tree.

The flow, top to bottom (the engine every build shares: build/engine.py):
  1. read the PASTIS-R tree (patches and their exact grids: formats/pastis.py); skip patches whose
     VHR image is already written;
  2. `add_vhr`: group patches by neighbourhood; one VHR search per group; one unit of work per
     (VHR item, its patches): open the image once, and for every patch it covers read the window it
     needs, area-average it onto the patch's 1 m grid and write
     DATA_SPOT/PASTIS_SPOT6_RVB_1M00_2019/SPOT6_RVB_1M00_2019_<ID>.tif (in the worker: no raster
     travels back);
  3. `add_sentinel` (--sentinel): the Sentinel series re-fetched from STAC over the recipe's period,
     one frame per day (build/pastis_series.py), each patch's arrays then its record stac/items/<ID>.json;
  4. carry the source tree over unchanged (hard links where possible; with --sentinel its series,
     dates and NORM files are replaced), write the per-fold NORM_*_patch.json files that are missing,
     and a build report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from shapely.geometry import box, shape

from omnisat_data.formats.pastis import (
    DATE_PROPERTIES,
    FOLDERS,
    NORM_SERIES,
    read_pastis,
    save_npy,
    series_path,
    spot_path,
)
from omnisat_data.formats.treesatai_ts import S2_BANDS
from omnisat_data.geo.grid import Grid, crs_string, transformer
from omnisat_data.geo.resample import Window, area_average
from omnisat_data.geo.tile import Tile
from omnisat_data.io.atomic import place_copy, remove_stale_temporaries, write_json
from omnisat_data.io.paths import check_apart, without_queries
from omnisat_data.io.raster import write_gtiff
from omnisat_data.io.workers import check_scheduler, executor
from omnisat_data.recipe import Recipe, RecipeError
from omnisat_data.stac.acquisitions import Acquisition, signed
from omnisat_data.stac.gdal import gdal_http_env
from omnisat_data.stac.products import s2_tile
from omnisat_data.stac.search import Catalog, Search, cached_catalog

from .engine import Batch, Frame, read_batches, split_group
from .pastis_series import daily_series, pastis_unit
from .plan import (
    Group,
    PlanFile,
    PlanRow,
    PlanUse,
    ReadTally,
    Unit,
    VhrItem,
    group_bbox,
    group_tiles,
    plan_key,
    plan_rows,
    planned,
    sentinel_search,
    tile_fingerprint,
)
from .report import REPORT, BuildReport
from .sentinel import ReadSpec

VHR_YEAR = 2019  # the PASTIS-HD SPOT images are of 2019; the search window is that year
MANIFEST = Path("stac")


@dataclass(frozen=True)
class PastisConfig:
    source: Path
    recipe: Recipe
    out: Path
    workers: int = 2
    scheduler: str | None = None  # a Dask scheduler address: the units run on its workers
    sentinel: bool = False  # re-fetch DATA_S2 / DATA_S1A / DATA_S1D from STAC over the recipe's period
    batch_patches: int = 4  # patches whose Sentinel frames are held in memory together
    strict: bool = (
        False  # --sentinel: a scene that cannot be read fails the patches it covers (default: they lose that day)
    )
    replan: bool = False  # search again even if OUT/plan.json holds a plan for this recipe and source

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("--workers must be 0 or more")


# -- the unit of work (runs in a worker process) -------------------------------------------------------

def vhr_unit(href: str, targets: list[tuple[str, dict, str]], header_bytes: int = 16384,
             timeout_s: float = 30.0, sign: str = "never", bands: tuple[int, ...] = ()) -> dict[str, str]:
    """Open one VHR image; for each (tile name, VHR grid as dict, output path): read the window under
    the tile, area-average every band (or `bands`, 1-based, in that order) onto the grid, write the uint8
    tif. Returns name -> "" (done) or the reason."""
    results = {}
    with rasterio.Env(**gdal_http_env(header_bytes, timeout_s)), rasterio.open(signed(href, sign)) as src:
        crs = crs_string(src.crs)
        source = Grid(crs, src.transform, (src.height, src.width))
        for name, grid_dict, path in targets:
            grid = Grid.from_dict(grid_dict)
            try:
                left, bottom, right, top = grid.bounds
                xs, ys = transformer(grid.crs, crs).transform([left, right, right, left], [top, top, bottom, bottom])
                window = rasterio.windows.from_bounds(min(xs), min(ys), max(xs), max(ys), src.transform)
                window = window.round_offsets().round_lengths()
                window = rasterio.windows.Window(
                    window.col_off - 2, window.row_off - 2, window.width + 4, window.height + 4
                )
                full = rasterio.windows.Window(0, 0, src.width, src.height)
                window = window.intersection(full)
                data = src.read(list(bands) or None, window=window).astype(np.float64)
                values = area_average(data, source, grid, window=Window(
                    int(window.row_off), int(window.col_off), int(window.height), int(window.width)))
                if np.isnan(values).any():
                    raise ValueError(f"the image covers {100 * (1 - np.isnan(values[0]).mean()):.1f} % of the tile")
                write_gtiff(Path(path), np.rint(values).astype(np.uint8), grid)
                results[name] = ""
            except (ValueError, rasterio.errors.RasterioError) as error:
                results[name] = without_queries(f"{href}: {' '.join(str(error).split())}")
    return results


# -- normalisation files --------------------------------------------------------------------------------

def load_array(path: Path, problems: dict[str, str] | None = None) -> np.ndarray | None:
    """A patch's array, or None (with its problem recorded) when it is missing or unreadable: one corrupt
    file leaves that patch out of the statistics instead of aborting the build."""
    if not path.is_file():
        return None
    try:
        return np.load(path)
    except (ValueError, OSError, EOFError) as error:
        if problems is not None:
            problems[str(path)] = (
                f"unreadable .npy, left out of the NORM statistics ({' '.join(str(error).split())[:120]})"
            )
        return None


def fold_statistics(root: Path, folder: str, prefix: str, folds: dict[int, list[int]],
                    problems: dict[str, str] | None = None) -> dict:
    """{"Fold_k": {"mean": [C], "std": [C]}} over every pixel and date of the fold's patches."""
    out = {}
    for fold in sorted(folds):
        n, s, s2 = 0, 0.0, 0.0
        for pid in folds[fold]:
            a = load_array(root / folder / f"{prefix}_{pid}.npy", problems)
            if a is None:
                continue
            a = a.astype(np.float64)  # (T, C, H, W)
            n += a.shape[0] * a.shape[2] * a.shape[3]
            s = s + a.sum(axis=(0, 2, 3))
            s2 = s2 + (a * a).sum(axis=(0, 2, 3))
        if n:
            mean = s / n
            out[f"Fold_{fold}"] = {"mean": [float(v) for v in mean],
                                   "std": [float(v) for v in np.sqrt(np.maximum(s2 / n - mean**2, 0))]}
    return out


# -- the build ------------------------------------------------------------------------------------------

def check_recipe(recipe: Recipe, sentinel: bool = False) -> None:
    if sentinel:
        recipe.period_window()  # --sentinel searches over the recipe's period
    if recipe.format != "pastis-hd":
        raise RecipeError(f"recipe format is {recipe.format!r}; build pastis-r needs pastis-hd")
    if recipe.vhr is None:
        raise RecipeError("[vhr] missing: build pastis-r adds the VHR modality from it")
    if recipe.vhr.resampling != "average":
        raise RecipeError(
            f"[vhr].resampling {recipe.vhr.resampling!r}: VHR is put on the patch grid by area averaging (average)"
        )


def search_vhr(tiles: list[Tile], recipe: Recipe, catalogs: dict[str, Catalog], window: str) -> list[Unit]:
    """VHR items of one group, by item id: (item, indices of the tiles it covers entirely)."""
    vhr = recipe.vhr
    footprints = [t.vhr.lonlat_footprint() for t in tiles]
    bbox = group_bbox(footprints)
    catalog = cached_catalog(catalogs, vhr.catalog)
    out = {}
    for item in catalog.search(Search(collections=(vhr.collection,), bbox=bbox,
                                      datetime=window, filter=vhr.filter)):
        key = vhr.assets[0]
        if key not in item.assets:
            continue
        covered = shape(item.geometry) if item.geometry else box(*bbox)
        members = [i for i, f in enumerate(footprints) if covered.contains(f)]
        if members:
            out[item.id] = Unit(VhrItem(item.id, item.assets[key].href), tuple(members))
    return [out[item_id] for item_id in sorted(out)]


def vhr_search(recipe: Recipe, tally: ReadTally):
    def search(group: Group, catalogs: dict[str, Catalog]) -> None:
        group.units = search_vhr(group.tiles, recipe, catalogs, group.window)
        tally.searches += 1
    return search


def vhr_groups(tiles: list[Tile], every_tile: list[Tile], recipe: Recipe, year: int, where: PlanFile,
               tally: ReadTally, progress=None) -> tuple[list[Group], PlanUse]:
    """The plan's "vhr" section for `tiles`: one search per group over `year` (build/plan.py)."""
    window = f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"
    return planned(where, "vhr", {t.name: tile_fingerprint(t) for t in every_tile}, every_tile, tiles,
                   lambda todo: group_tiles(todo, recipe.group_size_m, lambda t: (window, year)),
                   vhr_search(recipe, tally), VhrItem, tally, progress)


def add_vhr(tiles: list[Tile], every_tile: list[Tile], recipe: Recipe, year: int, path_of: Callable[[str], Path],
            workers: int, scheduler: str | None, where: PlanFile, progress=None,
            ) -> tuple[list[str], dict[str, str], int, PlanUse]:
    """The VHR image of each of `tiles`, area-averaged onto its VHR grid and written to `path_of(name)`.

    One search per group of tiles over `year` (the plan's "vhr" section: build/plan.py; `every_tile`:
    the build's tiles, which the plan may hold); each tile takes the first item (by id) that covers it
    entirely; one unit per item, written by the workers (no raster travels back).
    Returns (names written, name -> reason for those that failed, searches, how the plan was come by)."""
    tally = ReadTally()
    groups, use = vhr_groups(tiles, every_tile, recipe, year, where, tally, progress)
    assigned: dict[str, tuple[str, list[Tile]]] = {}
    failed: dict[str, str] = {}
    for group in groups:
        if group.failed:
            failed.update({group.tiles[i].name: reason for i, reason in group.failed.items()})
            continue
        taken = set()
        for u in group.units:
            mine = [group.tiles[i] for i in u.tiles if i not in taken]
            taken.update(u.tiles)
            if mine:
                assigned.setdefault(u.source.item_id, (u.source.href, []))[1].extend(mine)
        for i, t in enumerate(group.tiles):
            if i not in taken:
                failed[t.name] = f"no {recipe.vhr.collection} item of {year} covers it"

    done = []
    with executor(workers, scheduler) as pool:
        futures = [(pool.submit(vhr_unit, href, [(t.name, t.vhr.to_dict(), str(path_of(t.name))) for t in members],
                                header_bytes=recipe.vhr.header_bytes, timeout_s=recipe.vhr.timeout_s,
                                sign=recipe.vhr.sign, bands=recipe.vhr.bands), members)
                   for href, members in assigned.values()]
        for k, (future, members) in enumerate(futures):
            try:
                for name, reason in future.result().items():
                    if reason:
                        failed[name] = reason
                    else:
                        done.append(name)
            except Exception as error:  # a worker that died or an unreadable image: its tiles fail
                for t in members:
                    failed[t.name] = without_queries(f"{error.__class__.__name__}: {' '.join(str(error).split())}")
            if progress:
                progress("vhr", k + 1, len(futures))
    return done, failed, tally.searches, use


# -- Sentinel series (--sentinel, own areas) --------------------------------------------------------------

def record_path(out: Path, pid: int | str) -> Path:
    """The patch's build record (its dates per series), written after its arrays: the completion marker."""
    return out / MANIFEST / "items" / f"{pid}.json"


def read_record(out: Path, pid: int | str) -> dict | None:
    """The record of a patch whose three arrays are written (possibly without days lost to unreadable
    scenes: `record["lost"]`), else None."""
    path = record_path(out, pid)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    complete = all(series_path(out, name, pid).is_file() for name in FOLDERS)
    return record if complete else None


def series_complete(out: Path, pid: int | str) -> bool:
    """Written with every day: a rerun leaves it alone (a patch that lost days is read again)."""
    record = read_record(out, pid)
    return record is not None and not record.get("lost")


def sentinel_specs(recipe: Recipe) -> dict[str, ReadSpec]:
    spec1 = ReadSpec(recipe.s1.assets, recipe.s1.resampling, header_bytes=recipe.s1.header_bytes,
                     timeout_s=recipe.s1.timeout_s, concurrency=recipe.s1.concurrency)
    return {"s2": ReadSpec(recipe.s2.assets, recipe.s2.resampling, round_values=True,
                           header_bytes=recipe.s2.header_bytes, timeout_s=recipe.s2.timeout_s, band_nodata=0,
                           concurrency=recipe.s2.concurrency),
             "s1-asc": spec1, "s1-des": spec1}


def write_patch(out: Path, tile: Tile, frames: list[Frame], lost: list[dict] | None = None) -> dict:
    """One patch's three arrays, then its record (with the acquisitions `lost` to read errors, if any);
    ValueError when a series has no complete day."""
    shape = tile.sentinel.shape
    written = {}
    for name, (_, prefix) in FOLDERS.items():
        mine = [f for f in frames if f.series == name]
        if name == "s2":
            daily = daily_series(mine, len(S2_BANDS), np.int16, shape)
        else:
            daily = daily_series(mine, 3, np.float16, shape)
        if not daily.dates:
            raise ValueError(f"no day on which {prefix} data cover the whole patch")
        written[name] = daily
    for name, daily in written.items():
        save_npy(series_path(out, name, tile.name), daily.data)
    s2_tiles = sorted({s2_tile(f.product) for f in frames if f.series == "s2"} - {""})
    record = {"id": tile.name, "proj:code": tile.sentinel.crs, "proj:transform": list(tile.sentinel.transform)[:6],
              "proj:shape": list(shape), "s2_tiles": s2_tiles,
              "dates": {FOLDERS[name][1]: list(d.dates) for name, d in written.items()},
              "items": {FOLDERS[name][1]: [list(i) for i in d.items] for name, d in written.items()},
              **({"lost": lost} if lost else {})}
    write_json(record_path(out, tile.name), record)
    return record


def sentinel_groups(tiles: list[Tile], every_tile: list[Tile], s2_tiles: dict[str, str], recipe: Recipe,
                    where: PlanFile, tally: ReadTally, progress=None) -> tuple[list[Group], PlanUse]:
    """The plan's "sentinel" section for `tiles`: one search per group over `recipe.period`."""
    window = recipe.period_window()
    # PASTIS series come from one Sentinel-2 tile: other tiles' scenes of the same day are left out
    search = sentinel_search(recipe, tally, accept=lambda acq, t: acq.series != "s2"
                             or s2_tiles.get(t.name, "") in ("", s2_tile(acq.product)))
    return planned(where, "sentinel", {t.name: tile_fingerprint(t, s2_tiles.get(t.name, "")) for t in every_tile},
                   every_tile, tiles, lambda todo: group_tiles(todo, recipe.group_size_m, lambda t: (window, None)),
                   search, Acquisition, tally, progress)


def add_sentinel(tiles: list[Tile], every_tile: list[Tile], s2_tiles: dict[str, str], recipe: Recipe, out: Path,
                 workers: int, scheduler: str | None, batch: int, report: BuildReport, where: PlanFile,
                 progress=None, strict: bool = False) -> None:
    """DATA_S2, DATA_S1A, DATA_S1D of these patches from STAC, over `recipe.period` (the build engine:
    build/engine.py; the plan's "sentinel" section: build/plan.py). `s2_tiles`: patch name -> its
    Sentinel-2 tile (e.g. 32ULU): PASTIS series come from that tile only; patches absent from it take
    every Sentinel-2 scene. A scene that cannot be read costs the patches it covers that day (recorded; a
    rerun reads them again), or fails them when `strict`."""
    tally = ReadTally()
    groups, report.plan["sentinel"] = sentinel_groups(tiles, every_tile, s2_tiles, recipe, where, tally, progress)

    def finish(b: Batch) -> None:
        for i, tile in enumerate(b.tiles):
            if i in b.failed:
                report.failed[tile.name] = b.failed[i]
                continue
            try:
                write_patch(out, tile, b.frames.get(i, []), b.lost.get(i))
                report.series_done.append(int(tile.name))
                if b.lost.get(i):
                    report.lost[tile.name] = b.lost[i]
            except ValueError as error:
                report.failed[tile.name] = str(error)

    batches = [b for g in groups for b in split_group(g, batch)]
    read_batches(batches, pastis_unit, sentinel_specs(recipe), workers, scheduler, tally, finish, out, progress,
                 strict=strict)
    report.searches += tally.searches
    report.blocks += tally.blocks
    report.refused_items.update(tally.refused_items)


# AnySat's PASTIS loader reads NORM_<modality>_patch.json for each of its modalities (lower case; "s1" is
# the ascending series) and computes it from the data when absent, so the files must exist.
ANYSAT_NORM = {"s2": "S2", "s1a": "S1A", "s1d": "S1D", "s1": "S1A", "spot": "SPOT"}


def patch_array(out: Path, prefix: str, pid: int, problems: dict[str, str] | None = None) -> np.ndarray | None:
    if prefix != "SPOT":
        return load_array(out / NORM_SERIES[prefix] / f"{prefix}_{pid}.npy", problems)
    path = spot_path(out, pid)
    if not path.is_file():
        return None
    with rasterio.open(path) as src:
        return src.read()[None]  # (1, 3, H, W): one "date"


def anysat_statistics(out: Path, prefix: str, folds: dict[int, list[int]],
                      problems: dict[str, str] | None = None) -> dict:
    """{"Fold_1".."Fold_5": {"mean", "std"}} with AnySat's estimator (the mean over patches of each patch's
    per-channel mean and unbiased std over dates and pixels); a fold without patches gets the figures of
    all patches, so that any choice of folds reads."""
    per_patch = {}
    for ids in folds.values():
        for pid in ids:
            a = patch_array(out, prefix, pid, problems)
            if a is not None:
                a = a.astype(np.float64)
                per_patch[pid] = (a.mean(axis=(0, 2, 3)), a.std(axis=(0, 2, 3), ddof=1))
    if not per_patch:
        return {}

    def average(ids) -> dict:
        rows = [per_patch[i] for i in ids if i in per_patch] or list(per_patch.values())
        return {"mean": [float(v) for v in np.mean([r[0] for r in rows], axis=0)],
                "std": [float(v) for v in np.mean([r[1] for r in rows], axis=0)]}
    return {f"Fold_{fold}": average(folds.get(fold, ())) for fold in range(1, 6)}


def write_norm(out: Path, folds: dict[int, list[int]], overwrite: bool, report: BuildReport) -> None:
    for name, folder in NORM_SERIES.items():
        target = out / f"NORM_{name}_patch.json"
        if (overwrite or not target.is_file()) and (out / folder).is_dir():
            write_json(target, fold_statistics(out, folder, name, folds, report.source_problems))
            report.norm_written.append(target.name)
    for modality, prefix in ANYSAT_NORM.items():
        target = out / f"NORM_{modality}_patch.json"
        if overwrite or not target.is_file():
            stats = anysat_statistics(out, prefix, folds, report.source_problems)
            if stats:
                write_json(target, stats)
                report.norm_written.append(target.name)


def with_dates(feature: dict, record: dict) -> dict:
    props = {k: v for k, v in feature["properties"].items() if k not in DATE_PROPERTIES}
    for name, dates in record["dates"].items():
        props[f"dates-{name}"] = {str(i): int(d) for i, d in enumerate(dates)}  # keys in array order
    return {**feature, "properties": props}


def patch_tiles(cfg: PastisConfig, source, report: BuildReport,
                ) -> tuple[list[Tile], list[Tile], list[Tile], dict[str, str]]:
    """The source's patches as tiles: all of them, those without their VHR image yet (the others are
    counted skipped), those without a complete re-fetched series, and each one's Sentinel-2 tile."""
    tiles = [Tile(str(p.id), p.vhr, p.sentinel, VHR_YEAR) for p in source.patches]
    pending = []
    for p, t in zip(source.patches, tiles):
        (report.skipped.append(p.id) if spot_path(cfg.out, p.id).is_file() else pending.append(t))
    series_todo = [t for p, t in zip(source.patches, tiles) if not series_complete(cfg.out, p.id)]
    return tiles, pending, series_todo, {str(p.id): p.tile[1:].upper() for p in source.patches}


def dry_run(cfg: PastisConfig, progress=None) -> tuple[list[PlanRow], BuildReport]:
    """The plan `build pastis-r` would run (its VHR section; with --sentinel its Sentinel section too) and
    what its units touch, from OUT/plan.json when it holds it, else searched; reads no pixel, writes nothing."""
    check_recipe(cfg.recipe, cfg.sentinel)
    report = BuildReport("pastis-hd")
    source = read_pastis(cfg.source, require_dates=not cfg.sentinel)
    report.source_problems, report.total = dict(source.problems), len(source.patches)
    every_tile, pending, series_todo, s2_tiles = patch_tiles(cfg, source, report)
    where = PlanFile(cfg.out, plan_key(cfg.recipe, "pastis-hd"), cfg.replan, write=False)
    tally, sizes = ReadTally(), {}
    groups, report.plan["vhr"] = vhr_groups(pending, every_tile, cfg.recipe, VHR_YEAR, where, tally, progress)
    rows = plan_rows("vhr", groups, sizes)
    if cfg.sentinel:
        groups, report.plan["sentinel"] = sentinel_groups(series_todo, every_tile, s2_tiles, cfg.recipe, where,
                                                          tally, progress)
        rows += plan_rows("sentinel", groups, sizes)
    report.searches, report.refused_items = tally.searches, tally.refused_items
    return rows, report


def build_pastis(cfg: PastisConfig, progress=None) -> BuildReport:
    t0 = time.perf_counter()
    check_recipe(cfg.recipe, cfg.sentinel)
    check_apart(cfg.out, cfg.source)
    report = BuildReport("pastis-hd")
    source = read_pastis(cfg.source, require_dates=not cfg.sentinel)
    if cfg.scheduler:
        check_scheduler(cfg.scheduler)
    report.source_problems = dict(source.problems)
    report.total = len(source.patches)
    cfg.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cfg.out)
    every_tile, pending, series_todo, s2_tiles = patch_tiles(cfg, source, report)
    by_id = {p.id: p for p in source.patches}
    where = PlanFile(cfg.out, plan_key(cfg.recipe, "pastis-hd"), cfg.replan)
    done, failed, searches, report.plan["vhr"] = add_vhr(
        pending, every_tile, cfg.recipe, VHR_YEAR, lambda name: spot_path(cfg.out, int(name)),
        cfg.workers, cfg.scheduler, where, progress)
    report.done.extend(int(name) for name in done)
    report.failed.update(failed)
    report.searches += searches
    if cfg.sentinel:
        add_sentinel(series_todo, every_tile, s2_tiles, cfg.recipe, cfg.out, cfg.workers, cfg.scheduler,
                     cfg.batch_patches, report, where, progress, strict=cfg.strict)

    # the source tree, carried over unchanged (with --sentinel: but its series and their dates)
    replaced = set(NORM_SERIES.values()) if cfg.sentinel else set()
    for path in sorted(cfg.source.rglob("*")):
        rel = path.relative_to(cfg.source)
        if path.is_file() and not path.name.startswith(".") and rel.parts[0] not in replaced:
            if cfg.sentinel and (rel == Path("metadata.geojson") or path.name.startswith("NORM_")):
                continue
            place_copy(path, cfg.out / rel)
    if cfg.sentinel:
        doc = json.loads((cfg.source / "metadata.geojson").read_text())
        features = []
        for feature in doc["features"]:
            pid = int(feature["properties"]["ID_PATCH"])
            record = read_record(cfg.out, pid) if pid in by_id else None
            if record is not None and spot_path(cfg.out, pid).is_file():
                features.append(with_dates(feature, record))
        write_json(cfg.out / "metadata.geojson", {**doc, "features": features})
    folds: dict[int, list[int]] = {}
    for p in source.patches:
        folds.setdefault(p.fold, []).append(p.id)
    write_norm(cfg.out, folds, cfg.sentinel, report)
    report.seconds = time.perf_counter() - t0
    write_json(cfg.out / REPORT, report.to_dict())
    return report
