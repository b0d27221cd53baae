"""A split of a TreeSatAI-TS tree packed into a few contiguous, memory-mapped arrays (built once).

An epoch over the raw tree opens two small files per tile (tif + h5); over the packed split it slices
memory maps. Layout of `<cache>/<split>/` (written in a temporary folder, renamed when complete):

    index.json                names, modalities, aerial shape, source fingerprint
    aerial.npy                (N, 4, H, W) uint8
    <series>.data.npy         (sum T, C, 6, 6) float32, NaN kept (filled when a sample is read)
    <series>.dates.npy        (sum T,) int16 day of year
    <series>.offsets.npy      (N + 1,) int64: tile i's dates are rows offsets[i]:offsets[i+1]
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import rasterio
import rasterio.errors

from omnisat_data.formats.treesatai import LABELS
from omnisat_data.formats.treesatai_ts import H5_NAMES, split_list

from .common import read_tile


def fingerprint(root: Path, split: str) -> dict:
    """What the cache was built from: a changed list or label file invalidates it."""
    files = [split_list(root, split), root / LABELS]
    return {str(p.relative_to(root)): [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.is_file()}


def pack(root: Path, split: str, names: list[str], modalities: tuple[str, ...], cache: Path) -> Path:
    """Write the packed split (two passes: sizes, then data); returns its folder."""
    target = cache / split
    tmp = cache / f".{split}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    series = [m for m in modalities if m != "aerial"]
    lengths = {m: np.zeros(len(names), np.int64) for m in series}
    aerial_shape = None
    for i, name in enumerate(names):  # pass 1: how many dates per tile
        if series:
            with h5py.File(root / "sentinel" / f"{name}.h5", "r") as f:
                for m in series:
                    lengths[m][i] = f[f"{H5_NAMES[m]}-data"].shape[0]
        if i == 0 and "aerial" in modalities:
            with rasterio.open(root / "aerial" / f"{name}.tif") as src:
                aerial_shape = (src.count, src.height, src.width)
    aerial = None
    if aerial_shape:
        aerial = np.lib.format.open_memmap(tmp / "aerial.npy", "w+", np.uint8, (len(names),) + aerial_shape)
    arrays = {}
    for m in series:
        offsets = np.concatenate([[0], np.cumsum(lengths[m])])
        np.save(tmp / f"{m}.offsets.npy", offsets)
        channels = 10 if m == "s2" else 2
        arrays[m] = (
            offsets,
            np.lib.format.open_memmap(tmp / f"{m}.data.npy", "w+", np.float32, (int(offsets[-1]), channels, 6, 6)),
            np.lib.format.open_memmap(tmp / f"{m}.dates.npy", "w+", np.int16, (int(offsets[-1]),)),
        )
    for i, name in enumerate(names):  # pass 2: the data
        image, tiles = read_tile(root, name, modalities)
        if aerial is not None:
            if image.shape != aerial_shape:
                raise ValueError(
                    f"{root / 'aerial' / (name + '.tif')}: shape {image.shape}, the split's first is {aerial_shape}"
                )
            aerial[i] = image
        for m, (offsets, data, dates) in arrays.items():
            data[offsets[i] : offsets[i + 1]], dates[offsets[i] : offsets[i + 1]] = tiles[m]
    for a in [aerial] + [x for triple in arrays.values() for x in triple[1:]]:
        if a is not None:
            a.flush()
    (tmp / "index.json").write_text(json.dumps({"names": names, "modalities": list(modalities),
                                                "aerial_shape": aerial_shape, "source": fingerprint(root, split)}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


class PackedSplit:
    """Read-only view of a packed split; `tile(i)` returns what `read_tile` returns, from memory maps."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.names = index["names"]
        self.position = {n: i for i, n in enumerate(self.names)}
        self.modalities = tuple(index["modalities"])
        self.aerial = np.load(self.folder / "aerial.npy", mmap_mode="r") if index["aerial_shape"] else None
        self.series = {m: (np.load(self.folder / f"{m}.offsets.npy"),
                           np.load(self.folder / f"{m}.data.npy", mmap_mode="r"),
                           np.load(self.folder / f"{m}.dates.npy", mmap_mode="r"))
                       for m in self.modalities if m != "aerial"}

    def tile(self, name: str, modalities: tuple[str, ...]) -> tuple[np.ndarray | None, dict]:
        i = self.position[name]
        aerial = np.asarray(self.aerial[i]) if "aerial" in modalities else None
        out = {}
        for m in modalities:
            if m != "aerial":
                offsets, data, dates = self.series[m]
                out[m] = (np.array(data[offsets[i] : offsets[i + 1]]), np.array(dates[offsets[i] : offsets[i + 1]]))
        return aerial, out


def open_packed(root: Path, split: str, names: list[str], modalities: tuple[str, ...], cache: Path) -> PackedSplit:
    """The packed split, built (or rebuilt, when its source or modalities changed) on first use."""
    folder = cache / split
    if (folder / "index.json").is_file():
        index = json.loads((folder / "index.json").read_text())
        if (index["source"] == fingerprint(root, split) and set(modalities) <= set(index["modalities"])
                and set(names) <= set(index["names"])):
            return PackedSplit(folder)
    return PackedSplit(pack(root, split, names, modalities, cache))
