"""`omnisat-data build grid`: TreeSatAI-TS or PASTIS-HD for your own area, every modality from STAC.

The flow, top to bottom:
  1. the tiles: one per polygon of a vector file, or a regular grid over a lon/lat box (build/own_tiles.py),
     in a projected CRS (default: the UTM zone of the area);
  2. the VHR modality of each tile from the recipe's [vhr] collection, area-averaged onto the tile's
     VHR grid (the PASTIS-HD build's `add_vhr`): aerial/<name>.tif (treesatai-ts) or
     DATA_SPOT/.../SPOT6_RVB_1M00_2019_<ID>.tif (pastis-hd);
  3. the Sentinel series through the engine every build shares: for treesatai-ts the TreeSatAI-TS
     build itself, fed these tiles (h5, pth, manifest, splits, statistics); for pastis-hd the
     PASTIS-HD build's `add_sentinel` (one complete frame per day over the recipe's period);
  4. pastis-hd: metadata.geojson (footprints in EPSG:2154, folds 1-5 from the tile id, TILE = the
     Sentinel-2 tile the series came from) and the per-fold NORM files.
Labels: with `labels` (a vector file of class polygons) and `label_field`, TreeSatAI-TS gets each
tile's class fractions and PASTIS-HD its TARGET / INSTANCES rasters (build/own_labels.py); without, what the
loaders need to read the tree for pretraining (an explicit "unlabelled" entry per tile; all-background
targets). Reruns resume: complete tiles are skipped.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnisat_data.formats.pastis import save_npy
from omnisat_data.formats.treesatai import SourceError, TreeSatSource
from omnisat_data.geo.grid import transformer
from omnisat_data.io.atomic import remove_stale_temporaries, write_json
from omnisat_data.io.workers import check_scheduler
from omnisat_data.recipe import Recipe, RecipeError

from .own_labels import ClassPolygons, pastis_annotations, read_class_polygons, treesatai_labels
from .own_tiles import OwnTiles, fold_of, split_of, tiles_from_bbox, tiles_from_file
from .pastis_hd import (
    add_sentinel,
    add_vhr,
    read_record,
    sentinel_groups,
    series_complete,
    spot_path,
    vhr_groups,
    with_dates,
    write_norm,
)
from .plan import PlanFile, PlanRow, Progress, ReadTally, plan_key, plan_rows
from .report import REPORT, BuildReport
from .treesatai_ts import BuildConfig, build_treesatai, is_complete, plan_build

TILE_SIZE_M = {"treesatai-ts": 60.0, "pastis-hd": 1280.0}  # the released datasets' tiles


@dataclass(frozen=True)
class GridConfig:
    recipe: Recipe  # its format says what is built; it needs a [vhr] section
    out: Path
    tiles: Path | None = None  # vector file of tile polygons ...
    bbox: tuple[float, float, float, float] | None = None  # ... or a lon/lat box tiled regularly
    tile_size_m: float | None = None  # default: the format's (60 m, 1280 m)
    crs: str | None = None  # default: the UTM zone of the area's centre
    year: int = 2019  # VHR year; treesatai-ts: the series cover it (or the recipe's first_year if earlier)
    workers: int = 2
    scheduler: str | None = None
    limit: int | None = None  # first N tiles only
    labels: Path | None = None  # vector file of class polygons (any CRS) ...
    label_field: str | None = None  # ... and the field holding each polygon's class
    strict: bool = False  # a scene that cannot be read fails the tiles it covers (default: they lose that date)
    replan: bool = False  # search again even if OUT/plan.json holds a plan for this recipe and these tiles
    format: str | None = None  # when given (--format), what the recipe's format must be

    def __post_init__(self) -> None:
        if self.format and self.format != self.recipe.format:
            raise RecipeError(f"{self.recipe.path or 'recipe'}: format {self.recipe.format!r} but "
                              f"--format {self.format}")
        if self.workers < 0:
            raise ValueError("--workers must be 0 or more")


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """"WEST,SOUTH,EAST,NORTH" in degrees (--bbox)."""
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"--bbox {text!r}: expected WEST,SOUTH,EAST,NORTH in degrees")
    return box


def parse_tile_size(text: str) -> float:
    """"60m", "1280m" or a number of metres (--tile-size)."""
    try:
        return float(text.removesuffix("m"))
    except ValueError:
        raise ValueError(f"--tile-size {text!r}: expected metres such as 60m or 1280m") from None


def check_recipe(recipe: Recipe) -> None:
    if recipe.vhr is None:
        raise RecipeError("[vhr] missing: build grid fetches the VHR modality from it")
    if recipe.vhr.resampling != "average":
        raise RecipeError(
            f"[vhr].resampling {recipe.vhr.resampling!r}: VHR is put on the tile grid by area averaging (average)"
        )
    if recipe.format == "pastis-hd":
        recipe.period_window()  # the PASTIS-HD Sentinel series are searched over it


def class_polygons(cfg: GridConfig) -> ClassPolygons | None:
    if (cfg.labels is None) != (cfg.label_field is None):
        raise SourceError("--labels FILE and --label-field NAME go together")
    return read_class_polygons(cfg.labels, cfg.label_field) if cfg.labels is not None else None


def own_tiles(cfg: GridConfig) -> OwnTiles:
    if (cfg.tiles is None) == (cfg.bbox is None):
        raise SourceError("give either a file of tile polygons (--tiles) or a bounding box (--bbox), not both")
    fmt = cfg.recipe.format
    size = TILE_SIZE_M[fmt] if cfg.tile_size_m is None else cfg.tile_size_m
    if cfg.limit is not None and cfg.limit < 1:
        raise SourceError(f"--limit {cfg.limit}: expected at least 1 tile")
    if fmt == "pastis-hd" and cfg.crs and not cfg.crs.upper().startswith(("EPSG:326", "EPSG:327")):
        raise SourceError(f"--crs {cfg.crs}: PASTIS-HD patches live on the UTM grid of their Sentinel-2 tile "
                          "(EPSG:326xx or 327xx)")
    vhr_res = cfg.recipe.vhr.resolution
    if cfg.tiles is not None:
        own = tiles_from_file(cfg.tiles, size, cfg.crs, vhr_res, cfg.year, integer_ids=fmt == "pastis-hd")
    else:
        own = tiles_from_bbox(cfg.bbox, size, cfg.crs, vhr_res, cfg.year, integer_ids=fmt == "pastis-hd",
                              limit=cfg.limit)
    if abs(size / vhr_res - round(size / vhr_res)) > 1e-9:
        raise SourceError(f"tile size {size:g} m is not a whole number of [vhr] pixels of {vhr_res:g} m")
    tiles = tuple(sorted(own.tiles, key=lambda t: t.name)[: cfg.limit])
    return OwnTiles(tiles, {t.name: own.polygons[t.name] for t in tiles}, own.problems)


def usable_tiles(cfg: GridConfig) -> OwnTiles:
    own = own_tiles(cfg)
    if not own.tiles:
        raise SourceError(f"{cfg.tiles or cfg.bbox}: no usable tile"
                          + (f" ({own.problems[0][0]}: {own.problems[0][1]})" if own.problems else ""))
    return own


def build_grid(cfg: GridConfig, progress: Progress | None = None) -> BuildReport:
    check_recipe(cfg.recipe)
    own = usable_tiles(cfg)
    polygons = class_polygons(cfg)
    if cfg.scheduler:
        check_scheduler(cfg.scheduler)
    cfg.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cfg.out)
    if cfg.recipe.format == "treesatai-ts":
        return _treesatai_ts(cfg, own, polygons, progress)
    return _pastis_hd(cfg, own, polygons, progress)


def aerial_source(cfg: GridConfig, own: OwnTiles, ready: tuple, aerial: dict[str, Path], labels: dict,
                  ) -> TreeSatSource:
    """The `ready` tiles as the TreeSatAI-TS build's source: their aerial tiles in OUT/aerial."""
    return TreeSatSource(
        root=cfg.out, tiles=ready, files={t.name: aerial[t.name] for t in ready}, labels=labels,
        splits={split: tuple(f"{t.name}.tif" for t in ready if split_of(t.name) == split)
                for split in ("train", "test")},
        problems=own.problems)


