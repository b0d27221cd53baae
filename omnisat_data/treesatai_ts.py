"""The TreeSatAI-TS files of one tile, written exactly as released (datasets spec sections 2 and 7.1).

`sentinel/<stem>.h5`: top-level datasets only, contiguous, uncompressed, float32 data and
variable-length UTF-8 product names, sorted in time, no all-NaN frame. `s1-asc|s1-des/<stem>.pth`:
OmniSat's preprocessing (VV, VH, VV/(VH+1e-8), NaN filled with the frame's spatial mean). Every
file is written under a temporary name and renamed, so a file under its final name is complete.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .atomic import temporary_path, write_bytes

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
SERIES = ("s2", "s1-asc", "s1-des")
H5_NAMES = {"s2": "sen-2", "s1-asc": "sen-1-asc", "s1-des": "sen-1-des"}
PTH_FOLDERS = ("s1-asc", "s1-des")


@dataclass(frozen=True)
class Series:
    """One tile's time series of one sensor, in time order."""

    products: tuple[str, ...]
    item_ids: tuple[str, ...]
    data: np.ndarray  # (T, bands, H, W) float32
    masks: np.ndarray | None = None  # (T, 2, H, W) float32 snow, cloud (Sentinel-2 only)

    def __len__(self) -> int:
        return len(self.products)


def assemble(frames: list[tuple[tuple, str, str, np.ndarray]], n_bands: int, with_masks: bool,
             shape: tuple[int, int] = (6, 6)) -> Series:
    """Frames (sort key, product, item id, values) -> a Series sorted in time without all-NaN frames.

    `values` holds the data bands and, for Sentinel-2, the two mask layers after them.
    """
    kept = sorted((f for f in frames if not np.isnan(f[3][:n_bands]).all()), key=lambda f: f[0])
    empty = np.zeros((0, n_bands) + shape, np.float32)
    data = np.stack([f[3][:n_bands] for f in kept]).astype(np.float32) if kept else empty
    masks = None
    if with_masks:
        masks = np.stack([f[3][n_bands:] for f in kept]).astype(np.float32) if kept else np.zeros((0, 2) + shape, np.float32)
    return Series(tuple(f[1] for f in kept), tuple(f[2] for f in kept), data, masks)


def write_h5(path: Path, s2: Series, asc: Series, des: Series) -> None:
    tmp = temporary_path(path)
    strings = h5py.string_dtype("utf-8")
    with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        for series, name in ((asc, "sen-1-asc"), (des, "sen-1-des"), (s2, "sen-2")):
            f.create_dataset(f"{name}-data", data=series.data.astype(np.float32), track_times=False)
            if name == "sen-2":
                f.create_dataset("sen-2-masks", data=series.masks.astype(np.float32), track_times=False)
            f.create_dataset(f"{name}-products", data=np.array(series.products, dtype=object), dtype=strings,
                             track_times=False)
    os.replace(tmp, path)


def pth_tensor(data: np.ndarray) -> np.ndarray:
    """OmniSat's preprocess_tsaits.py: NaN -> per-date, per-channel spatial mean; add VV/(VH+1e-8)."""
    data = data.astype(np.float32).copy()
    if np.isnan(data).any():
        with warnings.catch_warnings():  # an all-NaN channel stays NaN, as in OmniSat
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(data, axis=(2, 3), keepdims=True)
        data = np.where(np.isnan(data), means, data)
    ratio = data[:, 0:1] / (data[:, 1:2] + np.float32(1e-8))
    return np.concatenate([data, ratio], axis=1).astype(np.float32)


def write_pth(path: Path, data: np.ndarray) -> None:
    import torch

    # Through a buffer: torch.save names the zip's records after the file, and the temporary name
    # would make the bytes differ from run to run.
    buffer = io.BytesIO()
    torch.save(torch.from_numpy(np.ascontiguousarray(pth_tensor(data))), buffer)
    write_bytes(path, buffer.getvalue())


def tile_files(out: Path, stem: str) -> dict[str, Path]:
    """The files one tile owns in a TreeSatAI-TS tree (besides its aerial tifs)."""
    return {"h5": out / "sentinel" / f"{stem}.h5",
            "s1-asc": out / "s1-asc" / f"{stem}.pth",
            "s1-des": out / "s1-des" / f"{stem}.pth"}


def write_tile(out: Path, stem: str, series: dict[str, Series]) -> dict[str, Path]:
    files = tile_files(out, stem)
    write_h5(files["h5"], series["s2"], series["s1-asc"], series["s1-des"])
    for name in PTH_FOLDERS:
        write_pth(files[name], series[name].data)
    return files
