"""`omnisat-data build treesatai`: a TreeSatAI tree + STAC catalogs -> a TreeSatAI-TS tree.

The flow, top to bottom:
  1. read the source tree (tiles, labels, splits) and skip tiles already complete in `out`;
  2. group pending tiles by neighbourhood and series year; one search per group and modality;
  3. the groups' tiles in batches of at most `batch_tiles`; one read per acquisition for the whole build:
     open each asset once, resample every pending tile the scene covers (build/sentinel.py), in a pool
     of worker processes or on a Dask cluster, the values staged on disk until their batch is complete
     (steps 2-3 are the engine all builds share: build/engine.py, build/stage.py);
  4. when a batch's units are all back, assemble each of its tiles' series (build/treesatai_series.py),
     write them (formats/treesatai_ts.py), then the tile's manifest item, which marks it complete;
  5. write what spans tiles: aerial copies, labels, splits, statistics, collection and report.

A tile fails alone (its reason recorded) when a unit covering it fails; an item that cannot be
used at all (no ESA product name, missing asset) is refused with its reason and the tiles go on.
Reruns skip complete tiles; a killed build leaves only complete files under their final names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry import mapping

from omnisat_data.formats.treesatai import LABELS, TreeSatSource, read_treesatai
from omnisat_data.formats.treesatai_ts import (
    S2_BANDS,
    SERIES,
    Series,
    split_list,
    tile_files,
    write_tile,
)
from omnisat_data.geo.tile import Tile
from omnisat_data.io.atomic import place_copy, remove_stale_temporaries, write_json, write_text
from omnisat_data.io.paths import check_apart
from omnisat_data.io.workers import check_scheduler
from omnisat_data.recipe import Recipe, RecipeError, series_year
from omnisat_data.stac.acquisitions import Acquisition

from .engine import Batch, Frame, read_batches, split_group
from .plan import (
    Group,
    PlanFile,
    PlanRow,
    Progress,
    ReadTally,
    group_tiles,
    plan_key,
    plan_rows,
    planned,
    sentinel_search,
    tile_fingerprint,
)
from .report import REPORT, BuildReport
from .sentinel import BlockCount, ReadSpec, read_acquisition
from .treesatai_series import assemble

MANIFEST = Path("stac")
SERIES_NAMES = {"s2": "Sentinel-2", "s1-asc": "Sentinel-1 ascending", "s1-des": "Sentinel-1 descending"}
VAL_FRACTION = 0.1  # val carved from train: the first 10 % (at least 2) of train ranked by sha256(name)


@dataclass(frozen=True)
class BuildConfig:
    source: Path
    recipe: Recipe
    out: Path
    workers: int = 2  # worker processes; 0 reads in this process
    scheduler: str | None = None  # a Dask scheduler address (tcp://HOST:PORT): the units run on its workers
    batch_tiles: int = 256  # tiles of a group written together (each read spans every batch: engine.py)
    limit: int | None = None  # first N tiles (by name) only
    year: int | None = None  # fallback year for tiles missing from bb_60m.GeoJSON
    strict: bool = False  # a scene that cannot be read fails the tiles it covers (default: they lose that date)
    replan: bool = False  # search again even if OUT/plan.json holds a plan for this recipe and source

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError("--limit must be at least 1")
        if self.workers < 0:
            raise ValueError("--workers must be 0 or more")


# -- 1. source and resume -----------------------------------------------------------------------------

def manifest_item_path(out: Path, stem: str) -> Path:
    return out / MANIFEST / "items" / f"{stem}.json"


# The recipe fields a tile's values follow from (not where the catalog is, nor how bytes are fetched).
VALUE_FIELDS = ("collection", "assets", "resolution", "resampling", "filter", "masks", "mask_source",
                "mask_resampling", "harmonize")


def built_from(recipe: Recipe, aerial: Path) -> str:
    """Fingerprint of what a tile is built from: the series part of the recipe and the aerial tile's bytes.
    Stored in the tile's manifest item, so that a changed recipe or source rebuilds the tile."""
    series = {name: {k: getattr(src, k) for k in VALUE_FIELDS} for name, src in (("s2", recipe.s2), ("s1", recipe.s1))}
    text = json.dumps({"first_year": recipe.first_year, **series}, sort_keys=True, default=list)
    digest = hashlib.sha256(text.encode())
    digest.update(hashlib.sha256(aerial.read_bytes()).digest())
    return digest.hexdigest()