def series_config(cfg: GridConfig) -> BuildConfig:
    return BuildConfig(cfg.out, cfg.recipe, cfg.out, cfg.workers, cfg.scheduler, year=cfg.year, strict=cfg.strict,
                       replan=cfg.replan)


def _treesatai_ts(cfg: GridConfig, own: OwnTiles, polygons: ClassPolygons | None, progress) -> BuildReport:
    report = BuildReport("treesatai-ts")
    aerial = {t.name: cfg.out / "aerial" / f"{t.name}.tif" for t in own.tiles}
    todo = [t for t in own.tiles if not aerial[t.name].is_file() and not is_complete(cfg.out, t.name)]
    where = PlanFile(cfg.out, plan_key(cfg.recipe, "treesatai-ts"), cfg.replan)
    _, failed, searches, report.plan["vhr"] = add_vhr(todo, list(own.tiles), cfg.recipe, cfg.year, aerial.__getitem__,
                                                      cfg.workers, cfg.scheduler, where, progress)
    ready = tuple(t for t in own.tiles if t.name not in failed)
    source = aerial_source(cfg, own, ready, aerial, treesatai_labels(polygons, list(ready)))
    report = build_treesatai(series_config(cfg), progress, source=source, report=report)
    report.searches += searches
    report.failed.update(failed)
    report.total = len(own.tiles)
    write_json(cfg.out / REPORT, report.to_dict(), sort_keys=True)
    return report


