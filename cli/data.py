"""`omnisat-data`: make and serve synthetic worlds, search catalogs, build datasets (thin Typer wiring)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(help="Build, serve and check tri-modal Earth-observation datasets.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
world_app = typer.Typer(help="Synthetic Earth-observation worlds (the project's offline stand-in for the cloud).",
                        no_args_is_help=True)
stac_app = typer.Typer(help="STAC catalogs: serve a world through real servers, search any catalog.",
                       no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(stac_app, name="stac")
console = Console(stderr=True)

DEFAULT_DEMO_DIR = Path("demo")


def fail(message: str, code: int = 2) -> None:
    """Bad input: one clear line on stderr and a non-zero exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _known_errors():
    from omnisat_data.catalog.search import CatalogError
    from omnisat_data.serve.assets import PortInUse
    from omnisat_data.serve.pgstac import ServerError

    return (FileNotFoundError, FileExistsError, ValueError, CatalogError, PortInUse, ServerError)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def _make_world(folder: Path, preset: str, config: Optional[Path], seed: Optional[int], workers: Optional[int],
                style: str) -> dict:
    from omnisat_data.world.config import load_world_config
    from omnisat_data.world.make import make_world

    cfg = load_world_config(preset, config, seed=seed)
    with _progress() as bar:
        task = bar.add_task(f"world {preset}", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"world {preset}: {stage}", completed=done, total=total)

        return make_world(folder, cfg, workers=workers, style=style, progress=report)


@world_app.command("make")
def world_make(
    folder: Path = typer.Argument(..., help="Folder to create (must be empty or absent)."),
    preset: str = typer.Option("demo", help="Named size: demo (default) or tiny (tests)."),
    config: Optional[Path] = typer.Option(None, help="TOML file whose [world] table overrides the preset."),
    seed: Optional[int] = typer.Option(None, help="Random seed of the world."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores)."),
    catalog_style: str = typer.Option("planetary-computer", help="Asset keys: planetary-computer or earth-search."),
) -> None:
    """Generate a synthetic world: Sentinel-2/1, aerial and SPOT-like COGs, STAC items, source benchmarks."""
    try:
        if catalog_style not in ("planetary-computer", "earth-search"):
            raise ValueError(f"--catalog-style must be planetary-computer or earth-search, not {catalog_style!r}")
        summary = _make_world(folder, preset, config, seed, workers, catalog_style)
    except _known_errors() as exc:
        fail(str(exc))
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    console.print(f"world written to {folder} in {summary['seconds']['total']:.1f} s: {counts}")


@stac_app.command("serve")
def stac_serve(
    world: Path = typer.Argument(..., help="World folder made by `omnisat-data world make`."),
    port: int = typer.Option(0, help="STAC API port (0: any free port)."),
    asset_port: int = typer.Option(0, help="Asset (COG) server port (0: any free port)."),
    db_port: int = typer.Option(0, help="PostgreSQL port (0: any free port)."),
    pg_bin: Optional[str] = typer.Option(None, help="PostgreSQL bin folder (default: newest /usr/lib/postgresql/*/bin)."),
) -> None:
    """Serve a world: its COGs over HTTP Range, its items through a pgstac STAC API, until interrupted."""
    from omnisat_data.serve.world import WorldServers

    try:
        servers = WorldServers(world, asset_port=asset_port, api_port=port, db_port=db_port, pg_bin=pg_bin)
        servers.start()
    except _known_errors() as exc:
        fail(str(exc))
    print(json.dumps({"stac_api": servers.api.url, "assets": servers.assets.url}), flush=True)
    console.print(f"STAC API {servers.api.url}  assets {servers.assets.url}  (Ctrl-C to stop)")
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
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
    bbox: Optional[str] = typer.Option(None, help="west,south,east,north in degrees."),
    datetime: Optional[str] = typer.Option(None, help="start/end (ISO 8601)."),
    max_cloud: Optional[float] = typer.Option(None, help="Keep items with eo:cloud_cover below this."),
    orbit_state: Optional[str] = typer.Option(None, help="ascending or descending (sat:orbit_state)."),
    limit: int = typer.Option(20, help="Items to print."),
) -> None:
    """Search a catalog and print matching item ids."""
    from omnisat_data.catalog.search import Search, open_catalog

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
        fail(str(exc))
    console.print(f"{count} items")


@app.command("demo")
def demo(
    folder: Path = typer.Argument(DEFAULT_DEMO_DIR, help="Where the demo world lives (made when absent)."),
) -> None:
    """The main job on the embedded default: make the demo world, then show what a TreeSatAI build would search and read."""
    from omnisat_data.catalog.search import EmbeddedCatalog
    from omnisat_data.search_plan import plan_searches

    world = folder / "world"
    try:
        if not (world / "world.json").is_file():
            if world.exists():
                import shutil

                shutil.rmtree(world)  # an interrupted earlier run: start over
            _make_world(world, "demo", None, None, None, "planetary-computer")
        summary = json.loads((world / "world.json").read_text())
        catalog = EmbeddedCatalog(world / "stac" / "items.ndjson")
        plans = plan_searches(world / "sources" / "treesatai", catalog)
    except _known_errors() as exc:
        fail(str(exc))
    out = Console(width=120)
    out.print(f"[bold]Demo world[/] {world} ({summary['seconds']['total']:.1f} s to generate): "
              + ", ".join(f"{v} {k}" for k, v in summary["counts"].items()))
    table = Table(title="TreeSatAI-TS build plan: one search per group of neighbouring tiles and year")
    for col in ("year", "tiles", "centre lon, lat", "S2 items", "S2 assets", "S2 MB", "S1 items", "S1 assets", "S1 MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for p in plans:
        table.add_row(str(p.year), str(p.tiles), f"{(p.bbox[0] + p.bbox[2]) / 2:.4f}, {(p.bbox[1] + p.bbox[3]) / 2:.4f}",
                      str(p.items["s2"]), str(p.assets["s2"]), f"{p.bytes['s2'] / 1e6:.1f}",
                      str(p.items["s1"]), str(p.assets["s1"]), f"{p.bytes['s1'] / 1e6:.1f}")
    out.print(table)
    out.print(f"Catalog: embedded ({catalog.path}); serve it for real with `omnisat-data stac serve {world}`.")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
