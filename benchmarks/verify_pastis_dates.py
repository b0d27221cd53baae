"""Why one spectral map per PASTIS patch misplaces it: crops change apart between the VHR date and the
Sentinel-2 date (not a timed test).

    python benchmarks/verify_pastis_dates.py [--world demo/world] [--dataset demo/PASTIS-R] [--day 20190728]

For each patch of the demo world and one Sentinel-2 date without injected shift, the estimator runs on:
  1. the world's red band rendered at 1 m on the Sentinel-2 date itself, against its exact 10 m box
     average (what the estimator models): the error must be 0;
  2. the same band rendered on the SPOT date (2019-07-01): the only difference is the season;
  3. the built SPOT image against the world's DATA_S2 B04, with one spectral map for the patch, and with
     one per crop class (`shift.with_classes`, what verify-alignment does).
Prints each estimate (truth: 0, 0) and its fit R2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import rasterio

from omnisat_data.formats.pastis import read_pastis, spot_path
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.field import Field
from omnisat_data.sim.world.make import plan_world
from omnisat_data.sim.world.render import content_coords, s2_values
from omnisat_data.verify.shift import estimate_shifts, with_classes

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world")
    parser.add_argument("--dataset", type=Path, default=ROOT / "demo" / "PASTIS-R", help="built by the demo")
    parser.add_argument("--day", type=int, default=20190728)
    args = parser.parse_args()
    cfg = PRESETS["demo"]
    plan, field = plan_world(cfg), Field(cfg)
    source = args.world / "sources" / "PASTIS-R"
    meta = {
        f["properties"]["ID_PATCH"]: f["properties"]
        for f in json.loads((source / "metadata.geojson").read_text())["features"]
    }
    print(f"{'patch':>6} {'case':<44} {'dx m':>7} {'dy m':>7} {'R2':>6}")
    for patch in read_pastis(source).patches:
        tile = patch.tile[1:].upper()
        scene = min((s for s in plan.s2 if s.mgrs == tile and int(s.datetime.strftime("%Y%m%d")) == args.day),
                    key=lambda s: (s.datetime, s.orbit))  # the one PASTIS keeps for the day
        if scene.shift != (0.0, 0.0):
            raise SystemExit(f"{args.day}: scene shifted by {scene.shift}; pick a day without injected shift")
        x, y = patch.vhr.pixel_centres()
        basis = field.basis(*content_coords(scene, x, y), 1.0)
        same = s2_values(field, scene, ["B02", "B03", "B04"], x, y, basis).astype(float)
        box = same[2].reshape(128, 10, 128, 10).mean(axis=(1, 3))[None]
        spot_day = dataclasses.replace(scene, datetime=scene.datetime.replace(month=7, day=1))
        season = s2_values(field, spot_day, ["B02", "B03", "B04"], x, y, basis).astype(float)
        k = list(meta[patch.id]["dates-S2"].values()).index(args.day)
        b04 = np.load(source / "DATA_S2" / f"S2_{patch.id}.npy")[k, 2].astype(float)[None]
        classes = np.load(source / "ANNOTATIONS" / f"TARGET_{patch.id}.npy")[0]
        with rasterio.open(spot_path(args.dataset, patch.id)) as src:
            spot = src.read().astype(float)
        cases = [("1 m render, same date", same, box), ("1 m render, SPOT date", season, box),
                 ("built SPOT vs DATA_S2, one map", spot, b04),
                 ("built SPOT vs DATA_S2, one map per class", with_classes(spot, classes, 10), b04)]
        for name, vhr, target in cases:
            e = estimate_shifts(vhr, target, 1.0, (0.0, 0.0), 10.0)[0]
            print(f"{patch.id:>6} {name:<44} {e.dx:>7.3f} {e.dy:>7.3f} {e.r2:>6.3f}", flush=True)


if __name__ == "__main__":
    main()