def is_complete(out: Path, stem: str, fingerprint: str | None = None) -> bool:
    """Complete = manifest item written (it is written last), every file it lists present, no date lost
    to a read error and, when `fingerprint` is given, built from the same recipe and source."""
    path = manifest_item_path(out, stem)
    if not path.is_file():
        return False
    try:
        item = json.loads(path.read_text())
    except ValueError:
        return False
    if fingerprint is not None and item.get("properties", {}).get("omnisat:built_from") != fingerprint:
        return False
    if item.get("properties", {}).get("omnisat:dates_lost"):
        return False
    return all((path.parent / a["href"]).resolve().is_file() for a in item.get("assets", {}).values())


# -- 2. groups and searches ---------------------------------------------------------------------------

def series_window(recipe: Recipe) -> Callable[[Tile], tuple[str, int]]:
    """A tile's search window: one calendar year, the aerial year or `first_year` if earlier."""
    def window(tile: Tile) -> tuple[str, int]:
        year = series_year(tile.year, recipe.first_year)
        return recipe.time_window(year), year
    return window


# -- 3. units of work ---------------------------------------------------------------------------------

def read_spec(recipe: Recipe, series: str) -> ReadSpec:
    if series == "s2":
        s2 = recipe.s2
        return ReadSpec(s2.assets, s2.resampling, s2.mask_resampling,
                        "none" if s2.mask_source == "none" or (s2.mask_source == "probability" and not s2.masks)
                        else s2.mask_source, round_values=True, header_bytes=s2.header_bytes, timeout_s=s2.timeout_s,
                        band_nodata=0, concurrency=s2.concurrency)
    return ReadSpec(recipe.s1.assets, recipe.s1.resampling, header_bytes=recipe.s1.header_bytes,
                    timeout_s=recipe.s1.timeout_s, concurrency=recipe.s1.concurrency)


def run_unit(acq: Acquisition, grids: tuple, spec: ReadSpec) -> tuple[np.ndarray, BlockCount]:
    return read_acquisition(acq, grids, spec)


# -- 4. tiles -----------------------------------------------------------------------------------------

def tile_series(frames: list[Frame]) -> dict[str, Series]:
    return {name: assemble([f for f in frames if f.series == name], len(S2_BANDS) if name == "s2" else 2,
                           sentinel2=name == "s2") for name in SERIES}


def manifest_item(out: Path, tile: Tile, files: dict[str, Path], aerial: Path, series: dict[str, Series],
                  year: int, fingerprint: str, lost: list[dict] | None = None) -> dict:
    here = manifest_item_path(out, tile.name).parent
    footprint = tile.vhr.lonlat_footprint()
    assets = {key: {"href": os.path.relpath(path, here), "roles": ["data"],
                    "type": "application/x-hdf5" if key == "h5" else "application/octet-stream"}
              for key, path in files.items()}
    assets["aerial"] = {"href": os.path.relpath(aerial, here), "roles": ["data"],
                        "type": "image/tiff; application=geotiff"}
    dates = {name: [{"datetime": dt.datetime.strptime(p.split("_")[2 if name == "s2" else 4][:15], "%Y%m%dT%H%M%S")
                     .replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z"), "product": p, "item": i}
                    for p, i in zip(s.products, s.item_ids)] for name, s in series.items()}
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": tile.name, "collection": "treesatai-ts",
        "geometry": mapping(footprint), "bbox": [round(v, 7) for v in footprint.bounds],
        "properties": {"datetime": None, "start_datetime": f"{year}-01-01T00:00:00Z",
                       "end_datetime": f"{year}-12-31T23:59:59Z", "treesatai:aerial_year": tile.year,
                       "proj:code": tile.sentinel.crs, "proj:shape": list(tile.sentinel.shape),
                       "proj:transform": list(tile.sentinel.transform)[:6], "omnisat:dates": dates,
                       "omnisat:built_from": fingerprint, **({"omnisat:dates_lost": lost} if lost else {})},
        "links": [], "assets": assets,
    }


