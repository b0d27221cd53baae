"""Read amplification of the TreeSatAI-TS build under alternative GDAL settings (not a timed test).

    python benchmarks/gdal_settings.py [--world demo/world] [--tiles 48]

The same in-process build over the local HTTP Range server, once per row, each in its own process
(GDAL's /vsicurl/ cache outlives rasterio.Env: settings must not be mixed in one process). A row
replaces what `gdal_http_env` returns inside the build's reader with its variant; the last row is
the toolkit's own settings with the demo recipe. Prints requests, MB served and bytes served /
compressed bytes of the COG blocks the tiles need.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, settings replacing the toolkit's own); None: the toolkit's settings as they are
ROWS = [
    (
        "VSI_CACHE=TRUE (32 KB pages), 16 KB ranges, 16 KB at open",
        {"VSI_CACHE": "TRUE", "CPL_VSIL_CURL_CHUNK_SIZE": "16384", "GDAL_INGESTED_BYTES_AT_OPEN": "16384"},
    ),
    (
        "no VSI_CACHE, 16 KB ranges, 16 KB at open",
        {"CPL_VSIL_CURL_CHUNK_SIZE": "16384", "GDAL_INGESTED_BYTES_AT_OPEN": "16384"},
    ),
    ("no VSI_CACHE, 1 KB ranges, 16 KB at open", {"GDAL_INGESTED_BYTES_AT_OPEN": "16384"}),
    ("no VSI_CACHE, 1 KB ranges, 4 KB at open", {"GDAL_INGESTED_BYTES_AT_OPEN": "4096"}),
    ("no VSI_CACHE, 1 KB ranges, 2 KB at open (demo recipe)", None),
    ("no VSI_CACHE, 1 KB ranges, 1 KB at open", {"GDAL_INGESTED_BYTES_AT_OPEN": "1024"}),
]


def child(world: Path, tiles: int, row: int) -> None:
    import omnisat_data.build.sentinel as scene_read
    from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
    from omnisat_data.recipe import load_recipe
    from omnisat_data.sim.serve.assets import AssetServer
    from omnisat_data.sim.serve.world import rewrite_items
    from omnisat_data.stac.gdal import gdal_http_env

    changes = ROWS[row][1]
    if changes is not None:
        scene_read.gdal_http_env = lambda header_bytes=16384, timeout_s=30.0: {
            **gdal_http_env(header_bytes, timeout_s),
            **changes,
        }
    tmp = Path(tempfile.mkdtemp(prefix="bench-gdal-"))
    with AssetServer(world) as server:
        items = rewrite_items(world / "stac" / "items.ndjson", server.url, tmp / "items.ndjson")
        recipe = load_recipe(ROOT / "recipes" / "demo.toml").with_catalog(str(items))
        server.counters.reset()
        report = build_treesatai(
            BuildConfig(world / "sources" / "treesatai", recipe, tmp / "out", workers=0, limit=tiles)
        )
        c = server.counters
        print(json.dumps({"requests": c.requests, "bytes": c.bytes_sent, "needed": report.bytes_read}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world")
    parser.add_argument("--tiles", type=int, default=48)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.world, args.tiles, args.child)
        return
    print(f"{'GDAL settings':<58} {'requests':>8} {'MB':>7} {'ampl.':>6}")
    for k, (label, _) in enumerate(ROWS):
        r = subprocess.run([sys.executable, __file__, "--world", str(args.world), "--tiles", str(args.tiles),
                            "--child", str(k)], capture_output=True, text=True, check=True)
        f = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{label:<58} {f['requests']:>8} {f['bytes'] / 1e6:>7.2f} {f['bytes'] / f['needed']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
