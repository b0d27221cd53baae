"""One build unit at full density: a whole scene of the production-layout world read for tiles all over it.

    python benchmarks/scene_read.py --world /tmp/prod [--delay-ms 50] [--spacing-m 1000] [--series s2,s1-asc]

Tiles of 6 x 6 px at 10 m every `--spacing-m` over the whole Sentinel-2 tile (1 per km2 by default: what a
build of the real TreeSatAI-TS area asks of one scene), read with `read_acquisition` (what a build's worker
runs) from the world's first Sentinel-2 scene and first ascending Sentinel-1 scene over HTTP Range from the
shaped asset server (in this process), each read in a child process of its own. Printed per scene: wall
time, CPU time, blocks read against the footprint minimum, compressed MB, tiles with a complete frame,
resident memory after and at peak, requests served.
Run it with another commit's code by putting that commit's tree first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from build_cloud import load_items, recipe_for, series_items  # noqa: E402

from omnisat_data.build.sentinel import read_acquisition  # noqa: E402
from omnisat_data.build.treesatai_ts import read_spec  # noqa: E402
from omnisat_data.geo.grid import Grid  # noqa: E402
from omnisat_data.sim.serve.assets import AssetServer, Shaping  # noqa: E402
from omnisat_data.sim.serve.world import rewrite_items  # noqa: E402
from omnisat_data.stac.acquisitions import s1_acquisition, s2_acquisition  # noqa: E402


def resident_mb() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024


def read_scene(items_file: Path, series: str, grids: tuple[Grid, ...]) -> str:
    """The child's work: one `read_acquisition`, timed; its line of figures."""
    recipe = recipe_for(items_file)
    item = series_items(load_items(items_file))[series][0]
    acq = s2_acquisition(item, recipe.s2) if series == "s2" else s1_acquisition(item, recipe.s1)
    t0, cpu = time.perf_counter(), time.process_time()
    values, blocks = read_acquisition(acq, grids, read_spec(recipe, "s2" if series == "s2" else "s1"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    complete = int(np.isfinite(values[:, 0]).all(axis=(1, 2)).sum())
    return (f"{series:<7} {wall:6.1f} s wall {cpu:6.1f} s CPU  blocks {blocks.read} (minimum {blocks.minimum}), "
            f"{blocks.read_bytes / 1e6:.0f} MB, {complete} tiles complete; resident {resident_mb()} MB, "
            f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


def lattice(side_m: float, spacing_m: float) -> tuple[Grid, ...]:
    """6 x 6 px tiles at 10 m every `spacing_m` over 32ULU (as production_world.MGRS), on the 10 m lattice."""
    left, top = 300000.0, 5400000.0
    rng = np.random.default_rng(0)
    n = int(side_m // spacing_m)
    return tuple(Grid.from_origin("EPSG:32632", left + spacing_m * (i + 0.5) + 10 * int(rng.integers(0, 20)),
                                  top - spacing_m * (j + 0.5), 10.0, (6, 6)) for i in range(n) for j in range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="made by benchmarks/production_world.py")
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--spacing-m", type=float, default=1000.0)
    parser.add_argument("--series", default="s2,s1-asc")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # items file, series
    args = parser.parse_args()
    side = json.loads((args.world / "world.json").read_text())["layout"]["s2_side_px"] * 10.0
    grids = lattice(side, args.spacing_m)
    if args.child:
        print(read_scene(Path(args.child[0]), args.child[1], grids), flush=True)
        return
    print(f"{len(grids)} tiles over the {side / 1000:.1f} km scene, {args.delay_ms:g} ms per request", flush=True)
    # the server in this process, each read in a child of its own (its time and memory alone)
    with AssetServer(args.world) as server, tempfile.TemporaryDirectory() as tmp:
        server.shape(Shaping(args.delay_ms / 1000))
        items_file = rewrite_items(args.world / "stac" / "items.ndjson", server.url, Path(tmp) / "items.ndjson")
        for series in args.series.split(","):
            server.counters.reset()
            command = [sys.executable, __file__, "--world", str(args.world), "--spacing-m", str(args.spacing_m),
                       "--child", str(items_file), series]
            r = subprocess.run(command, capture_output=True, text=True)
            line = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else f"{series}: failed {r.stderr[-500:]}"
            print(f"{line}; {server.counters.requests} requests", flush=True)


if __name__ == "__main__":
    main()
