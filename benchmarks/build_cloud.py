"""TreeSatAI-TS reads at production layout against object-storage latency: the build against odc-stac and
stackstac, side by side in one run.

    python benchmarks/production_world.py --out /tmp/prod          # once: ~5 GB, ~10 minutes
    python benchmarks/build_cloud.py --world /tmp/prod [--delays 0,20,50] [--per-tile 50] [--check 8]

Every method reads the same items' COGs over HTTP Range from the local asset server, shaped like object
storage (each request answered after the delay; requests in flight counted), with the same GDAL settings
(`omnisat_data.stac.gdal.gdal_http_env`), each in its own process (so its peak memory is its own), after
one untimed build that brings the blocks into the page cache:

- `omnisat-data build` in one process, and with 2 worker processes (recipes/treesatai-ts.toml, unsigned);
- odc.stac.load once per 5 km cell and series onto the 10 m geobox around the cell's tiles, then each tile's
  6 x 6 window cut out (bilinear; SCL nearest; `chunks=None, pool=8`: odc-stac's own reader threads, its
  fastest setting here without a Dask cluster);
- stackstac once per cell and series (bilinear, SCL nearest in its own stack; Dask's threaded scheduler with
  8 threads, 1024 px chunks);
- odc.stac.load per tile (the first `--per-tile` tiles) onto the tile's own 6 x 6 grid (what a user without
  grouping writes).

Printed: tile-dates per second, requests, MB served, read amplification (bytes served / compressed bytes of
the full-resolution blocks the tiles' windows intersect: the build's footprint minimum, the physical
minimum), most requests in flight, peak resident memory of the largest process (and of the method's own
process: the build's client). `--check N`: the build's
Sentinel-2 values for N tiles against odc.stac.load per tile (bilinear, both), largest difference in DN.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omnisat_data.formats.treesatai_ts import S2_BANDS  # noqa: E402
from omnisat_data.sim.serve.assets import AssetServer, Shaping  # noqa: E402
from omnisat_data.sim.serve.world import rewrite_items  # noqa: E402

S1_KEYS = ["vv", "vh"]
CELL = 5000.0
METHODS = ("ours-1", "ours-2", "odc-cell", "stackstac-cell", "odc-tile")


# -- the methods (each runs in a child process: `--run METHOD`) ----------------------------------------

def recipe_for(items: Path, group_size_m: float | None = None):
    """recipes/treesatai-ts.toml (Planetary Computer) on the world's item file, unsigned."""
    from omnisat_data.recipe import load_recipe

    base = load_recipe(ROOT / "recipes" / "treesatai-ts.toml").with_catalog(str(items))
    return dataclasses.replace(base, s2=dataclasses.replace(base.s2, sign="never"),
                               s1=dataclasses.replace(base.s1, sign="never"),
                               group_size_m=group_size_m or base.group_size_m)


def run_ours(world: Path, items: Path, out: Path, workers: int, group_size_m: float | None = None) -> dict:
    from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai

    recipe = recipe_for(items, group_size_m)
    report = build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe, out, workers=workers))
    return {"tile_dates": report.tile_dates, "failed": len(report.failed), "minimum_bytes": report.blocks.minimum_bytes,
            "blocks_read": report.blocks.read, "blocks_minimum": report.blocks.minimum}


def load_items(items: Path) -> list:
    import pystac

    return [pystac.Item.from_dict(json.loads(line)) for line in items.read_text().splitlines() if line.strip()]


def series_items(items: list) -> dict[str, list]:
    """The items of each TreeSatAI-TS series (the world has one year: all of them are the tiles' series)."""
    out: dict[str, list] = {"s2": [], "s1-asc": [], "s1-des": []}
    for item in items:
        if item.collection_id == "sentinel-2-l2a":
            out["s2"].append(item)
        else:
            out["s1-asc" if item.properties["sat:orbit_state"] == "ascending" else "s1-des"].append(item)
    return out


def tiles_of(world: Path) -> list:
    from omnisat_data.formats.treesatai import read_treesatai

    return sorted(read_treesatai(world / "sources" / "treesatai").tiles, key=lambda t: t.name)


