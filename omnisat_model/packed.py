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

from .data_treesatai import DATE_TOKEN, SERIES_H5, DataError, day_of_year


def fingerprint(root: Path, split: str) -> dict:
    """What the cache was built from: a changed list or label file invalidates it."""
    files = [root / f"{split}_filenames.lst", root / "labels" / "TreeSatBA_v9_60m_multi_labels.json"]
    return {str(p.relative_to(root)): [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.is_file()}


def read_tile(root: Path, name: str, modalities: tuple[str, ...]) -> tuple[np.ndarray | None, dict]:
    """The raw arrays of one tile: aerial (4, H, W) uint8, and per series (data (T, C, 6, 6) float32, day of year (T,)).

    An unreadable file (truncated, empty, not HDF5 / GeoTIFF) is a DataError naming it, not a traceback."""
    try:
        return _read_tile(root, name, modalities)
    except (OSError, KeyError, ValueError, rasterio.errors.RasterioError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{root}: tile {name}: cannot be read ({' '.join(str(error).split())[:200]})") from None


def _read_tile(root: Path, name: str, modalities: tuple[str, ...]) -> tuple[np.ndarray | None, dict]:
    aerial = None
    if "aerial" in modalities:
        with rasterio.open(root / "aerial" / f"{name}.tif") as src:
            aerial = src.read()
    series = {}
    wanted = [m for m in modalities if m != "aerial"]
    if wanted:
        with h5py.File(root / "sentinel" / f"{name}.h5", "r") as f:
            for m in wanted:
                products = [p.decode() if isinstance(p, bytes) else str(p) for p in f[f"{SERIES_H5[m]}-products"][()]]
                dates = np.array([day_of_year(p, DATE_TOKEN[m]) for p in products], np.int16)
                series[m] = (f[f"{SERIES_H5[m]}-data"][()].astype(np.float32), dates)
    return aerial, series


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
                    lengths[m][i] = f[f"{SERIES_H5[m]}-data"].shape[0]
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
        arrays[m] = (offsets,
                     np.lib.format.open_memmap(tmp / f"{m}.data.npy", "w+", np.float32, (int(offsets[-1]), channels, 6, 6)),
                     np.lib.format.open_memmap(tmp / f"{m}.dates.npy", "w+", np.int16, (int(offsets[-1]),)))
    for i, name in enumerate(names):  # pass 2: the data
        image, tiles = read_tile(root, name, modalities)
        if aerial is not None:
            if image.shape != aerial_shape:
                raise ValueError(f"{root / 'aerial' / (name + '.tif')}: shape {image.shape}, the split's first is {aerial_shape}")
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
