"""TreeSatAI-TS build throughput against object-storage latency: requests in flight per worker.

The demo world's COGs are served over HTTP Range by the asset server shaped like object storage (each
request answered after 0, 20 or 50 ms), and the same build runs with `concurrency = 1` (one request in
flight per worker and modality: the build before issue 19) and with the recipe's default, side by side
in one run:

    python benchmarks/build_latency.py [--world demo/world] [--tiles 32] [--workers 2] [--delays 0,20,50]

Prints tile-dates per second, requests and bytes served, the most requests the server held at once,
and the footprint minimum (blocks the tiles' sampling windows intersect) against the blocks read.
The demo world's COGs are small (22-86 KB files): production-layout figures come from `build_cloud.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
from omnisat_data.recipe import SourceRecipe, load_recipe
from omnisat_data.sim.serve.assets import AssetServer, Shaping
from omnisat_data.sim.serve.world import rewrite_items
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.make import make_world

ROOT = Path(__file__).resolve().parent.parent


def with_concurrency(source: SourceRecipe, value: int) -> SourceRecipe:
    return dataclasses.replace(source, concurrency=value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world")
    parser.add_argument("--tiles", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delays", default="0,20,50", help="ms per request, comma-separated")
    args = parser.parse_args()
    if not (args.world / "stac" / "items.ndjson").is_file():
        print(f"making the demo world in {args.world} ...", flush=True)
        make_world(args.world, PRESETS["demo"], workers=args.workers)
    base = load_recipe(ROOT / "recipes" / "demo.toml")
    default = base.s2.concurrency
    print(f"{'delay ms':>8} {'concurrency':>11} {'tile-dates':>10} {'s':>6} {'td/s':>6} {'requests':>8} {'MB':>6} "
          f"{'in flight':>9} {'blocks read':>11} {'minimum':>7}")
    with AssetServer(args.world) as server, tempfile.TemporaryDirectory() as tmp:
        items = rewrite_items(args.world / "stac" / "items.ndjson", server.url, Path(tmp) / "items.ndjson")
        recipe = base.with_catalog(str(items))
        for delay in (float(d) for d in args.delays.split(",")):
            server.shape(Shaping(delay / 1000))
            for concurrency in (1, default):
                run = dataclasses.replace(recipe, s2=with_concurrency(recipe.s2, concurrency),
                                          s1=with_concurrency(recipe.s1, concurrency))
                out = Path(tmp) / f"out-{delay:g}-{concurrency}"
                server.counters.reset()
                t0 = time.perf_counter()
                report = build_treesatai(BuildConfig(args.world / "sources" / "treesatai", run, out,
                                                     workers=args.workers, limit=args.tiles))
                seconds = time.perf_counter() - t0
                c = server.counters
                print(f"{delay:>8g} {concurrency:>11} {report.tile_dates:>10} {seconds:>6.1f} "
                      f"{report.tile_dates / seconds:>6.0f} {c.requests:>8} {c.bytes_sent / 1e6:>6.1f} "
                      f"{c.peak_in_flight:>9} {report.blocks.read:>11} {report.blocks.minimum:>7}", flush=True)


if __name__ == "__main__":
    main()
