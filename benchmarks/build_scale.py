"""TreeSatAI-TS builds of increasing size on the demo world: wall time, tile-dates per second, peak
memory of the client and of a worker, bytes read per tile-date (not a timed test).

    python benchmarks/build_scale.py [--world demo/world] [--sizes 100,1000,4000] [--workers 2] [--dask]

The demo world has 48 real TreeSatAI tiles; larger source trees are made here: N tiles of 60.8 m on a
regular lattice over the world's area (62 m apart up to 3,600 tiles, overlapping beyond) (deflate-compressed
constant aerial tifs, which the build only links), with labels, splits and bb_60m.GeoJSON, so the build
searches and reads every acquisition over each tile for real. Each build runs in its own process, for clean
peak memory.
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


def make_source(world: Path, n: int, folder: Path, year: int = 2022) -> Path:
    """A TreeSatAI tree of n tiles laid on a lattice over the world's area (EPSG:25832 = the field's UTM)."""
    from affine import Affine

    from omnisat_data.geo.grid import Grid
    from omnisat_data.io.raster import write_gtiff

    cfg = json.loads((world / "world.json").read_text())["config"]
    left, top, size = cfg["aoi_left"], cfg["aoi_top"], cfg["aoi_size"]
    # 62 m apart (no overlap) while they fit; closer (overlapping tiles, each still read for itself) beyond
    per_side = max(int((size - 120) // 62), int(np.ceil(np.sqrt(n))))
    step = min(62.0, (size - 120) / per_side)
    image = np.full((4, 304, 304), 90, np.uint8)
    labels, names, features = {}, [], []
    for k in range(n):
        r, c = divmod(k, per_side)
        x0, y0 = left + 60 + c * step, top - 60 - r * step
        name = f"Picea_abies_1_{100000 + k}_WEFL_NLF"
        grid = Grid("EPSG:25832", Affine(0.2, 0, x0, 0, -0.2, y0), (304, 304))
        write_gtiff(folder / "aerial" / "60m" / f"{name}.tif", image, grid, compress="deflate")
        labels[f"{name}.tif"] = [["Picea", 1.0]]
        names.append(f"{name}.tif")
        ring = [[x0, y0], [x0 + 60.8, y0], [x0 + 60.8, y0 - 60.8], [x0, y0 - 60.8], [x0, y0]]
        features.append({"type": "Feature", "properties": {"IMG_ID": name, "YEAR": year},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps(labels))
    (folder / "train_filenames.lst").write_text("\n".join(names[: n - n // 10]) + "\n")
    (folder / "test_filenames.lst").write_text("\n".join(names[n - n // 10 :]) + "\n")
    (folder / "geojson").mkdir(exist_ok=True)
    (folder / "geojson" / "bb_60m.GeoJSON").write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25832"}},
        "features": features}))
    return folder


def start_cluster(workers: int) -> tuple[list[subprocess.Popen], str]:
    """A Dask scheduler and `workers` single-threaded worker processes, each its own OS process (as a
    user's cluster would be), so the build process's peak memory is the client's alone."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(
        subprocess.Popen(
            [str(bin_dir / "dask"), "worker", address, "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(workers, timeout=60)
    return procs, address


def one_build(source: str, items: str, out: str, workers: int, dask: bool) -> None:
    """Child process: run the build, print a JSON line of figures."""
    from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
    from omnisat_data.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "demo.toml").with_catalog(items)
    procs, scheduler = ([], None)
    if dask:
        procs, scheduler = start_cluster(workers)
    t0 = time.perf_counter()
    report = build_treesatai(BuildConfig(Path(source), recipe, Path(out), workers=workers, scheduler=scheduler))
    seconds = time.perf_counter() - t0
    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    scheduler_peak = None
    if dask:
        from distributed import Client

        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
        with Client(scheduler) as client:
            worker_peak = max(client.run(peak).values())
            scheduler_peak = client.run_on_scheduler(peak)
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
    print(
        json.dumps(
            {
                "tiles": len(report.done),
                "tile_dates": report.tile_dates,
                "seconds": seconds,
                "bytes": report.bytes_read,
                "client_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_mb": worker_peak,
                "scheduler_mb": scheduler_peak,
                "failed": len(report.failed),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world")
    parser.add_argument("--sizes", default="100,1000,3000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dask", action="store_true", help="also on a Dask cluster (scheduler and --workers worker "
                        "processes started with the dask CLI)")
    parser.add_argument("--only-dask", action="store_true", help="the Dask builds only")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        source, items, out, workers, dask = args.child
        one_build(source, items, out, int(workers), dask == "1")
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    items = str(args.world / "stac" / "items.ndjson")
    print(f"{'tiles':>6} {'where':>7} {'tile-dates':>10} {'seconds':>8} {'td/s':>7} {'KB/td':>6} {'client MB':>9} "
          f"{'worker MB':>9} {'sched. MB':>9}")
    for n in [int(s) for s in args.sizes.split(",")]:
        source = make_source(args.world, n, tmp / f"src-{n}")
        for dask in ([True] if args.only_dask else [False, True] if args.dask else [False]):
            out = tmp / f"out-{n}-{int(dask)}"
            r = subprocess.run([sys.executable, __file__, "--child", str(source), items, str(out), str(args.workers),
                                "1" if dask else "0"], capture_output=True, text=True, check=True)
            f = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{f['tiles']:>6} {'dask' if dask else 'local':>7} {f['tile_dates']:>10} {f['seconds']:>8.1f} "
                  f"{f['tile_dates'] / f['seconds']:>7.0f} {f['bytes'] / 1024 / max(f['tile_dates'], 1):>6.2f} "
                  f"{f['client_mb']:>9.0f} {f['worker_mb']:>9.0f} "
                  f"{'-' if f['scheduler_mb'] is None else format(f['scheduler_mb'], '.0f'):>9}", flush=True)


if __name__ == "__main__":
    main()
