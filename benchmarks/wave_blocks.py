"""Read amplification at full TreeSatAI-TS size, counted on paper: blocks each read touches, against the
blocks the whole area needs, for one read per cell, per wave of cells in column order, per wave in Z-order
(`omnisat_data.build.plan.z_order`; the build until 2026-12-08), and one read per scene for the whole
build (the build since: each needed block once by construction).

    python benchmarks/wave_blocks.py [--cells 1900] [--wave-tiles 512] [--tiles-per-cell 26]

The area: ~1,900 cells of 5 km (Lower Saxony, ~47,600 km2) as a square of cells; every cell needs all of
its area (1 tile per km2). Blocks: 1,024 px at 10 m (10.24 km) and at 20 m (20.48 km) for Sentinel-2,
512 px at 10 m (5.12 km) for Sentinel-1 RTC; block lattices at a few origins, averaged. The model is
the one `build_cloud.py` measures on 8 cells (3.0x per cell there: the same count on its layout).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnisat_data.build.plan import z_order  # noqa: E402

CELL = 5.0  # km
BLOCKS = {"S2 10 m (10.24 km)": 10.24, "S2 20 m (20.48 km)": 20.48, "S1 RTC (5.12 km)": 5.12}
ORIGINS = ((0.0, 0.0), (3.3, 7.1), (6.7, 1.9), (9.1, 4.4))


def blocks_of(cells: list[tuple[int, int]], size: float, origin: tuple[float, float]) -> set[tuple[int, int]]:
    """Blocks of side `size` (lattice at `origin`) that the cells' squares intersect."""
    out = set()
    for c, r in cells:
        x0, y0 = c * CELL - origin[0], r * CELL - origin[1]
        for bx in range(math.floor(x0 / size), math.ceil((x0 + CELL) / size)):
            for by in range(math.floor(y0 / size), math.ceil((y0 + CELL) / size)):
                out.add((bx, by))
    return out


def reads(order: list[tuple[int, int]], per_read: int) -> list[list[tuple[int, int]]]:
    return [order[i : i + per_read] for i in range(0, len(order), per_read)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1900)
    parser.add_argument("--wave-tiles", type=int, default=512, help="engine.WAVE_TILES")
    parser.add_argument("--tiles-per-cell", type=int, default=26)
    args = parser.parse_args()
    side = math.ceil(math.sqrt(args.cells))
    cells = [(c, r) for c in range(side) for r in range(side)][: args.cells]
    per_wave = max(args.wave_tiles // args.tiles_per_cell, 1)
    orders = {"one read per cell": reads(cells, 1),
              f"waves of {per_wave} cells, column order": reads(sorted(cells), per_wave),
              f"waves of {per_wave} cells, Z-order": reads(sorted(cells, key=lambda cell: z_order(*cell)), per_wave),
              "one read per scene, whole build": reads(cells, len(cells))}
    print(f"{args.cells} cells of 5 km ({side} x {side} square), waves of {per_wave} cells "
          f"({args.wave_tiles} tiles / {args.tiles_per_cell} per cell); blocks read / blocks needed:")
    print(f"{'reads':<40}" + "".join(f"{name:>22}" for name in BLOCKS))
    for name, groups in orders.items():
        ratios = []
        for size in BLOCKS.values():
            read = needed = 0
            for origin in ORIGINS:
                read += sum(len(blocks_of(g, size, origin)) for g in groups)
                needed += len(blocks_of(cells, size, origin))
            ratios.append(read / needed)
        print(f"{name:<40}" + "".join(f"{r:>22.2f}" for r in ratios))


if __name__ == "__main__":
    main()
