"""A world in the layout production catalogs serve, for the cloud benchmarks (`build_cloud.py`).

    python benchmarks/production_world.py --out /tmp/prod [--dates 3] [--cells 8] [--tiles-per-cell 25]
        [--scale 1] [--workers 2]
    python benchmarks/production_world.py --out /tmp/prod-wide --scenes-of /tmp/prod --cells 40

What it writes (scale 1; `--scale 8` is the same layout at 1/8 of the side, used by the test suite):
- Sentinel-2 L2A: `--dates` scenes of MGRS tile 32ULU as Planetary Computer serves them (the real item
  `pc__sentinel-2-l2a__S2B_20220612_T24XWR_N0400`: 10980 x 10980 px at 10 m, 5490 x 5490 at 20 m), the ten
  TreeSatAI-TS bands and SCL; COGs with 1024 px blocks, DEFLATE with the horizontal predictor, overviews;
  content whose blocks compress to about 1 MB (a smooth landscape plus sensor noise), baseline 04.00.
- Sentinel-1 RTC: one ascending and one descending scene as Planetary Computer's sentinel-1-rtc (the real
  item `pc__sentinel-1-rtc__S1A_20240419T045904`: float32, nodata -32768, 10 m, its own UTM grid of
  12949 x 27526 px off the 10 m lattice); COGs with 512 px blocks, DEFLATE with the floating-point
  predictor, overviews (the block size and compression are an assumption: the real item does not state
  them); speckled gamma naught, nodata outside the swath's slanted edges.
- Their STAC items (Planetary Computer style, only the assets written) in `stac/items.ndjson`.
- A TreeSatAI-like source tree (`sources/treesatai`): `--tiles-per-cell` tiles of 60 m (304 x 304 px at
  0.2 m, EPSG:25832) at random places in each of `--cells` 5 km cells (25 per cell = 1 per km2, as the real
  archive's density), flight year 2022.

Scale 1 with 3 dates: 7.8 GB in about 9 minutes on 2 cores (peak 6 GB of memory). Never used by the default
test suite. `--scenes-of WORLD`: another tree (here 40 cells, 1,000 tiles in a 20 x 50 km strip) over the
scenes of a world already made, hard-linked from it (seconds, no new raster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omnisat_data.formats.treesatai_ts import GENERA, S2_BANDS  # noqa: E402
from omnisat_data.geo.grid import Grid  # noqa: E402
from omnisat_data.io import raster  # noqa: E402
from omnisat_data.io.atomic import write_json  # noqa: E402
from omnisat_data.sim.world import stac  # noqa: E402
from omnisat_data.sim.world.config import AERIAL_CRS, FIELD_CRS  # noqa: E402
from omnisat_data.sim.world.field import Waves, Weather  # noqa: E402
from omnisat_data.sim.world.legend import S2_RESOLUTION, SPECIES_OF_GENUS  # noqa: E402
from omnisat_data.sim.world.render import S1_NODATA, S2_NODATA  # noqa: E402
from omnisat_data.sim.world.scenes import S1Scene, S2Scene  # noqa: E402

MGRS = ("32ULU", 300000.0, 5400000.0)  # name, left, top (UTM 32N) of the Sentinel-2 tile
S2_SIDE = 10980  # px at 10 m (Planetary Computer's proj:shape)
S2_BLOCK = 1024
S1_SHAPE = (12949, 27526)  # rows, cols of the real sentinel-1-rtc item
S1_BLOCK = 512
CELL = 5000.0  # m: the recipes' group_size_m
YEAR = 2022
S2_DAYS = ((6, 14), (7, 9), (8, 18))  # summer dates; more dates cycle through the year
S1_PASSES = ((117, "ascending", "17:08:41", (6, 20)), (66, "descending", "05:41:12", (7, 2)))
NOISE_DN = 8.0  # sensor noise: with the predictor, a 1024 px block deflates to about 1 MB, as real L2A


@dataclass(frozen=True)
class Layout:
    """The world's sizes: scale 1 is production; scale n divides the sides and the blocks by n."""

    scale: int = 1

    @property
    def s2_side(self) -> int:
        return S2_SIDE // self.scale // 2 * 2  # even, so the 20 m grid shares the 10 m one's extent

    @property
    def s2_block(self) -> int:
        return max(S2_BLOCK // self.scale, 16)

    @property
    def s1_shape(self) -> tuple[int, int]:
        return S1_SHAPE[0] // self.scale, S1_SHAPE[1] // self.scale

    @property
    def s1_block(self) -> int:
        return max(S1_BLOCK // self.scale, 16)


def s2_scenes(layout: Layout, dates: int) -> list[S2Scene]:
    name, left, top = MGRS
    grid = Grid.from_origin(FIELD_CRS, left, top, 10.0, (layout.s2_side, layout.s2_side))
    clear = Weather(Waves.random(np.random.default_rng(0), 1, 1000.0, 2000.0, slope=1.0), np.inf,
                    Waves.random(np.random.default_rng(1), 1, 1000.0, 2000.0, slope=1.0), np.inf)
    out = []
    for k in range(dates):
        month, day = S2_DAYS[k % len(S2_DAYS)]
        when = dt.datetime(YEAR, month, day, 10, 30, 21) + dt.timedelta(days=40 * (k // len(S2_DAYS)))
        platform = "S2A" if k % 2 == 0 else "S2B"
        stamp, processed = when.strftime("%Y%m%dT%H%M%S"), (when + dt.timedelta(hours=3)).strftime("%Y%m%dT%H%M%S")
        product = f"{platform}_MSIL2A_{stamp}_N0400_R108_T{name}_{processed}"
        item_id = f"{platform}_MSIL2A_{stamp}_R108_T{name}_{processed}"
        out.append(S2Scene(item_id, product, platform.replace("S2", "Sentinel-2"), name, 108, when, "04.00", grid,
                           (0.0, 0.0), clear, None))
    return out


def s1_scenes(layout: Layout) -> list[S1Scene]:
    _, left, top = MGRS
    rows, cols = layout.s1_shape
    out = []
    for n, (orbit, direction, time_of_day, (month, day)) in enumerate(S1_PASSES):
        start = dt.datetime.combine(dt.date(YEAR, month, day), dt.time.fromisoformat(time_of_day))
        # its own grid: off the 10 m lattice, reaching west and north of the Sentinel-2 tile
        grid = Grid.from_origin(FIELD_CRS, left - 60000.0 / layout.scale + 3.217 + n, top + 10000.0 / layout.scale
                                + 6.481 - n, 10.0, (rows, cols))
        absolute = 43000 + 175 * n + orbit
        product = (f"S1A_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{start + dt.timedelta(seconds=25):%Y%m%dT%H%M%S}_"
                   f"{absolute:06d}_{absolute * 37 % 0xFFFFFF:06X}_{0xA1B0 + n:04X}")
        out.append(S1Scene(product, "SENTINEL-1A", orbit, direction, start, start + dt.timedelta(seconds=25),
                           absolute, grid, (0.0, 0.0), 1))
    return out


def landscape(seed: int, shape: tuple[int, int], cell_px: int) -> np.ndarray:
    """A smooth field of unit variance: random values every `cell_px` pixels, bilinearly interpolated."""
    from scipy.ndimage import zoom

    rows, cols = shape
    coarse = np.random.default_rng(seed).standard_normal((rows // cell_px + 2, cols // cell_px + 2))
    return zoom(coarse.astype(np.float32), cell_px, order=1)[:rows, :cols]


def write_cog(path: Path, data: np.ndarray, grid: Grid, nodata: float | None, block: int, resampling: str) -> None:
    """A COG as production catalogs lay them out: DEFLATE with a predictor, overviews down to one block."""
    raster.write_cog(path, data, grid, nodata, block, resampling=resampling, predictor=True, threads=2)


def s2_band(root: str, scene: S2Scene, band: str, k: int, layout: Layout) -> tuple[str, float]:
    """One band of one scene (same landscape for every date and band; its own noise); returns (item, cloud %)."""
    res = 20 if band == "SCL" else S2_RESOLUTION[band]
    grid = scene.band_grid(res)
    base = landscape(7, grid.shape, max(3200 // res // layout.scale, 4))
    rng = np.random.default_rng([k, S2_BANDS.index(band) if band in S2_BANDS else 99])
    folder = Path(root) / "data" / stac.S2_COLLECTION / scene.item_id
    if band == "SCL":
        clouds = landscape(100 + k, grid.shape, max(2000 // res // layout.scale, 4)) > 1.6
        scl = np.where(base > 0.8, 5, 4).astype(np.uint8)  # bare soil where the landscape is high, else vegetation
        scl[clouds] = 9
        write_cog(folder / "SCL.tif", scl, grid, S2_NODATA, layout.s2_block, "NEAREST")
        return scene.item_id, float(100.0 * clouds.mean())
    level = 1000 + 1500 + 400 * S2_BANDS.index(band)  # baseline 04.00: +1000 DN offset on every valid pixel
    dn = np.empty(grid.shape, np.uint16)
    for top in range(0, grid.shape[0], 1024):
        strip = level + 600 * base[top : top + 1024] + rng.normal(0.0, NOISE_DN, base[top : top + 1024].shape)
        dn[top : top + 1024] = np.clip(strip, 1, 65535)
    del base
    write_cog(folder / f"{band}.tif", dn, grid, S2_NODATA, layout.s2_block, "AVERAGE")
    return scene.item_id, -1.0


def s1_pol(root: str, scene: S1Scene, pol: str, k: int, layout: Layout) -> tuple[str, float]:
    """Speckled linear gamma naught (4 looks) over a smooth landscape; nodata outside the slanted swath."""
    rows, cols = scene.grid.shape
    base = landscape(11, (rows, cols), max(320 // layout.scale, 4))
    rng = np.random.default_rng([k, 0 if pol == "vv" else 1])
    gamma0 = np.empty((rows, cols), np.float32)
    c = np.arange(cols)[None, :]
    for top in range(0, rows, 512):  # in strips: the full scene in float64 would take 3 GB per array
        r = np.arange(top, min(top + 512, rows))[:, None]
        mean = (0.12 if pol == "vv" else 0.03) * np.exp(0.5 * base[top : top + 512])
        strip = mean * rng.gamma(4.0, 0.25, (len(r), cols)).astype(np.float32)
        inside = (c > 0.12 * cols * (1 - r / rows)) & (c < cols - 0.12 * cols * (r / rows))
        gamma0[top : top + 512] = np.where(inside, strip, S1_NODATA)
    del base
    write_cog(Path(root) / "data" / stac.S1_COLLECTION / scene.item_id / f"{pol}.tif", gamma0, scene.grid, S1_NODATA,
              layout.s1_block, "AVERAGE")
    return scene.item_id, -1.0


def cell_origins(layout: Layout, cells: int) -> list[tuple[float, float]]:
    """Top-left corners of the 5 km cells: rows of four, on the 5 km lattice, inside the Sentinel-2 tile."""
    _, left, top = MGRS
    extent = layout.s2_side * 10.0
    across = min(cells, 4)
    offset = math.floor(max(min(40000.0, (extent - across * CELL) / 2), 0.0) / CELL) * CELL
    out = [(left + offset + (n % 4) * CELL, top - offset - (n // 4) * CELL) for n in range(cells)]
    if any(x + CELL > left + extent or y - CELL < top - extent for x, y in out):
        raise SystemExit(f"{cells} cells of 5 km do not fit in a {extent / 1000:.1f} km scene: fewer --cells")
    return out


def write_source(root: Path, layout: Layout, cells: int, per_cell: int) -> int:
    """The TreeSatAI-like tree: aerial 60 m tiles, labels, splits and footprints with their flight year."""
    from pyproj import Transformer

    to_25832 = Transformer.from_crs(FIELD_CRS, AERIAL_CRS, always_xy=True)
    rng = np.random.default_rng(5)
    names, labels, features = [], {}, []
    for c, (cx, cy) in enumerate(cell_origins(layout, cells)):
        for k in range(per_cell):
            x, y = cx + rng.uniform(100, CELL - 160), cy - rng.uniform(100, CELL - 160)
            ex, ey = to_25832.transform(x, y)
            grid = Grid.from_origin(AERIAL_CRS, round(ex / 0.2) * 0.2, round(ey / 0.2) * 0.2, 0.2, (304, 304))
            genus = GENERA[(c * per_cell + k) % len(GENERA)]
            name = f"{SPECIES_OF_GENUS[genus]}_{k % 7 + 1}_{2000 + 37 * (c * per_cell + k)}_WEFL_NLF"
            image = rng.integers(20, 230, (4, 304, 304), dtype=np.uint8)
            raster.write_gtiff(root / "aerial" / "60m" / f"{name}.tif", image, grid)
            names.append(name + ".tif")
            labels[name + ".tif"] = [[genus, 1.0]]
            left, bottom, right, top = grid.bounds
            ring = [[left, top], [right, top], [right, bottom], [left, bottom], [left, top]]
            features.append({"type": "Feature", "properties": {"IMG_ID": name, "YEAR": YEAR},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    write_json(root / "labels" / "TreeSatBA_v9_60m_multi_labels.json", labels)
    order = np.random.default_rng(0).permutation(len(names))
    n_test = max(1, len(names) // 5)
    (root / "test_filenames.lst").write_text("\n".join(sorted(names[i] for i in order[:n_test])) + "\n")
    (root / "train_filenames.lst").write_text("\n".join(sorted(names[i] for i in order[n_test:])) + "\n")
    write_json(root / "geojson" / "bb_60m.GeoJSON", {
        "type": "FeatureCollection", "name": "bb_60m",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25832"}}, "features": features})
    return len(names)


def make(out: Path, dates: int = 3, cells: int = 8, per_cell: int = 25, scale: int = 1, workers: int = 2,
         progress=None) -> dict:
    """Write the world into `out` (absent or empty); returns its summary (also `out/world.json`)."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: give a new folder")
    layout = Layout(scale)
    t0 = time.perf_counter()
    tiles = write_source(out / "sources" / "treesatai", layout, cells, per_cell)
    s2, s1 = s2_scenes(layout, dates), s1_scenes(layout)
    jobs = [(s1_pol, s, pol, k) for k, s in enumerate(s1) for pol in ("vv", "vh")]  # the largest first
    jobs += [(s2_band, s, b, k) for k, s in enumerate(s2) for b in (*S2_BANDS, "SCL")]
    cloud = {}
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, str(out), scene, part, k, layout) for fn, scene, part, k in jobs]
        for done, future in enumerate(futures, start=1):
            item, cover = future.result()
            if cover >= 0:
                cloud[item] = cover
            if progress:
                progress(done, len(futures))
    written = set(S2_BANDS) | {"SCL"}
    items = []
    for scene in s2:
        item = stac.s2_item(scene, cloud[scene.item_id], scene.grid.bounds[3])
        for key in [k for k in item.assets if k not in written]:  # Planetary Computer has no SNW / CLD
            del item.assets[key]
        items.append(item)
    items += [stac.s1_item(scene) for scene in s1]
    (out / "stac").mkdir(exist_ok=True)
    (out / "stac" / "items.ndjson").write_text(
        "".join(json.dumps(i.to_dict(include_self_link=False, transform_hrefs=False)) + "\n" for i in items))
    data = [p for p in (out / "data").rglob("*.tif")]
    summary = {"scale": scale, "dates": dates, "cells": cells, "tiles": tiles, "s2 scenes": len(s2),
               "s1 scenes": len(s1), "cog files": len(data), "bytes": sum(p.stat().st_size for p in data),
               "seconds": round(time.perf_counter() - t0, 1),
               "layout": {"s2_side_px": layout.s2_side, "s2_block_px": layout.s2_block,
                          "s1_shape_px": list(layout.s1_shape), "s1_block_px": layout.s1_block}}
    write_json(out / "world.json", summary)
    return summary


def tree_over(out: Path, scenes_of: Path, cells: int, per_cell: int) -> dict:
    """A world of a new TreeSatAI-like tree over the scenes (COGs, items) of `scenes_of`, hard-linked from it."""
    import os
    import shutil

    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: give a new folder")
    summary = json.loads((scenes_of / "world.json").read_text())
    tiles = write_source(out / "sources" / "treesatai", Layout(summary["scale"]), cells, per_cell)
    for path in [*(scenes_of / "data").rglob("*"), *(scenes_of / "stac").rglob("*")]:
        if path.is_file():  # the asset server serves nothing outside its root: links, not symlinks
            target = out / path.relative_to(scenes_of)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
    summary.update(cells=cells, tiles=tiles, scenes_of=str(scenes_of))
    write_json(out / "world.json", summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dates", type=int, default=3)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--tiles-per-cell", type=int, default=25)
    parser.add_argument("--scale", type=int, default=1, help="divide the sides and blocks by this (1 = production)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scenes-of", type=Path, help="a world made before: a new tree over its scenes")
    args = parser.parse_args()
    if args.scenes_of:
        print(json.dumps(tree_over(args.out, args.scenes_of, args.cells, args.tiles_per_cell), indent=1))
        return
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task("rasters", total=None)
        summary = make(args.out, args.dates, args.cells, args.tiles_per_cell, args.scale, args.workers,
                       lambda done, total: bar.update(task, completed=done, total=total))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