def finish_group(group: Batch, cfg: BuildConfig, source: TreeSatSource, fingerprints: dict[str, str],
                 report: BuildReport, shares: dict[str, dict]) -> None:
    for i, tile in enumerate(group.tiles):
        if i in group.failed:
            report.failed[tile.name] = group.failed[i]
            continue
        series = tile_series(group.frames.get(i, []))
        missing = [name for name in SERIES if not len(series[name])]
        if missing:  # an empty series is an error (a misspelt collection, a wrong year), never a silent success
            report.failed[tile.name] = (
                f"no {SERIES_NAMES[missing[0]]} frame over the tile in {group.window} "
                f"(collection {cfg.recipe.s2.collection if missing[0] == 's2' else cfg.recipe.s1.collection})"
            )
            continue
        aerial = cfg.out / "aerial" / f"{tile.name}.tif"
        place_copy(source.files[tile.name], aerial)
        place_copy(source.files[tile.name], cfg.out / "aerial" / "60m" / f"{tile.name}.tif")
        for sensor in ("s1", "s2"):  # TorchGeo's mono-date folders, when the source has them
            mono = source.root / sensor / "60m" / f"{tile.name}.tif"
            if mono.is_file():
                place_copy(mono, cfg.out / sensor / "60m" / mono.name)
        files = write_tile(cfg.out, tile.name, series)
        shares[tile.name] = tile_sums({"sen-2-data": series["s2"].data, "sen-2-masks": series["s2"].masks,
                                       "sen-1-asc-data": series["s1-asc"].data,
                                       "sen-1-des-data": series["s1-des"].data})
        write_json(manifest_item_path(cfg.out, tile.name),
                   manifest_item(cfg.out, tile, files, aerial, series, group.year,
                                 fingerprints[tile.name], group.lost.get(i)), sort_keys=True)
        if group.lost.get(i):
            report.lost[tile.name] = group.lost[i]
        report.done.append(tile.name)
        report.tile_dates += sum(len(s) for s in series.values())
        report.dates[tile.name] = {name: len(s) for name, s in series.items()}
        completion = {name: {"mosaicked": s.mosaicked, "dropped": s.dropped} for name, s in series.items()
                      if s.mosaicked or s.dropped}
        if completion:
            report.completion[tile.name] = completion


# -- 5. what spans tiles ------------------------------------------------------------------------------

