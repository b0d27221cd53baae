"""`omnisat-data`: make and serve synthetic worlds, search catalogs, build datasets (thin Typer wiring)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import typer

from .render import (
    console,
    error_text,
    fail,
    print_alignment,
    print_build_report,
    print_demo_result,
    print_grid_report,
    print_pastis_report,
    print_plan,
    progress_bar,
    staged_progress,
)

app = typer.Typer(help="Build, serve and check tri-modal Earth-observation datasets.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
world_app = typer.Typer(help="Synthetic Earth-observation worlds (the project's offline stand-in for the cloud).",
                        no_args_is_help=True)
stac_app = typer.Typer(help="STAC catalogs: serve a world through real servers, search any catalog.",
                       no_args_is_help=True)
build_app = typer.Typer(help="Build tri-modal datasets from source benchmarks and STAC catalogs.",
                        no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(stac_app, name="stac")
app.add_typer(build_app, name="build")

DEFAULT_DEMO_DIR = Path("demo")


def _known_errors():
    from omnisat_data.sim.serve.assets import PortInUse
    from omnisat_data.sim.serve.pgstac import ServerError
    from omnisat_data.stac.search import CatalogError

    # OSError: a full disk (ENOSPC), a read-only --out: one line naming the file, not a traceback
    return (OSError, ValueError, CatalogError, PortInUse, ServerError)


def _make_world(folder: Path, preset: str, config: Path | None, seed: int | None, workers: int | None,
                style: str) -> dict:
    from omnisat_data.sim.world.config import load_world_config
    from omnisat_data.sim.world.make import make_world

    cfg = load_world_config(preset, config, seed=seed)
    with progress_bar() as bar:
        task = bar.add_task(f"world {preset}", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"world {preset}: {stage}", completed=done, total=total)

        return make_world(folder, cfg, workers=workers, style=style, progress=report)


@world_app.command("make")
def world_make(
    folder: Path = typer.Argument(..., help="Folder to create (must be empty or absent)."),
    preset: str = typer.Option("demo", help="Named size: demo (default) or tiny (tests)."),
    config: Path | None = typer.Option(None, help="TOML file whose [world] table overrides the preset."),
    seed: int | None = typer.Option(None, help="Random seed of the world."),
    workers: int | None = typer.Option(None, help="Worker processes (default: all cores)."),
    catalog_style: str = typer.Option("planetary-computer", help="Asset keys: planetary-computer or earth-search."),
) -> None:
    """Generate a synthetic world: Sentinel-2/1, aerial and SPOT-like COGs, STAC items, source benchmarks."""
    try:
        if catalog_style not in ("planetary-computer", "earth-search"):
            raise ValueError(f"--catalog-style must be planetary-computer or earth-search, not {catalog_style!r}")
        summary = _make_world(folder, preset, config, seed, workers, catalog_style)
    except _known_errors() as exc:
        fail(error_text(exc))
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    console.print(f"world written to {folder} in {summary['seconds']['total']:.1f} s: {counts}")


@stac_app.command("serve")
def stac_serve(
    world: Path = typer.Argument(..., help="World folder made by `omnisat-data world make`."),
    port: int = typer.Option(0, help="STAC API port (0: any free port)."),
    asset_port: int = typer.Option(0, help="Asset (COG) server port (0: any free port)."),
    db_port: int = typer.Option(0, help="PostgreSQL port (0: any free port)."),
    pg_bin: str | None = typer.Option(None, help="PostgreSQL bin folder (default: newest /usr/lib/postgresql/*/bin)."),
) -> None:
    """Serve a world: its COGs over HTTP Range, its items through a pgstac STAC API, until interrupted."""
    from omnisat_data.sim.serve.world import WorldServers

    try:
        servers = WorldServers(world, asset_port=asset_port, api_port=port, db_port=db_port, pg_bin=pg_bin)
        servers.start()
    except _known_errors() as exc:
        fail(error_text(exc))
    print(json.dumps({"stac_api": servers.api.url, "assets": servers.assets.url}), flush=True)
    console.print(f"STAC API {servers.api.url}  assets {servers.assets.url}  (Ctrl-C to stop)")
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a closed terminal stops the servers too
        signal.signal(sig, _stop)
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        servers.stop()
        console.print("servers stopped")


@stac_app.command("search")
def stac_search(
    catalog: str = typer.Argument(..., help="STAC API URL or item file (ndjson, ItemCollection, geoparquet)."),
    collection: list[str] = typer.Option(..., help="Collection id (repeatable)."),
    bbox: str | None = typer.Option(None, help="west,south,east,north in degrees."),
    datetime: str | None = typer.Option(None, help="start/end (ISO 8601)."),
    max_cloud: float | None = typer.Option(None, help="Keep items with eo:cloud_cover below this."),
    orbit_state: str | None = typer.Option(None, help="ascending or descending (sat:orbit_state)."),
    limit: int = typer.Option(20, help="Items to print."),
) -> None:
    """Search a catalog and print matching item ids."""
    from omnisat_data.stac.search import Search, open_catalog

    clauses = []
    if max_cloud is not None:
        clauses.append({"op": "<", "args": [{"property": "eo:cloud_cover"}, max_cloud]})
    if orbit_state:
        clauses.append({"op": "=", "args": [{"property": "sat:orbit_state"}, orbit_state]})
    try:
        box = tuple(float(v) for v in bbox.split(",")) if bbox else None
        if box is not None and len(box) != 4:
            raise ValueError("--bbox needs four numbers: west,south,east,north")
        search = Search(collections=tuple(collection), bbox=box, datetime=datetime,
                        filter={"op": "and", "args": clauses} if clauses else None)
        count = 0
        for item in open_catalog(catalog).search(search):
            if count < limit:
                print(item.id, item.datetime.isoformat() if item.datetime else "", sep="\t")
            count += 1
    except _known_errors() as exc:
        fail(error_text(exc))
    console.print(f"{count} items")


def _build_treesatai(cfg):
    from omnisat_data.build.treesatai_ts import build_treesatai

    with progress_bar() as bar:
        return build_treesatai(cfg, progress=staged_progress(bar))


@build_app.command("treesatai")
def build_treesatai_command(
    source: Path = typer.Option(..., help="TreeSatAI tree (aerial/60m, labels, splits, geojson/bb_60m.GeoJSON)."),
    recipe: Path = typer.Option(Path("recipes/treesatai-ts.toml"), help="Build recipe (TOML)."),
    out: Path = typer.Option(..., help="Output TreeSatAI-TS folder (created; reruns resume)."),
    catalog: str | None = typer.Option(
        None, help="STAC API URL or item file for every modality (overrides the recipe)."
    ),
    workers: int = typer.Option(2, help="Worker processes reading scenes (0: in this process)."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler (tcp://HOST:PORT): run the units on its workers."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (searches, items, bytes) and stop."),
    limit: int | None = typer.Option(None, help="Build only the first N tiles (by name)."),
    year: int | None = typer.Option(None, help="Year for tiles missing from geojson/bb_60m.GeoJSON."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="A scene that cannot be read fails the tiles it covers "
        "(default: they are written without that date, recorded, and retried on rerun).",
    ),
) -> None:
    """Search, co-register and write TreeSatAI-TS (Sentinel-2, Sentinel-1 asc/des series per aerial tile)."""
    from omnisat_data.build.treesatai_ts import BuildConfig
    from omnisat_data.build.treesatai_ts import dry_run as plan_only
    from omnisat_data.formats.treesatai import SourceError
    from omnisat_data.io.workers import SchedulerError, check_scheduler
    from omnisat_data.recipe import load_recipe

    try:
        if limit is not None and limit < 1:
            raise ValueError("--limit must be at least 1")
        if workers < 0:
            raise ValueError("--workers must be 0 or more")
        loaded = load_recipe(recipe)
        if catalog:
            loaded = loaded.with_catalog(catalog)
        cfg = BuildConfig(source=source, recipe=loaded, out=out, workers=workers, limit=limit, year=year,
                          scheduler=scheduler, strict=strict)
        if scheduler:
            check_scheduler(scheduler)
        if dry_run:
            rows, report = plan_only(cfg)
        else:
            report = _build_treesatai(cfg)
    except _known_errors() + (SourceError, SchedulerError) as exc:
        fail(error_text(exc))
    if dry_run:
        print_plan(rows, report)
        return
    print_build_report(report, out)
    if report.failed and not report.done and not report.skipped:
        raise typer.Exit(1)


def _verify(cfg) -> dict:
    from omnisat_data.verify.run import plan, verify

    plan(cfg)  # bad input fails here, before a progress bar is drawn
    with progress_bar() as bar:
        task = bar.add_task("verify tiles", total=None)
        report = verify(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total))
    report["report_path"] = str(cfg.report_path)
    return report


@app.command("verify-alignment")
def verify_alignment_command(
    dataset: Path = typer.Argument(..., help="Built dataset folder (or a flat folder of <stem>.tif/.h5/.pth)."),
    format: str = typer.Option("treesatai-ts", "--format", help="Dataset format: treesatai-ts or pastis-hd."),
    report: Path | None = typer.Option(None, help="JSON report (default DATASET/alignment/report.json)."),
    png: Path | None = typer.Option(None, help="Folder for the pictures (default: beside the report)."),
    max_shift_px: float = typer.Option(0.5, help="Scenes and tiles over this shift (10 m pixels) fail."),
    good_px: float = typer.Option(0.2, help="Shifts under this count as good."),
    sample: int | None = typer.Option(None, help="Check only N tiles (a deterministic sample)."),
    workers: int = typer.Option(2, help="Worker processes (0: in this process)."),
    pair: str = typer.Option(
        "both", help="Sentinel-2 band(s) the aerial bands are fitted to: nir (B08), red (B04) or both."
    ),
    sentinel_lattice: str = typer.Option(
        "auto",
        help="Lattice (m) the Sentinel series was bilinearly resampled from: "
        "auto (10 for our builds), none, or metres.",
    ),
) -> None:
    """Check a dataset's format and measure VHR / Sentinel-2 misregistration per tile and per scene.
    Exits 1 when a format problem is found or a scene or tile is over --max-shift-px."""
    from omnisat_data.verify.run import VerifyConfig

    try:
        if pair not in ("nir", "red", "both"):
            raise ValueError(f"--pair {pair!r}: choose nir, red or both")
        if sample is not None and sample < 1:
            raise ValueError("--sample must be at least 1")
        cfg = VerifyConfig(dataset=dataset, format=format, report=report, png=png, max_shift_px=max_shift_px,
                           good_px=good_px, sample=sample, workers=workers, pair=pair, lattice=sentinel_lattice)
        result = _verify(cfg)
    except _known_errors() as exc:
        fail(error_text(exc))
    print_alignment(result)
    if not result["summary"]["passed"]:
        raise typer.Exit(1)


def _demo_training(folder: Path, dataset: Path) -> None:
    """The small model on CPU (recipes/train-demo.toml): pretrain, then fine-tune and test."""
    from omnisat_train.train import TrainError, load_config, train

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "train-demo.toml"
    runs = folder / "runs"
    try:
        for task, extra in (("pretrain", {}), ("finetune", {"init": runs / "pretrain" / "last.pt"})):
            cfg = load_config(
                task, recipe, data=dataset, out=runs / task, resume=True, cache=folder / "packed", **extra
            )
            with progress_bar() as bar:
                job = bar.add_task(f"{task} (small OmniSat, CPU)", total=cfg.epochs)
                result = train(cfg, progress=lambda done, total, record: bar.update(job, completed=done))
    except TrainError as exc:
        fail(error_text(exc))
    print_demo_result(result["test"], dataset, runs)


@build_app.command("pastis-r")
def build_pastis_command(
    source: Path = typer.Option(..., help="PASTIS-R tree (metadata.geojson, DATA_S2, DATA_S1A, DATA_S1D, ...)."),
    recipe: Path = typer.Option(..., help="Build recipe (TOML, format pastis-hd, with a [vhr] section)."),
    out: Path = typer.Option(..., help="Output PASTIS-HD folder (created; reruns resume)."),
    catalog: str | None = typer.Option(
        None, help="STAC API URL or item file for every modality (overrides the recipe)."
    ),
    workers: int = typer.Option(2, help="Worker processes (0: in this process)."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler (tcp://HOST:PORT): run the units on its workers."),
    sentinel: bool = typer.Option(
        False,
        "--sentinel",
        help="Re-fetch the Sentinel series from STAC over the recipe's period "
        "(DATA_S2, DATA_S1A, DATA_S1D and their dates), instead of carrying them over.",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="A scene that cannot be read fails the tiles it covers "
        "(default: they are written without that date, recorded, and retried on rerun).",
    ),
) -> None:
    """Add the VHR modality to a PASTIS-R tree: PASTIS-HD (SPOT-like images area-averaged onto each patch grid)."""
    from omnisat_data.build.pastis_hd import PastisConfig, build_pastis, check_recipe
    from omnisat_data.formats.pastis import read_pastis
    from omnisat_data.formats.treesatai import SourceError
    from omnisat_data.io.workers import SchedulerError, check_scheduler
    from omnisat_data.recipe import load_recipe

    try:
        loaded = load_recipe(recipe)
        if catalog:
            loaded = loaded.with_catalog(catalog)
        check_recipe(loaded, sentinel)
        read_pastis(source, require_dates=not sentinel)  # bad input fails here, before a progress bar is drawn
        if scheduler:
            check_scheduler(scheduler)
        with progress_bar() as bar:
            report = build_pastis(PastisConfig(source, loaded, out, workers, scheduler, sentinel=sentinel,
                                               strict=strict),
                                  progress=staged_progress(bar))
    except _known_errors() + (SourceError, SchedulerError) as exc:
        fail(error_text(exc))
    print_pastis_report(report, out, sentinel)
    if report.failed and not report.done and not report.skipped:
        raise typer.Exit(1)


@build_app.command("grid")
def build_grid_command(
    recipe: Path = typer.Option(
        ..., help="Build recipe (TOML) with a [vhr] section; its format (treesatai-ts or pastis-hd) is what gets built."
    ),
    out: Path = typer.Option(..., help="Output folder (created; reruns resume)."),
    tiles: Path | None = typer.Option(
        None,
        help="Vector file of square tile polygons (GeoJSON, GeoPackage, ...; "
        "any CRS; names from a 'name' or 'id' property, PASTIS-HD ids from ID_PATCH).",
    ),
    bbox: str | None = typer.Option(None, help="WEST,SOUTH,EAST,NORTH in lon/lat: a regular grid of tiles over it."),
    tile_size: str | None = typer.Option(
        None, help="Tile side, e.g. 60m or 1280m (default: the format's: 60m, 1280m)."
    ),
    crs: str | None = typer.Option(
        None,
        help="Projected CRS of the tile grids, e.g. EPSG:32632 (default: the UTM "
        "zone of the area; PASTIS-HD needs UTM).",
    ),
    format: str | None = typer.Option(None, help="treesatai-ts or pastis-hd: must match the recipe's format."),
    year: int = typer.Option(
        2019, help="VHR year; TreeSatAI-TS series cover it (or the recipe's first_year if earlier)."
    ),
    catalog: str | None = typer.Option(
        None, help="STAC API URL or item file for every modality (overrides the recipe)."
    ),
    workers: int = typer.Option(2, help="Worker processes (0: in this process)."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler (tcp://HOST:PORT): run the units on its workers."),
    limit: int | None = typer.Option(None, help="Build only the first N tiles (by name)."),
    labels: Path | None = typer.Option(
        None,
        help="Vector file of class polygons (any format GDAL reads, any CRS): "
        "TreeSatAI-TS class fractions per tile, PASTIS-HD TARGET/INSTANCES rasters.",
    ),
    label_field: str | None = typer.Option(
        None, help="The field of --labels holding each polygon's class (PASTIS-HD: integer class ids 1-18)."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="A scene that cannot be read fails the tiles it covers "
        "(default: they are written without that date, recorded, and retried on rerun).",
    ),
) -> None:
    """TreeSatAI-TS or PASTIS-HD for your own area: every modality fetched from STAC onto your tile grid."""
    from omnisat_data.build.own_area import GridConfig, build_grid, check_recipe, class_polygons, own_tiles
    from omnisat_data.formats.treesatai import SourceError
    from omnisat_data.io.workers import SchedulerError, check_scheduler
    from omnisat_data.recipe import RecipeError, load_recipe

    try:
        loaded = load_recipe(recipe)
        if catalog:
            loaded = loaded.with_catalog(catalog)
        if format and format != loaded.format:
            raise RecipeError(f"{recipe}: format {loaded.format!r} but --format {format}")
        size = None
        if tile_size:
            try:
                size = float(tile_size.removesuffix("m"))
            except ValueError:
                raise ValueError(f"--tile-size {tile_size!r}: expected metres such as 60m or 1280m") from None
        box = None
        if bbox:
            try:
                box = tuple(float(v) for v in bbox.split(","))
                assert len(box) == 4
            except (ValueError, AssertionError):
                raise ValueError(f"--bbox {bbox!r}: expected WEST,SOUTH,EAST,NORTH in degrees") from None
        cfg = GridConfig(loaded, out, tiles=tiles, bbox=box, tile_size_m=size, crs=crs, year=year, workers=workers,
                         scheduler=scheduler, limit=limit, labels=labels, label_field=label_field,
                         strict=strict)
        check_recipe(loaded)
        own = own_tiles(cfg)  # bad input fails here, before a progress bar is drawn
        class_polygons(cfg)
        if not own.tiles:
            raise SourceError(f"{tiles or bbox}: no usable tile" + (f" ({own.problems[0][0]}: {own.problems[0][1]})"
                                                                      if own.problems else ""))
        if scheduler:
            check_scheduler(scheduler)
        with progress_bar() as bar:
            report = build_grid(cfg, progress=staged_progress(bar))
    except _known_errors() + (SourceError, SchedulerError) as exc:
        fail(error_text(exc))
    print_grid_report(report, loaded.format, out)
    if report.failed and not report.done and not report.skipped:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    folder: Path = typer.Argument(DEFAULT_DEMO_DIR, help="Where the demo lives: DIR/world, DIR/treesatai-ts."),
    workers: int = typer.Option(2, help="Worker processes reading scenes."),
    train: bool = typer.Option(True, "--train/--no-train", help="Pretrain and fine-tune a small OmniSat on the build."),
) -> None:
    """The main job on the embedded default: make the demo world, build TreeSatAI-TS from it, verify its
    alignment, build PASTIS-HD, pretrain and fine-tune a CPU-sized OmniSat and evaluate on the test split."""
    from omnisat_data.build.treesatai_ts import BuildConfig
    from omnisat_data.recipe import load_recipe
    from omnisat_data.sim.world.make import make_world_aside

    world = folder / "world"
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "demo.toml"
    try:
        if not (world / "world.json").is_file():
            make_world_aside(folder, world, lambda target: _make_world(target, "demo", None, None, None,
                                                                       "planetary-computer"))
        summary = json.loads((world / "world.json").read_text())
        console.print(f"demo world {world}: " + ", ".join(f"{v} {k}" for k, v in summary["counts"].items()))
        cfg = BuildConfig(source=world / "sources" / "treesatai",
                          recipe=load_recipe(recipe).with_catalog(str(world / "stac" / "items.ndjson")),
                          out=folder / "treesatai-ts", workers=workers)
        report = _build_treesatai(cfg)
    except _known_errors() as exc:
        fail(error_text(exc))
    print_build_report(report, cfg.out)
    from omnisat_data.verify.run import VerifyConfig

    try:  # the demo world injects geolocation errors into some scenes: the check is expected to find them
        print_alignment(_verify(VerifyConfig(dataset=cfg.out, workers=workers)))
        console.print("(the demo world moves a quarter of its Sentinel-2 scenes by up to 8 m on purpose: "
                      "the scenes listed above are those; see demo/world/truth.json)", highlight=False)
        from omnisat_data.build.pastis_hd import PastisConfig, build_pastis

        pastis_recipe = load_recipe(recipe.with_name("pastis-hd-demo.toml")).with_catalog(
            str(world / "stac" / "items.ndjson")
        )
        pastis = build_pastis(PastisConfig(world / "sources" / "PASTIS-R", pastis_recipe, folder / "PASTIS-R", workers))
        console.print(f"PASTIS-HD {folder / 'PASTIS-R'}: {len(pastis.done)} patches written, {len(pastis.skipped)} "
                      f"already there, {len(pastis.failed)} failed", highlight=False)
    except _known_errors() as exc:
        fail(error_text(exc))
    if train:
        _demo_training(folder, cfg.out)
    console.print(f"Catalog: embedded ({world / 'stac' / 'items.ndjson'}); the same build through the pgstac API: "
                  f"`omnisat-data stac serve {world}`, then `omnisat-data build treesatai --source "
                  f"{cfg.source} --recipe {recipe} --out OUT --catalog URL`.")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
