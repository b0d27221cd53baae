"""TreeSatAI-TS reads: our grouped builder against per-tile odc-stac and per-tile-date rioxarray.

All three read the same COGs over HTTP Range from the local asset server (GDAL /vsicurl, as from a
cloud bucket), for the same tiles and the same acquisitions, in one process each, in one run:

    python benchmarks/build_treesatai.py [--world demo/world] [--tiles 16] [--baseline-tiles 4]

Prints tile-dates per second, requests and bytes served, and our read amplification (bytes served /
compressed bytes of the COG blocks the tiles need). Needs `pip install odc-stac` (the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pystac

from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
from omnisat_data.formats.treesatai import read_treesatai
from omnisat_data.recipe import load_recipe
from omnisat_data.sim.serve.assets import AssetServer
from omnisat_data.sim.serve.world import rewrite_items
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.make import make_world
from omnisat_data.stac.gdal import gdal_http_env

ROOT = Path(__file__).resolve().parent.parent
S2_KEYS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12", "SNW", "CLD"]
S1_KEYS = ["vv", "vh"]


def tile_acquisitions(out: Path, stems: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per tile, the item ids our build wrote per series (the baselines read exactly these)."""
    acq = {}
    for stem in stems:
        dates = json.loads((out / "stac" / "items" / f"{stem}.json").read_text())["properties"]["omnisat:dates"]
        acq[stem] = {series: [d["item"] for d in entries] for series, entries in dates.items()}
    return acq


def run_odc(tiles, acq, items: dict[str, pystac.Item]) -> int:
    """One odc.stac.load per tile and sensor, onto the tile's 6 x 6 geobox (bilinear)."""
    import odc.stac
    from odc.geo.geobox import GeoBox

    odc.stac.configure_rio(cloud_defaults=True, **gdal_http_env())
    count = 0
    for tile in tiles:
        box = GeoBox(tile.sentinel.shape, tile.sentinel.transform, tile.sentinel.crs)
        for series, keys in (("s2", S2_KEYS), ("s1-asc", S1_KEYS), ("s1-des", S1_KEYS)):
            chosen = [items[i] for i in acq[tile.name][series]]
            if not chosen:
                continue
            data = odc.stac.load(chosen, bands=keys, geobox=box, resampling="bilinear", groupby="id", chunks=None)
            count += data.sizes["time"]
    return count


def run_rioxarray(tiles, acq, items: dict[str, pystac.Item]) -> int:
    """rioxarray per tile, date and asset: open, clip_box (with a margin), reproject_match (bilinear)."""
    import rasterio
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr
    from rasterio.warp import Resampling, transform_bounds

    count = 0
    with rasterio.Env(**gdal_http_env()):
        for tile in tiles:
            g = tile.sentinel
            x, y = g.pixel_centres()
            template = (
                xr.DataArray(np.zeros(g.shape, np.float32), dims=("y", "x"), coords={"y": y[:, 0], "x": x[0]})
                .rio.write_crs(g.crs)
                .rio.write_transform(g.transform)
            )
            for series, keys in (("s2", S2_KEYS), ("s1-asc", S1_KEYS), ("s1-des", S1_KEYS)):
                for item_id in acq[tile.name][series]:
                    for key in keys:
                        da = rioxarray.open_rasterio(items[item_id].assets[key].href, masked=True)
                        left, bottom, right, top = transform_bounds(g.crs, da.rio.crs, *g.bounds)
                        da = da.rio.clip_box(left - 40, bottom - 40, right + 40, top + 40)
                        _ = da.rio.reproject_match(template, resampling=Resampling.bilinear).values
                    count += 1
    return count


def measure(server: AssetServer, fn):
    server.counters.reset()
    t0 = time.perf_counter()
    result = fn()
    c = server.counters
    header = sum(first for _, _, first in c.per_path.values())  # each file's first request: its header read
    return result, time.perf_counter() - t0, c.requests, c.bytes_sent, header, len(c.per_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world", help="made (demo preset) when absent")
    parser.add_argument("--tiles", type=int, default=16, help="tiles our builder reads")
    parser.add_argument("--baseline-tiles", type=int, default=4, help="tiles the (slow) baselines read")
    args = parser.parse_args()
    if not (args.world / "world.json").is_file():
        print(f"making the demo world in {args.world} ...")
        make_world(args.world, PRESETS["demo"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-treesatai-"))
    source = args.world / "sources" / "treesatai"
    with AssetServer(args.world) as server:
        items_file = rewrite_items(args.world / "stac" / "items.ndjson", server.url, tmp / "items.ndjson")
        recipe = load_recipe(ROOT / "recipes" / "demo.toml").with_catalog(str(items_file))
        items = {}
        for line in items_file.read_text().splitlines():
            item = pystac.Item.from_dict(json.loads(line))
            items[item.id] = item
        rows = []
        for n in sorted({args.baseline_tiles, args.tiles}):
            cfg = BuildConfig(source, recipe, tmp / f"ours-{n}", workers=0, limit=n)
            report, sec, req, nbytes, header, files = measure(server, lambda: build_treesatai(cfg))
            rows.append((f"omnisat-data build ({n} tiles, 1 process)", report.tile_dates, sec, req, nbytes, files,
                         (nbytes / report.bytes_read, (nbytes - header) / report.bytes_read, report.bytes_read)))
        tiles = sorted(read_treesatai(source).tiles, key=lambda t: t.name)[: args.baseline_tiles]
        acq = tile_acquisitions(tmp / f"ours-{args.baseline_tiles}", [t.name for t in tiles])
        for name, fn in ((f"odc.stac.load per tile ({len(tiles)} tiles)", run_odc),
                         (f"rioxarray clip+reproject per tile-date ({len(tiles)} tiles)", run_rioxarray)):
            count, sec, req, nbytes, _, files = measure(server, lambda: fn(tiles, acq, items))
            rows.append((name, count, sec, req, nbytes, files, None))
    odc_rate = next(r[1] / r[2] for r in rows if r[0].startswith("odc"))
    print(f"\nworld {args.world}; assets over HTTP Range from {server.url}; GDAL /vsicurl")
    print(f"{'method':<52} {'tile-dates':>10} {'s':>7} {'td/s':>7} {'x odc':>6} {'files':>6} {'requests':>8} "
          f"{'MB':>7} {'MB/td':>6} {'ampl.':>5} {'blocks':>6} {'MB needed':>9}")
    for name, count, sec, req, nbytes, files, ampl in rows:
        rate = count / sec
        extra = "" if ampl is None else f"{ampl[0]:>5.2f} {ampl[1]:>6.2f} {ampl[2] / 1e6:>9.2f}"
        print(f"{name:<52} {count:>10} {sec:>7.2f} {rate:>7.1f} {rate / odc_rate:>6.1f} {files:>6} {req:>8} "
              f"{nbytes / 1e6:>7.2f} {nbytes / 1e6 / max(count, 1):>6.3f} {extra}")
    print("ampl. = bytes served / compressed bytes of the COG blocks the tiles need; blocks = the same without each\n"
          "file's first request (its header read: recipe header_bytes, 2 KB in the demo recipe)")


if __name__ == "__main__":
    main()
