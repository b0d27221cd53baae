"""Per catalog: what the build makes of the real items (tests/data/real-items), and a TreeSatAI-TS build
of the tiny world served in each catalog's dialect through pgstac (COGs over HTTP Range; CDSE: JPEG 2000
on a local S3 endpoint through /vsis3/), with the requests and bytes served per tile-date:

    python benchmarks/catalog_styles.py [--workers 2]

Planetary Computer and Earth Search builds use the probability masks (SNW, CLD); CDSE serves none, so
its build takes them from SCL (one asset fewer per date).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import pystac

from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
from omnisat_data.recipe import SourceRecipe, load_recipe
from omnisat_data.sim.serve.world import WorldServers
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.make import make_world
from omnisat_data.stac.acquisitions import s1_acquisition, s2_acquisition
from omnisat_data.stac.items import ItemError

ROOT = Path(__file__).resolve().parent.parent
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def real_items() -> None:
    print("| catalog | collection | item | result |")
    print("|---|---|---|---|")
    for path in sorted((ROOT / "tests" / "data" / "real-items").glob("*.json")):
        catalog, collection, _ = path.stem.split("__")
        item = pystac.Item.from_dict(json.loads(path.read_text()))
        if collection == "naip":
            result = f"VHR image {item.assets['image'].href.rsplit('/', 1)[-1]} (4 bands, {item.properties['gsd']} m)"
        else:
            s2 = collection.startswith("sentinel-2")
            source = SourceRecipe("x", collection, BANDS if s2 else ("vv", "vh"), 10.0, mask_source="scl")
            try:
                acq = (s2_acquisition if s2 else s1_acquisition)(item, source)
                result = f"{acq.series} {acq.product}, offset {acq.offset_dn} DN"
            except ItemError as error:
                result = f"refused: {str(error).split(': ', 1)[1]}"
        print(f"| {catalog} | {collection} | `{item.id}` | {result} |")


def build(style: str, root: Path, workers: int) -> dict:
    world = root / style
    make_world(world, PRESETS["tiny"], workers=workers, style=style)
    recipe = load_recipe(ROOT / "recipes" / "demo.toml")
    if style == "cdse":
        recipe = dataclasses.replace(recipe, s2=dataclasses.replace(recipe.s2, mask_source="scl", masks=()))
    with WorldServers(world) as servers:
        saved = dict(os.environ)
        if servers.s3 is not None:
            os.environ.update(servers.s3.gdal_env())
        try:
            servers.assets.counters.reset()
            t0 = time.perf_counter()
            report = build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe.with_catalog(servers.api.url),
                                                 root / f"{style}-out", workers=workers))
            seconds = time.perf_counter() - t0
        finally:
            os.environ.clear()
            os.environ.update(saved)
        counters = [servers.assets.counters] + ([servers.s3.counters] if servers.s3 is not None else [])
        requests = sum(c.requests for c in counters)
        served = sum(c.bytes_sent for c in counters)
    return {"style": style, "tiles": len(report.done), "failed": len(report.failed),
            "refused": len(report.refused_items), "units": report.units, "tile_dates": report.tile_dates,
            "requests": requests, "bytes": served, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    real_items()
    print()
    print("| world style (tiny, pgstac) | tiles built | failed | items refused | units | tile-dates | requests "
          "| MB served | requests / tile-date | KB / tile-date | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for style in ("planetary-computer", "earth-search", "cdse"):
            r = build(style, Path(tmp), args.workers)
            print(f"| {r['style']} | {r['tiles']} | {r['failed']} | {r['refused']} | {r['units']} | {r['tile_dates']} "
                  f"| {r['requests']} | {r['bytes'] / 1e6:.2f} | {r['requests'] / r['tile_dates']:.2f} "
                  f"| {r['bytes'] / 1e3 / r['tile_dates']:.1f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