def carve_val(train: tuple[str, ...], fraction: float = VAL_FRACTION) -> set[str]:
    """Deterministic val split: train files ranked by sha256 of their name, the first `fraction` (>= 2)."""
    ranked = sorted(train, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    count = min(len(ranked), max(2, round(fraction * len(ranked)))) if len(ranked) >= 4 else 0
    return set(ranked[:count])


def write_splits(out: Path, source: TreeSatSource, complete: set[str]) -> dict[str, int]:
    splits = dict(source.splits)
    if "val" not in splits:
        val = carve_val(splits.get("train", ()))
        splits["val"] = tuple(n for n in splits.get("train", ()) if n in val)
        splits["train"] = tuple(n for n in splits.get("train", ()) if n not in val)
    counts = {}
    for name in ("train", "val", "test"):
        files = [f for f in splits.get(name, ()) if f.removesuffix(".tif") in complete]
        write_text(split_list(out, name), "".join(f + "\n" for f in files))
        counts[name] = len(files)
    return counts


STATISTICS = ("sen-2-data", "sen-2-masks", "sen-1-asc-data", "sen-1-des-data")


def tile_sums(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One tile's share of the band statistics: per h5 dataset of STATISTICS, (valid count, sum, sum of
    squares) per band, (3, bands) float64 from its float32 arrays."""
    out = {}
    for name in STATISTICS:
        data = arrays[name].astype(np.float64)
        valid = ~np.isnan(data)
        out[name] = np.stack([valid.sum(axis=(0, 2, 3)), np.where(valid, data, 0).sum(axis=(0, 2, 3)),
                              np.where(valid, data * data, 0).sum(axis=(0, 2, 3))])
    return out


def band_statistics(out: Path, stems: list[str], written: dict[str, dict] | None = None) -> dict:
    """Mean and std per band over the valid pixels of every complete tile: the shares of the tiles this run
    wrote (`written`, stem -> `tile_sums`), the others' read back from their h5 files; added in stem order."""
    import h5py

    sums: dict[str, list[np.ndarray]] = {}
    for stem in stems:
        share = (written or {}).get(stem)
        if share is None:
            with h5py.File(tile_files(out, stem)["h5"], "r") as f:
                share = tile_sums({name: f[name][()] for name in STATISTICS})
        for name, parts in share.items():
            acc = sums.setdefault(name, [np.zeros(parts.shape[1]) for _ in range(3)])
            for a, part in zip(acc, parts):
                a += part
    stats = {}
    for name, (n, s, s2) in sums.items():
        n = np.maximum(n, 1)
        mean = s / n
        stats[name] = {"mean": [round(float(v), 6) for v in mean],
                       "std": [round(float(v), 6) for v in np.sqrt(np.maximum(s2 / n - mean**2, 0))],
                       "count": [int(v) for v in n]}
    return stats


def write_collection(out: Path, stems: list[str], stats: dict, recipe: Recipe) -> None:
    bboxes = []
    for stem in stems:
        bboxes.append(json.loads(manifest_item_path(out, stem).read_text())["bbox"])
    b = np.array(bboxes) if bboxes else np.zeros((1, 4))
    collection = {
        "type": "Collection", "stac_version": "1.0.0", "id": "treesatai-ts",
        "description": "TreeSatAI-TS built by omnisat-data: aerial tiles with one year of Sentinel-2 and "
                       "Sentinel-1 (ascending, descending) time series co-registered on each tile's grid.",
        "license": "various",
        "extent": {"spatial": {"bbox": [[float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()),
                                         float(b[:, 3].max())]]},
                   "temporal": {"interval": [[None, None]]}},
        "summaries": {"omnisat:band_statistics": stats, "omnisat:s2_bands": list(S2_BANDS),
                      "omnisat:recipe": {"s2": recipe.s2.collection, "s1": recipe.s1.collection,
                                         "first_year": recipe.first_year}},
        "links": [{"rel": "item", "href": f"./items/{stem}.json", "type": "application/geo+json"} for stem in stems],
    }
    write_json(out / MANIFEST / "collection.json", collection, sort_keys=True)


# -- the build ----------------------------------------------------------------------------------------

def check_recipe(recipe: Recipe) -> None:
    if recipe.format != "treesatai-ts":
        raise RecipeError(f"recipe format is {recipe.format!r}; build treesatai needs treesatai-ts")
    for name, src in (("s2", recipe.s2), ("s1", recipe.s1)):
        methods = (src.resampling, src.mask_resampling) if name == "s2" else (src.resampling,)
        for m in methods:
            if m not in ("bilinear", "nearest"):
                raise RecipeError(f"[{name}] resampling {m!r}: a 10 m tile grid from 10-20 m scenes is sampled "
                                  "exactly with bilinear or nearest only")
    if tuple(recipe.s2.assets) != S2_BANDS:
        raise RecipeError(f"[s2].assets must be the TreeSatAI-TS band order {list(S2_BANDS)}")
    if tuple(recipe.s1.assets) != ("vv", "vh"):
        raise RecipeError('[s1].assets must be ["vv", "vh"] (the TreeSatAI-TS channel order)')


