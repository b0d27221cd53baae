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
import struct
import tempfile
import time
from pathlib import Path

import pystac
import rasterio

from omnisat_data.build.plan import PLAN
from omnisat_data.build.sentinel import asset_method, footprint_blocks, tile_pixels
from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai, read_spec
from omnisat_data.formats.treesatai import read_treesatai
from omnisat_data.geo.grid import Grid
from omnisat_data.geo.resample import support
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


def jp2_tile_bytes(path: Path) -> dict[tuple[int, int], int]:
    """Compressed bytes of each tile (row, col) of a JPEG 2000 file: its tile-parts' lengths (SOT markers'
    Psot), read from the codestream. GDAL's block of a JPEG 2000 file is its tile."""
    data = path.read_bytes()
    pos = 0
    while True:  # the boxes of the JP2 file, up to the codestream box
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        head = 8
        if length == 1:
            length, head = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        length = length or len(data) - pos
        if kind == b"jp2c":
            stream = data[pos + head:pos + length]
            break
        pos += length
    p, tiles, across = 2, {}, 1  # after SOC
    while p < len(stream):
        marker = struct.unpack(">H", stream[p:p + 2])[0]
        if marker == 0xFFD9:  # EOC
            break
        if marker == 0xFF51:  # SIZ: image and tile sizes
            width, _, x0, _, tile_w, _, tile_x0 = struct.unpack(">7I", stream[p + 6:p + 34])
            across = -(-(width - tile_x0) // tile_w)
        if marker == 0xFF90:  # SOT: a tile-part, Psot bytes long (0: up to EOC)
            index, size = struct.unpack(">HI", stream[p + 4:p + 10])
            size = size or len(stream) - 2 - p
            key = divmod(index, across)
            tiles[key] = tiles.get(key, 0) + size
            p += size
            continue
        p += 2 + struct.unpack(">H", stream[p + 2:p + 4])[0]
    return tiles


def jp2_footprint_minimum(world: Path, out: Path, recipe) -> tuple[int, int]:
    """(blocks, compressed bytes) of the JPEG 2000 tiles the build's tiles' sampling windows intersect, over
    every Sentinel-2 unit of its plan: the footprint minimum, replayed from OUT/plan.json on the local copy
    of the S3 objects with the build's own window rules."""
    source = read_treesatai(world / "sources" / "treesatai")
    grids = {t.name: t.sentinel for t in source.tiles}
    spec = read_spec(recipe, "s2")
    sizes: dict[str, dict] = {}
    blocks = nbytes = 0
    for group in json.loads((out / PLAN).read_text())["sections"]["sentinel"]["groups"]:
        for unit in group["units"]:
            if unit["source"]["series"] != "s2":
                continue
            tiles = [grids[group["tiles"][i]] for i in unit["tiles"]]
            for k, (_, href) in enumerate(unit["source"]["assets"]):
                path = world / "s3" / href.removeprefix("s3://")
                with rasterio.open(path) as src:
                    grid = Grid(src.crs.to_string(), src.transform, (src.height, src.width))
                    block = tuple(src.block_shapes[0])
                cols, rows = tile_pixels(grid, tuple(tiles))
                needed = footprint_blocks(support(cols, rows, asset_method(spec, k), grid.shape), block)
                sizes.setdefault(href, jp2_tile_bytes(path))
                blocks += len(needed)
                nbytes += sum(sizes[href][b] for b in needed)
    return blocks, nbytes


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
        # read amplification: bytes served / the footprint minimum (COGs: from the build's block count;
        # JPEG 2000 on S3: replayed from the plan and the files' tile-part lengths)
        cog = servers.assets.counters.bytes_sent / report.blocks.minimum_bytes
        jp2 = None
        if servers.s3 is not None:
            _, minimum = jp2_footprint_minimum(world, root / f"{style}-out", recipe)
            jp2 = servers.s3.counters.bytes_sent / minimum
    return {"style": style, "tiles": len(report.done), "failed": len(report.failed),
            "refused": len(report.refused_items), "units": report.units, "tile_dates": report.tile_dates,
            "requests": requests, "bytes": served, "seconds": seconds, "cog": cog, "jp2": jp2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    real_items()
    print()
    print("| world style (tiny, pgstac) | tiles built | failed | items refused | units | tile-dates | requests "
          "| MB served | requests / tile-date | KB / tile-date | ampl. COG | ampl. JP2 | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for style in ("planetary-computer", "earth-search", "cdse"):
            r = build(style, Path(tmp), args.workers)
            print(f"| {r['style']} | {r['tiles']} | {r['failed']} | {r['refused']} | {r['units']} | {r['tile_dates']} "
                  f"| {r['requests']} | {r['bytes'] / 1e6:.2f} | {r['requests'] / r['tile_dates']:.2f} "
                  f"| {r['bytes'] / 1e3 / r['tile_dates']:.1f} | {r['cog']:.2f} | "
                  + ("-" if r["jp2"] is None else f"{r['jp2']:.2f}") + f" | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
