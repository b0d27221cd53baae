"""verify-alignment throughput: tiles per second on a TreeSatAI-TS tree of N tiles (not a timed test).

    python benchmarks/verify_alignment.py [--dataset demo/treesatai-ts] [--tiles 1000] [--workers 2]
    python benchmarks/verify_alignment.py --dataset tests/data/treesatai-ts-sample   # released size: 146 dates

The tree is made of hard links to the tiles of an existing build, repeated under new names until it
holds N tiles (`bash scripts/demo.sh` builds demo/treesatai-ts), so every file is real and read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from omnisat_data.verify.run import VerifyConfig, verify
from omnisat_data.verify.treesatai_ts import Layout

ROOT = Path(__file__).resolve().parent.parent


def replicate(src: Path, dst: Path, n: int) -> None:
    """dst: a TreeSatAI-TS tree of n tiles, hard links to the tiles of `src` (a tree, or a flat folder such
    as the released sample) under new names."""
    layout = Layout.of(src)
    stems = sorted(p.stem for p in layout.sentinel.glob("*.h5"))
    kinds = [("aerial", layout.aerial, ".tif"), ("sentinel", layout.sentinel, ".h5")]
    kinds += [(series, folder, ".pth") for series, folder in layout.pth.items()]
    for k in range(n):
        stem = stems[k % len(stems)]
        new = f"{stem}_r{k // len(stems)}"
        for folder, source, ext in kinds:
            (dst / folder).mkdir(parents=True, exist_ok=True)
            try:
                os.link(source / f"{stem}{ext}", dst / folder / f"{new}{ext}")
            except OSError:  # another file system: copy
                shutil.copyfile(source / f"{stem}{ext}", dst / folder / f"{new}{ext}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "demo" / "treesatai-ts")
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    replicate(args.dataset, tmp, args.tiles)
    print(f"{'workers':>7} {'tiles':>6} {'S2 dates':>9} {'seconds':>8} {'tiles/s':>8} {'estimates/s':>12}")
    for workers in sorted({0, args.workers}):
        t0 = time.perf_counter()
        report = verify(VerifyConfig(tmp, workers=workers, report=tmp / "r.json", png=tmp / "png", worst=0))
        sec = time.perf_counter() - t0
        s = report["summary"]
        print(f"{workers:>7} {s['tiles']:>6} {s['estimates']:>9} {sec:>8.1f} {s['tiles'] / sec:>8.1f} "
              f"{s['estimates'] / sec:>12.0f}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