def plan_build(cfg: BuildConfig, report: BuildReport, tally: ReadTally, source: TreeSatSource | None = None,
               progress: Progress | None = None, write: bool = True,
               ) -> tuple[TreeSatSource, list[Tile], dict[str, str], list[Group]]:
    """The source's tiles, each one's fingerprint (`built_from`) and the groups of those not yet complete,
    with their units: OUT/plan.json's when it holds them for this recipe and source, else searched (and,
    when `write`, saved there)."""
    check_recipe(cfg.recipe)
    source = source or read_treesatai(cfg.source, cfg.year)
    report.source_problems = dict(source.problems)
    tiles = sorted(source.tiles, key=lambda t: t.name)[: cfg.limit]
    report.total = len(tiles)
    # "" = aerial tile not written yet (an own-area dry run): no stored plan matches it, so it is searched
    fingerprints = {t.name: built_from(cfg.recipe, source.files[t.name]) if source.files[t.name].is_file() else ""
                    for t in tiles}
    pending = []
    for t in tiles:
        if is_complete(cfg.out, t.name, fingerprints[t.name]):
            report.skipped.append(t.name)
        else:
            pending.append(t)
    where = PlanFile(cfg.out, plan_key(cfg.recipe, "treesatai-ts"), cfg.replan, write)
    groups, report.plan["sentinel"] = planned(
        where, "sentinel", {t.name: tile_fingerprint(t, fingerprints[t.name]) for t in tiles}, tiles, pending,
        lambda todo: group_tiles(todo, cfg.recipe.group_size_m, series_window(cfg.recipe)),
        sentinel_search(cfg.recipe, tally, one_granule=True), Acquisition, tally, progress)
    return source, tiles, fingerprints, groups


def build_treesatai(cfg: BuildConfig, progress: Progress | None = None, source: TreeSatSource | None = None,
                    report: BuildReport | None = None) -> BuildReport:
    """The build; `source` instead of reading `cfg.source` (own areas: aerial tiles already in `cfg.out`),
    `report` to add to one already started."""
    t0 = time.perf_counter()
    if source is None:
        check_apart(cfg.out, cfg.source)
    if cfg.scheduler and source is None:  # (own areas checked it before their aerial step)
        check_scheduler(cfg.scheduler)
    report = report or BuildReport("treesatai-ts")
    cfg.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cfg.out)
    tally = ReadTally()
    source, tiles, fingerprints, groups = plan_build(cfg, report, tally, source, progress)
    batches = [b for g in groups for b in split_group(g, cfg.batch_tiles)]
    specs = {name: read_spec(cfg.recipe, name) for name in SERIES}
    shares: dict[str, dict] = {}  # each written tile's share of the band statistics
    read_batches(batches, run_unit, specs, cfg.workers, cfg.scheduler, tally,
                 lambda batch: finish_group(batch, cfg, source, fingerprints, report, shares), cfg.out, progress,
                 strict=cfg.strict)
    report.searches, report.units, report.blocks = tally.searches, tally.units, tally.blocks
    report.refused_items = tally.refused_items

    # what the lists and statistics hold: complete tiles, and tiles written without their lost dates
    complete = sorted(t.name for t in tiles if is_complete(cfg.out, t.name, fingerprints[t.name])
                      or t.name in report.lost)
    labels = {f"{stem}.tif": source.labels[f"{stem}.tif"] for stem in complete if f"{stem}.tif" in source.labels}
    write_json(cfg.out / LABELS, labels, sort_keys=True)
    report.splits = write_splits(cfg.out, source, set(complete))
    write_collection(cfg.out, complete, band_statistics(cfg.out, complete, shares), cfg.recipe)
    report.seconds = time.perf_counter() - t0
    write_json(cfg.out / REPORT, report.to_dict(), sort_keys=True)
    return report


# -- dry run ------------------------------------------------------------------------------------------

def dry_run(cfg: BuildConfig, progress: Progress | None = None) -> tuple[list[PlanRow], BuildReport]:
    """The plan a build would run (OUT/plan.json's when it holds it, else searched) and what its units
    touch; reads no pixel and writes nothing."""
    report = BuildReport("treesatai-ts")
    tally = ReadTally()
    _, _, _, groups = plan_build(cfg, report, tally, progress=progress, write=False)
    rows = plan_rows("sentinel", groups)
    report.searches, report.refused_items = tally.searches, tally.refused_items
    return rows, report
