"""Memory of a Dask client (with its scheduler, in one process) as units of work stream through it:
does it grow with the number of units a build submits? (not a timed test)

    python benchmarks/dask_overhead.py [--rounds 6] [--per-round 5000]

Units like the build's: 50 tile grids in, a (50, 12, 6, 6) float32 array out, submitted in windows of
500 through the same executor the builds use (omnisat_data.io.workers) and released once read.
Prints the process's resident memory after each round.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import psutil
from affine import Affine

from omnisat_data.geo.grid import Grid
from omnisat_data.io.workers import executor


def unit(grids: tuple[Grid, ...]) -> tuple[np.ndarray, int]:
    return np.zeros((len(grids), 12, 6, 6), np.float32), 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=5000)
    args = parser.parse_args()
    from distributed import LocalCluster

    grids = tuple(Grid("EPSG:25832", Affine(10, 0, 400000 + i * 60, 0, -10, 5383000), (6, 6)) for i in range(50))
    process = psutil.Process(os.getpid())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            executor(0, cluster.scheduler_address) as pool:
        print(f"{'units':>7} {'client+scheduler MB':>20}")
        done = 0
        for _ in range(args.rounds):
            for _ in range(args.per_round // 500):
                futures = [pool.submit(unit, grids) for _ in range(500)]
                for f in futures:
                    f.result()
                done += len(futures)
                del futures
            print(f"{done:>7} {process.memory_info().rss / 2**20:>20.0f}", flush=True)


if __name__ == "__main__":
    main()