def _pastis_hd(cfg: GridConfig, own: OwnTiles, polygons: ClassPolygons | None, progress) -> BuildReport:
    t0 = time.perf_counter()
    report = BuildReport("pastis-hd", total=len(own.tiles), source_problems=dict(own.problems))
    pending = [t for t in own.tiles if not spot_path(cfg.out, int(t.name)).is_file()]
    report.skipped = [int(t.name) for t in own.tiles if t not in pending]
    where = PlanFile(cfg.out, plan_key(cfg.recipe, "pastis-hd"), cfg.replan)
    done, failed, searches, report.plan["vhr"] = add_vhr(
        pending, list(own.tiles), cfg.recipe, cfg.year, lambda name: spot_path(cfg.out, int(name)), cfg.workers,
        cfg.scheduler, where, progress)
    report.done.extend(int(name) for name in done)
    report.failed.update(failed)
    report.searches += searches
    todo = [t for t in own.tiles if t.name not in failed and not series_complete(cfg.out, t.name)]
    add_sentinel(todo, list(own.tiles), {}, cfg.recipe, cfg.out, cfg.workers, cfg.scheduler, 4, report, where,
                 progress, strict=cfg.strict)

    features, folds = [], {}
    for t in own.tiles:
        record = read_record(cfg.out, t.name)
        if record is None or not spot_path(cfg.out, int(t.name)).is_file():
            continue
        target, instances = pastis_annotations(polygons, t)
        parcels = len(np.unique(instances[instances > 0]))
        save_npy(cfg.out / "ANNOTATIONS" / f"TARGET_{t.name}.npy", target)
        save_npy(cfg.out / "INSTANCE_ANNOTATIONS" / f"INSTANCES_{t.name}.npy", instances)
        x, y = transformer(t.sentinel.crs, "EPSG:2154").transform(*zip(*own.polygons[t.name]))
        mgrs = Counter(record["s2_tiles"]).most_common(1)
        feature = {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[[
            [round(a, 3), round(b, 3)] for a, b in zip(x, y)]]]},
            "properties": {"ID_PATCH": int(t.name), "Fold": fold_of(t.name), "N_Parcel": parcels,
                           "Parcel_Cover": round(float((target[0] > 0).mean()), 4),
                           "TILE": f"t{mgrs[0][0].lower()}" if mgrs else ""}}
        features.append(with_dates(feature, record))
        folds.setdefault(fold_of(t.name), []).append(int(t.name))
    write_json(cfg.out / "metadata.geojson", {
        "type": "FeatureCollection", "name": "metadata",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}}, "features": features})
    write_norm(cfg.out, folds, True, report)
    report.seconds = time.perf_counter() - t0
    write_json(cfg.out / REPORT, report.to_dict())
    return report


def covered(groups: list) -> set[str]:
    """Names of the tiles some unit of these groups serves."""
    return {g.tiles[i].name for g in groups for u in g.units for i in u.tiles}


def dry_run(cfg: GridConfig, progress: Progress | None = None) -> tuple[list[PlanRow], BuildReport]:
    """The plan `build grid` would run, its VHR and Sentinel sections (OUT/plan.json's where it holds them,
    else searched), and what its units touch; reads no pixel and writes nothing. Tiles whose VHR image is
    not written yet are planned as if it will be, but for those no VHR item covers: the build fails them
    before their series."""
    check_recipe(cfg.recipe)
    own = usable_tiles(cfg)
    class_polygons(cfg)  # a bad --labels file is refused by the dry run as by the build
    fmt = cfg.recipe.format
    report = BuildReport(fmt, total=len(own.tiles), source_problems=dict(own.problems))
    where = PlanFile(cfg.out, plan_key(cfg.recipe, fmt), cfg.replan, write=False)
    tally, sizes = ReadTally(), {}
    if fmt == "treesatai-ts":
        aerial = {t.name: cfg.out / "aerial" / f"{t.name}.tif" for t in own.tiles}
        todo = [t for t in own.tiles if not aerial[t.name].is_file() and not is_complete(cfg.out, t.name)]
        groups, report.plan["vhr"] = vhr_groups(todo, list(own.tiles), cfg.recipe, cfg.year, where, tally, progress)
        rows = plan_rows("vhr", groups, sizes)
        uncovered = {t.name for t in todo} - covered(groups)
        source = aerial_source(cfg, own, tuple(t for t in own.tiles if t.name not in uncovered), aerial, {})
        _, _, _, groups = plan_build(series_config(cfg), report, tally, source, progress, write=False)
    else:
        pending = [t for t in own.tiles if not spot_path(cfg.out, int(t.name)).is_file()]
        report.skipped = [int(t.name) for t in own.tiles if t not in pending]
        groups, report.plan["vhr"] = vhr_groups(pending, list(own.tiles), cfg.recipe, cfg.year, where, tally,
                                                progress)
        rows = plan_rows("vhr", groups, sizes)
        uncovered = {t.name for t in pending} - covered(groups)
        todo = [t for t in own.tiles if t.name not in uncovered and not series_complete(cfg.out, t.name)]
        groups, report.plan["sentinel"] = sentinel_groups(todo, list(own.tiles), {}, cfg.recipe, where, tally,
                                                          progress)
    rows += plan_rows("sentinel", groups, sizes)
    report.total = len(own.tiles)  # (the TreeSatAI-TS planning counted only the tiles that get series)
    report.searches, report.refused_items = tally.searches, tally.refused_items
    return rows, report
