"""`omnisat-data`: make and serve synthetic worlds, search catalogs, build datasets (thin Typer wiring)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .render import (
    console,
    error_text,
    fail,
    print_alignment,
    print_build_report,
    print_demo,
    print_grid_report,
    print_items,
    print_pastis_report,
    print_plan,
    print_servers,
    print_world,
    progress_bar,
    stage_progress,
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

# Options the build commands share (one declaration each)
CATALOG = typer.Option(None, help="STAC API URL or item file for every modality (overrides the recipe).")
WORKERS = typer.Option(2, help="Worker processes reading scenes (0: in this process).")
SCHEDULER = typer.Option(None, help="Dask scheduler (tcp://HOST:PORT): run the units on its workers.")
STRICT = typer.Option(False, "--strict", help="A scene that cannot be read fails the tiles it covers (default: they "
                      "are written without that date, recorded, and retried on rerun).")
REPLAN = typer.Option(False, "--replan", help="Search the catalogs again even if OUT/plan.json holds the plan of "
                      "this recipe and source (a rerun reuses it otherwise).")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan (searches, items, bytes) and stop: nothing is "
                       "read or written.")


def _known_errors():
    from omnisat_data.sim.serve.assets import PortInUse
    from omnisat_data.sim.serve.pgstac import ServerError
    from omnisat_data.stac.search import CatalogError

    # OSError: a full disk (ENOSPC), a read-only --out: one line naming the file, not a traceback
    return (OSError, ValueError, CatalogError, PortInUse, ServerError)


@world_app.command("make")
def world_make(
    folder: Path = typer.Argument(..., help="Folder to create (must be empty or absent)."),
    preset: str = typer.Option("demo", help="Named size: demo (default) or tiny (tests)."),
    config: Path | None = typer.Option(None, help="TOML file whose [world] table overrides the preset."),
    seed: int | None = typer.Option(None, help="Random seed of the world."),
    workers: int | None = typer.Option(None, help="Worker processes (default: all cores)."),
    catalog_style: str = typer.Option(
        "planetary-computer", help="How the items read: planetary-computer, earth-search or cdse (Copernicus Data "
        "Space: JPEG 2000 on s3://eodata, served by `stac serve` on a local S3 endpoint)."),
) -> None:
    """Generate a synthetic world: Sentinel-2/1, aerial and SPOT-like COGs, STAC items, source benchmarks."""
    from omnisat_data.sim.world.config import load_world_config
    from omnisat_data.sim.world.make import make_world

    try:
        cfg = load_world_config(preset, config, seed=seed)
        with progress_bar() as bar:
            summary = make_world(folder, cfg, workers=workers, style=catalog_style, progress=staged_progress(bar))
    except _known_errors() as exc:
        fail(error_text(exc))
    print_world(summary, folder)


@stac_app.command("serve")
def stac_serve(
    world: Path = typer.Argument(..., help="World folder made by `omnisat-data world make`."),
    port: int = typer.Option(0, help="STAC API port (0: any free port)."),
    asset_port: int = typer.Option(0, help="Asset (COG) server port (0: any free port)."),
    db_port: int = typer.Option(0, help="PostgreSQL port (0: any free port)."),
    pg_bin: str | None = typer.Option(None, help="PostgreSQL bin folder (default: newest /usr/lib/postgresql/*/bin)."),
    delay_ms: float = typer.Option(0.0, help="Answer each asset request after this delay (object storage: 20-50 ms)."),
    bandwidth_mb_s: float | None = typer.Option(None, help="Send each asset answer at most this fast (MB/s)."),
) -> None:
    """Serve a world: its COGs over HTTP Range, its items through a pgstac STAC API, until interrupted."""
    from omnisat_data.sim.serve.assets import Shaping
    from omnisat_data.sim.serve.world import WorldServers

    try:
        shaping = Shaping(delay_ms / 1000, None if bandwidth_mb_s is None else bandwidth_mb_s * 1e6)
        servers = WorldServers(world, asset_port=asset_port, api_port=port, db_port=db_port, pg_bin=pg_bin,
                               shaping=shaping)
        servers.start()
    except _known_errors() as exc:
        fail(error_text(exc))
    print_servers(servers)
    servers.serve_forever()
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
    from omnisat_data.stac.search import Search, first_items

    try:
        search = Search.from_filters(tuple(collection), bbox, datetime, max_cloud, orbit_state)
        items, count = first_items(catalog, search, limit)
    except _known_errors() as exc:
        fail(error_text(exc))
    print_items(items, count)


@build_app.command("treesatai")
def build_treesatai_command(
    source: Path = typer.Option(..., help="TreeSatAI tree (aerial/60m, labels, splits, geojson/bb_60m.GeoJSON)."),
    recipe: Path = typer.Option(Path("recipes/treesatai-ts.toml"), help="Build recipe (TOML)."),
    out: Path = typer.Option(..., help="Output TreeSatAI-TS folder (created; reruns resume)."),
    catalog: str | None = CATALOG,
    workers: int = WORKERS,
    scheduler: str | None = SCHEDULER,
    dry_run: bool = DRY_RUN,
    limit: int | None = typer.Option(None, help="Build only the first N tiles (by name)."),
    year: int | None = typer.Option(None, help="Year for tiles missing from geojson/bb_60m.GeoJSON."),
    strict: bool = STRICT,
    replan: bool = REPLAN,
) -> None:
    """Search, co-register and write TreeSatAI-TS (Sentinel-2, Sentinel-1 asc/des series per aerial tile)."""
    from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
    from omnisat_data.build.treesatai_ts import dry_run as plan_only
    from omnisat_data.formats.treesatai import SourceError
    from omnisat_data.io.workers import SchedulerError
    from omnisat_data.recipe import load_recipe

    try:
        cfg = BuildConfig(source=source, recipe=load_recipe(recipe, catalog), out=out, workers=workers, limit=limit,
                          year=year, scheduler=scheduler, strict=strict, replan=replan)
        with progress_bar() as bar:
            result = (plan_only if dry_run else build_treesatai)(cfg, progress=staged_progress(bar))
    except _known_errors() + (SourceError, SchedulerError) as exc:
        fail(error_text(exc))
    if dry_run:
        print_plan(*result)
        return
    print_build_report(result, out)
    if result.failed and not result.done and not result.skipped:
        raise typer.Exit(1)


@app.command("verify-alignment")
def verify_alignment_command(
    dataset: Path = typer.Argument(..., help="Built dataset folder (or a flat folder of <stem>.tif/.h5/.pth)."),
    format: str = typer.Option("treesatai-ts", "--format", help="Dataset format: treesatai-ts or pastis-hd."),
    report: Path | None = typer.Option(None, help="JSON report (default DATASET/alignment/report.json)."),
    png: Path | None = typer.Option(None, help="Folder for the pictures (default: beside the report)."),
    max_shift_px: float = typer.Option(0.5, help="Scenes and tiles over this shift (10 m pixels) fail."),
    good_px: float = typer.Option(0.2, help="Shifts under this count as good."),
    sample: int | None = typer.Option(None, help="Check only N tiles (a deterministic sample)."),
    workers: int = WORKERS,
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
    from omnisat_data.verify.run import VerifyConfig, verify

    try:
        cfg = VerifyConfig(dataset=dataset, format=format, report=report, png=png, max_shift_px=max_shift_px,
                           good_px=good_px, sample=sample, workers=workers, pair=pair, lattice=sentinel_lattice)
        with progress_bar() as bar:
            result = verify(cfg, progress=stage_progress(bar, "verify"))
    except _known_errors() as exc:
        fail(error_text(exc))
    print_alignment(result, cfg.report_path)
    if not result["summary"]["passed"]:
        raise typer.Exit(1)


@build_app.command("pastis-r")
def build_pastis_command(
    source: Path = typer.Option(..., help="PASTIS-R tree (metadata.geojson, DATA_S2, DATA_S1A, DATA_S1D, ...)."),
    recipe: Path = typer.Option(..., help="Build recipe (TOML, format pastis-hd, with a [vhr] section)."),
    out: Path = typer.Option(..., help="Output PASTIS-HD folder (created; reruns resume)."),
    catalog: str | None = CATALOG,
    workers: int = WORKERS,
    scheduler: str | None = SCHEDULER,
    sentinel: bool = typer.Option(
        False,
        "--sentinel",
        help="Re-fetch the Sentinel series from STAC over the recipe's period "
        "(DATA_S2, DATA_S1A, DATA_S1D and their dates), instead of carrying them over.",
    ),
    strict: bool = STRICT,
    replan: bool = REPLAN,
    dry_run: bool = DRY_RUN,
) -> None:
    """Add the VHR modality to a PASTIS-R tree: PASTIS-HD (SPOT-like images area-averaged onto each patch grid)."""
    from omnisat_data.build.pastis_hd import PastisConfig, build_pastis
    from omnisat_data.build.pastis_hd import dry_run as plan_only
    from omnisat_data.formats.treesatai import SourceError
    from omnisat_data.io.workers import SchedulerError
    from omnisat_data.recipe import load_recipe

    try:
        cfg = PastisConfig(source, load_recipe(recipe, catalog), out, workers, scheduler, sentinel=sentinel,
                           strict=strict, replan=replan)
        with progress_bar() as bar:
            report = (plan_only if dry_run else build_pastis)(cfg, progress=staged_progress(bar))
    except _known_errors() + (SourceError, SchedulerError) as exc:
        fail(error_text(exc))
    if dry_run:
        print_plan(*report)
        return
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
    catalog: str | None = CATALOG,
    workers: int = WORKERS,
    scheduler: str | None = SCHEDULER,
    limit: int | None = typer.Option(None, help="Build only the first N tiles (by name)."),
    labels: Path | None = typer.Option(
        None,
        help="Vector file of class polygons (any format GDAL reads, any CRS): "
        "TreeSatAI-TS class fractions per tile, PASTIS-HD TARGET/INSTANCES rasters.",
    ),
    label_field: str | None = typer.Option(
        None, help="The field of --labels holding each polygon's class (PASTIS-HD: integer class ids 1-18)."
    ),
    strict: bool = STRICT,
    replan: bool = REPLAN,
    dry_run: bool = DRY_RUN,
) -> None:
    """TreeSatAI-TS or PASTIS-HD for your own area: every modality fetched from STAC onto your tile grid."""
    from omnisat_data.build.own_area import GridConfig, build_grid, parse_bbox, parse_tile_size
    from omnisat_data.build.own_area import dry_run as plan_only
    from omnisat_data.formats.treesatai import SourceError
    from omnisat_data.io.workers import SchedulerError
    from omnisat_data.recipe import load_recipe

    try:
        cfg = GridConfig(load_recipe(recipe, catalog), out, tiles=tiles, bbox=parse_bbox(bbox) if bbox else None,
                         tile_size_m=parse_tile_size(tile_size) if tile_size else None, crs=crs, year=year,
                         workers=workers, scheduler=scheduler, limit=limit, labels=labels, label_field=label_field,
                         strict=strict, replan=replan, format=format)
        with progress_bar() as bar:
            report = (plan_only if dry_run else build_grid)(cfg, progress=staged_progress(bar))
    except _known_errors() + (SourceError, SchedulerError) as exc:
        fail(error_text(exc))
    if dry_run:
        print_plan(*report)
        return
    print_grid_report(report, cfg.recipe.format, out)
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
    from omnisat_data.demo import DemoConfig, run_demo
    from omnisat_train.train import TrainError

    try:
        cfg = DemoConfig(folder, workers, train)
        with progress_bar() as bar:
            result = run_demo(cfg, progress=staged_progress(bar))
    except _known_errors() + (TrainError,) as exc:
        fail(error_text(exc))
    print_demo(result, cfg)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