def cells_of(tiles: list) -> dict[tuple[int, int], list]:
    cells: dict[tuple[int, int], list] = {}
    for tile in tiles:
        left, bottom, right, top = tile.sentinel.bounds
        cells.setdefault((int((left + right) / 2 // CELL), int((bottom + top) / 2 // CELL)), []).append(tile)
    return cells


def cell_bounds(tiles: list) -> tuple[float, float, float, float]:
    """The 10 m-lattice box around the cell's tiles' frames, one pixel of margin."""
    bounds = np.array([t.sentinel.bounds for t in tiles])
    left, bottom = np.floor(bounds[:, :2].min(0) / 10) * 10 - 10
    right, top = np.ceil(bounds[:, 2:].max(0) / 10) * 10 + 10
    return float(left), float(bottom), float(right), float(top)


def cut(array: np.ndarray, box_bounds, tile) -> np.ndarray:
    """The tile's 6 x 6 window from a (time, band, y, x) array on the cell's 10 m box (nearest pixel)."""
    left, _, _, top = box_bounds
    t = tile.sentinel.transform
    col, row = int(round((t.c - left) / 10)), int(round((top - t.f) / 10))
    return array[..., row : row + 6, col : col + 6]


def keys_of(series: str) -> list[str]:
    return [*S2_BANDS, "SCL"] if series == "s2" else S1_KEYS


def run_odc_cell(items: list, tiles: list) -> dict:
    import odc.stac
    from odc.geo.geobox import GeoBox

    from omnisat_data.stac.gdal import gdal_http_env

    odc.stac.configure_rio(cloud_defaults=True, **gdal_http_env())
    count = 0
    for cell_tiles in cells_of(tiles).values():
        bounds = cell_bounds(cell_tiles)
        box = GeoBox.from_bbox(bounds, crs=cell_tiles[0].sentinel.crs, resolution=10)
        for series, chosen in series_items(items).items():
            data = odc.stac.load(chosen, bands=keys_of(series), geobox=box, groupby="id", chunks=None, pool=8,
                                 resampling={"*": "bilinear", "SCL": "nearest"})
            array = data.to_array().transpose("time", "variable", "y", "x").values
            count += sum(cut(array, bounds, tile).shape[0] for tile in cell_tiles)
    return {"tile_dates": count}


def run_stackstac_cell(items: list, tiles: list) -> dict:
    import dask
    import stackstac
    from rasterio.enums import Resampling

    from omnisat_data.stac.gdal import gdal_http_env

    env = stackstac.DEFAULT_GDAL_ENV.updated(always=gdal_http_env())
    count = 0
    with dask.config.set(scheduler="threads", num_workers=8):
        for cell_tiles in cells_of(tiles).values():
            bounds = cell_bounds(cell_tiles)
            epsg = int(cell_tiles[0].sentinel.crs.split(":")[1])
            for series, chosen in series_items(items).items():
                groups = [(S2_BANDS, Resampling.bilinear), (["SCL"], Resampling.nearest)] if series == "s2" else [
                    (S1_KEYS, Resampling.bilinear)]
                for assets, method in groups:
                    stack = stackstac.stack(chosen, assets=list(assets), epsg=epsg, resolution=10, bounds=bounds,
                                            resampling=method, chunksize=1024, dtype="float32",
                                            fill_value=np.float32(np.nan), rescale=False, gdal_env=env)
                    array = stack.values
                count += sum(cut(array, bounds, tile).shape[0] for tile in cell_tiles)
    return {"tile_dates": count}


def odc_tile(items: list, tile, series: str, resampling="bilinear"):
    import odc.stac
    from odc.geo.geobox import GeoBox

    g = tile.sentinel
    box = GeoBox(g.shape, g.transform, g.crs)
    return odc.stac.load(items, bands=keys_of(series), geobox=box, groupby="id", chunks=None,
                         resampling={"*": resampling, "SCL": "nearest"})


def run_odc_tile(items: list, tiles: list) -> dict:
    import odc.stac

    from omnisat_data.stac.gdal import gdal_http_env

    odc.stac.configure_rio(cloud_defaults=True, **gdal_http_env())
    count = 0
    for tile in tiles:
        for series, chosen in series_items(items).items():
            count += odc_tile(chosen, tile, series).sizes["time"]
    return {"tile_dates": count}


def child(method: str, world: Path, items: Path, out: Path, per_tile: int) -> None:
    t0 = time.perf_counter()
    if method.startswith("ours"):
        result = run_ours(world, items, out, workers=0 if method == "ours-1" else 2)
    else:
        tiles, loaded = tiles_of(world), load_items(items)
        fn = {"odc-cell": run_odc_cell, "stackstac-cell": run_stackstac_cell, "odc-tile": run_odc_tile}[method]
        result = fn(loaded, tiles[:per_tile] if method == "odc-tile" else tiles)
    result["seconds"] = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mb"] = max(own, workers) / 1024  # the largest process (KB on Linux)
    result["client_rss_mb"] = own / 1024  # this process alone (the build's client, which writes the dataset)
    print("RESULT " + json.dumps(result), flush=True)


# -- the check: the build's values against odc-stac per tile ----------------------------------------------

def check_values(world: Path, items: Path, out: Path, n: int) -> dict:
    """Largest |build - odc-stac| per Sentinel-2 band (DN, the build's harmonised values + 1000) on n tiles."""
    import h5py
    import odc.stac

    from omnisat_data.stac.gdal import gdal_http_env

    odc.stac.configure_rio(cloud_defaults=True, **gdal_http_env())
    loaded = series_items(load_items(items))["s2"]
    worst = np.zeros(len(S2_BANDS))
    for tile in tiles_of(world)[:n]:
        data = odc_tile(loaded, tile, "s2")
        theirs = data[list(S2_BANDS)].to_array().transpose("time", "variable", "y", "x").values.astype(np.float64)
        with h5py.File(out / "sentinel" / f"{tile.name}.h5", "r") as f:
            ours = f["sen-2-data"][()].astype(np.float64) + 1000  # baseline 04.00: the build removed the offset
        worst = np.maximum(worst, np.abs(ours - theirs).max(axis=(0, 2, 3)))
    return dict(zip(S2_BANDS, worst.round(3).tolist()))


# -- the physical minimum: distinct blocks over the whole build ----------------------------------------

def physical_minimum(world: Path, out: Path, items: Path, distinct: bool = True) -> tuple[int, int]:
    """(blocks, compressed bytes) of the distinct full-resolution blocks the tiles' sampling windows
    intersect, over every asset of the build's plan (`out/plan.json`), with the build's own window rules;
    sizes from the local files' TIFF tile byte counts. `distinct=False`: the sum over the plan's units
    (each group's own footprint minimum; blocks that groups share counted once per group)."""
    import rasterio

    from omnisat_data.build.plan import PLAN
    from omnisat_data.build.sentinel import asset_method, block_bytes, footprint_blocks, tile_pixels
    from omnisat_data.build.treesatai_ts import read_spec
    from omnisat_data.geo.grid import Grid
    from omnisat_data.geo.resample import support

    recipe = recipe_for(items)
    grids = {t.name: t.sentinel for t in tiles_of(world)}
    needed: dict = {}  # path (or path and unit) -> blocks
    layouts: dict[Path, tuple] = {}  # path -> (grid, block): each file's header read once
    for group in json.loads((out / PLAN).read_text())["sections"]["sentinel"]["groups"]:
        for unit in group["units"]:
            spec = read_spec(recipe, "s2" if unit["source"]["series"] == "s2" else "s1")
            tiles = tuple(grids[group["tiles"][i]] for i in unit["tiles"])
            for k, (_, href) in enumerate(unit["source"]["assets"]):
                path = world / "data" / href.split("/data/", 1)[1]
                if path not in layouts:
                    with rasterio.open(path) as src:
                        layouts[path] = (Grid(src.crs.to_string(), src.transform, (src.height, src.width)),
                                         tuple(src.block_shapes[0]))
                grid, block = layouts[path]
                cols, rows = tile_pixels(grid, tiles)
                windows = support(cols, rows, asset_method(spec, k), grid.shape)
                if distinct:
                    needed.setdefault(path, set()).update(footprint_blocks(windows, block))
                else:
                    needed[(path, len(needed))] = footprint_blocks(windows, block)
    by_path: dict[Path, list[set]] = {}
    for key, blocks in needed.items():
        by_path.setdefault(key if distinct else key[0], []).append(blocks)
    nbytes = 0
    for path, sets in by_path.items():  # each file opened once for its tile byte counts
        with rasterio.open(path) as src:
            nbytes += sum(block_bytes(src, blocks) for blocks in sets)
    return sum(len(b) for b in needed.values()), nbytes


# -- the run --------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True, help="made by benchmarks/production_world.py")
    parser.add_argument("--delays", default="0,20,50", help="ms per request, comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--per-tile", type=int, default=50, help="tiles odc.stac.load per tile reads")
    parser.add_argument("--per-tile-delays", default="0", help="delays at which odc-stac per tile runs (it is slow)")
    parser.add_argument("--check", type=int, default=8, help="tiles whose values are checked against odc-stac")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return child(args.run, args.world, args.items, args.out, args.per_tile)
    world = json.loads((args.world / "world.json").read_text())
    print(f"world {args.world}: {world['tiles']} tiles, {world['s2 scenes']} Sentinel-2 and {world['s1 scenes']} "
          f"Sentinel-1 scenes, {world['bytes'] / 1e9:.1f} GB, scale {world['scale']}", flush=True)
    rows = []
    with AssetServer(args.world) as server, tempfile.TemporaryDirectory() as tmp:
        items = rewrite_items(args.world / "stac" / "items.ndjson", server.url, Path(tmp) / "items.ndjson")
        minimum = None
        # warm-up, not timed: the build once, so that every method finds the blocks in the page cache (all
        # methods need the same blocks) and the first row does not pay the disk
        subprocess.run([sys.executable, __file__, "--run", "ours-2", "--world", str(args.world), "--items",
                        str(items), "--out", str(Path(tmp) / "warm-up")], capture_output=True, check=True)
        for delay in (float(d) for d in args.delays.split(",")):
            server.shape(Shaping(delay / 1000))
            for method in args.methods.split(","):
                if method == "odc-tile" and f"{delay:g}" not in args.per_tile_delays.split(","):
                    continue
                out = Path(tmp) / f"{method}-{delay:g}"
                server.counters.reset()
                r = subprocess.run([sys.executable, __file__, "--run", method, "--world", str(args.world), "--items",
                                    str(items), "--out", str(out), "--per-tile", str(args.per_tile)],
                                   capture_output=True, text=True)
                line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
                if r.returncode or line is None:
                    print(f"{method} at {delay:g} ms failed: {r.stderr.strip()[-800:]}", flush=True)
                    continue
                result = json.loads(line[7:])
                if minimum is None and method.startswith("ours"):
                    blocks, minimum = physical_minimum(args.world, out, items)
                    print(f"physical minimum: {blocks} blocks, {minimum / 1e6:.0f} MB (distinct full-resolution "
                          "blocks the tiles' windows intersect)", flush=True)
                    rows.append({"minimum_blocks": blocks, "minimum_bytes": minimum})
                c = server.counters
                row = {"method": method, "delay_ms": delay, **result, "requests": c.requests,
                       "bytes": c.bytes_sent, "peak_in_flight": c.peak_in_flight}
                rows.append(row)
                ampl = f"{c.bytes_sent / minimum:>5.2f}" if minimum and method != "odc-tile" else f"{'-':>5}"
                print(f"{delay:>5g} ms {method:<15} {result['tile_dates']:>6} td {result['seconds']:>7.1f} s "
                      f"{result['tile_dates'] / result['seconds']:>7.1f} td/s {c.requests:>6} req "
                      f"{c.bytes_sent / 1e6:>7.0f} MB ampl {ampl} in flight {c.peak_in_flight:>3} "
                      f"peak {result['peak_rss_mb']:>6.0f} MB (this process {result['client_rss_mb']:.0f} MB)",
                      flush=True)
                if method == "ours-1" and delay == 0 and args.check:
                    check = check_values(args.world, items, out, args.check)
                    rows.append({"check_against_odc_per_tile_max_abs_dn": check})
                    print(f"      values of {args.check} tiles, |build - odc-stac| max per band (DN): {check}",
                          flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
