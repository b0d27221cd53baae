"""verify-alignment against the truth: scene shifts recovered from a build of a synthetic world, compared
with the geolocation errors the world injected (truth.json). Not a timed test.

    python benchmarks/verify_accuracy.py --world demo/world --dataset demo/treesatai-ts
    python benchmarks/verify_accuracy.py --world demo/world --dataset demo/PASTIS-R --format pastis-hd

Prints, per scene pooled over tiles: median and largest error in metres, whether the >= 0.5 px flags
match the injected shifts, and the scenes with the largest errors (estimate against truth); then the
error of every accepted single (tile or patch, date) estimate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from omnisat_data.verify.run import VerifyConfig, verify

ROOT = Path(__file__).resolve().parent.parent


def truth_by_scene(world: Path, fmt: str) -> dict[str, tuple[float, float]]:
    """Scene name as the report uses it -> injected shift (m): product names, or T<tile>_<day> for PASTIS."""
    out = {}
    scenes = sorted(
        json.loads((world / "truth.json").read_text())["s2"].values(), key=lambda t: (t["datetime"], t["orbit"])
    )
    for t in scenes:
        if fmt == "pastis-hd":  # PASTIS keeps the first acquisition of a day (as the world writes it)
            out.setdefault(f"T{t['mgrs']}_{t['datetime'][:10].replace('-', '')}", tuple(t["shift"]))
        else:
            out[t["product"]] = tuple(t["shift"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world")
    parser.add_argument("--dataset", type=Path, default=ROOT / "demo" / "treesatai-ts")
    parser.add_argument("--format", default="treesatai-ts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worst", type=int, default=3, help="list this many scenes with the largest errors")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    report = verify(VerifyConfig(args.dataset, format=args.format, report=tmp / "report.json", png=tmp,
                                 workers=args.workers, worst=0))
    truth = truth_by_scene(args.world, args.format)
    threshold = report["summary"]["thresholds_px"]["suspect"] * 10.0
    errors, mismatches = [], 0
    for name, scene in report["scenes"].items():
        dx, dy = truth[name]
        errors.append(np.hypot(scene["dx"] - dx, scene["dy"] - dy))
        mismatches += scene["flagged"] != (np.hypot(dx, dy) > threshold)
    print(f"{args.dataset} ({args.format}): {len(errors)} scenes pooled over tiles")
    if errors:
        print(f"scene shift error: median {np.median(errors):.3f} m, largest {max(errors):.3f} m; "
              f"flags differing from the injected shifts: {mismatches}")
        for error, name in sorted(zip(errors, report["scenes"]), reverse=True)[: args.worst]:
            scene = report["scenes"][name]
            print(f"  {error:.3f} m  {name}: ({scene['dx']:+.2f}, {scene['dy']:+.2f}) m from {scene['estimates']} "
                  f"estimates, injected ({truth[name][0]:+.2f}, {truth[name][1]:+.2f}) m")
    print(f"tiles flagged: {report['summary']['tiles_flagged']} (the world's VHR images carry no injected shift)")
    single = [np.hypot(e["dx"] - truth[e["product"]][0], e["dy"] - truth[e["product"]][1])
              for estimates in report["per_tile_estimates"].values() for e in estimates if e["ok"]]
    if single:
        print(
            f"single estimates (one tile or patch, one date): {len(single)} accepted, error median "
            f"{np.median(single):.3f} m, 90th percentile {np.percentile(single, 90):.3f} m, largest {max(single):.3f} m"
        )


if __name__ == "__main__":
    main()
