"""Training samples per second from the raw TreeSatAI-TS tree vs the packed memory-mapped cache.

    python benchmarks/train_loader.py [--data demo/treesatai-ts] [--epochs 3] [--workers 0]

Both read the train split with the training transforms (random crop, date subsets) through a
DataLoader with the zero-padding collate, side by side in one run; the packing time is shown apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from omnisat_train.data.treesatai_ts import TreeSatTS, collate

ROOT = Path(__file__).resolve().parent.parent


def rate(ds: TreeSatTS, epochs: int, workers: int, batch: int) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, collate_fn=collate, num_workers=workers)
    n, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for b in loader:
            n += len(b["label"])
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "demo" / "treesatai-ts")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    mods = ("aerial", "s2", "s1-asc", "s1-des")
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    t0 = time.perf_counter()
    packed = TreeSatTS(args.data, "train", mods, train=True, cache=cache)
    pack_s = time.perf_counter() - t0
    raw = TreeSatTS(args.data, "train", mods, train=True)
    raw_rate, packed_rate = (
        rate(raw, args.epochs, args.workers, args.batch),
        rate(packed, args.epochs, args.workers, args.batch),
    )
    print(f"{len(raw)} train tiles, {args.epochs} epochs, batch {args.batch}, {args.workers} loader workers")
    print(f"{'source':<28} {'samples/s':>10} {'x raw':>6}")
    print(f"{'raw tree (tif + h5)':<28} {raw_rate:>10.1f} {1.0:>6.1f}")
    print(f"{'packed cache (memory maps)':<28} {packed_rate:>10.1f} {packed_rate / raw_rate:>6.1f}")
    print(f"packing took {pack_s:.1f} s once")


if __name__ == "__main__":
    main()
