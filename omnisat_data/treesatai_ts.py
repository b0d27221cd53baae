"""The TreeSatAI-TS files of one tile, written exactly as released (datasets spec sections 2 and 7.1).

`sentinel/<stem>.h5`: top-level datasets only, contiguous, uncompressed, float32 data and
variable-length UTF-8 product names, sorted in time, every value finite. `s1-asc|s1-des/<stem>.pth`:
OmniSat's preprocessing (VV, VH, VV/(VH+1e-8), NaN filled with the frame's spatial mean). Every
file is written under a temporary name and renamed, so a file under its final name is complete.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .acquisitions import same_take
from .atomic import replacing, write_bytes
from .mosaic import first_valid

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
SERIES = ("s2", "s1-asc", "s1-des")
H5_NAMES = {"s2": "sen-2", "s1-asc": "sen-1-asc", "s1-des": "sen-1-des"}
PTH_FOLDERS = ("s1-asc", "s1-des")
# The labels JSON entry of a tile built without labels (own areas, for pretraining): a class no
# TreeSatAI genus is called, so that a loader reads the tile and never mistakes it for a genus.
UNLABELLED = "unlabelled"


MASK_CHANNELS = 10  # sen-2-masks is (T, 10, H, W) in the released files: snow, cloud, then 8 zero channels


@dataclass(frozen=True)
class Series:
    """One tile's time series of one sensor, in time order, every value finite."""

    products: tuple[str, ...]
    item_ids: tuple[str, ...]
    data: np.ndarray  # (T, bands, H, W) float32
    masks: np.ndarray | None = None  # (T, 10, H, W) float32: snow, cloud probability, zeros (Sentinel-2 only)
    mosaicked: int = 0  # frames completed from another granule / slice of the same datatake / pass
    dropped: int = 0  # datatakes / passes that left pixels of the tile without data even mosaicked (not written)
    empty: int = 0  # frames of scenes whose footprint touches the tile but which hold no value over it

    def __len__(self) -> int:
        return len(self.products)


def _valid(values: np.ndarray) -> int:
    return int(np.isfinite(values).all(axis=0).sum())


def assemble(frames: list[tuple[tuple, str, str, np.ndarray]], n_bands: int, sentinel2: bool,
             shape: tuple[int, int] = (6, 6)) -> Series:
    """Frames (sort key, product, item id, values) of one sensor -> a Series sorted in time, no NaN.

    `values` holds the data bands and, for Sentinel-2, the snow and cloud layers after them (if read).
    The frames of one Sentinel-2 datatake or one Sentinel-1 pass image the same ground at the same
    time (`same_take`). Sentinel-2 keeps one frame per datatake: its first complete granule in time
    order, else the mosaic of its granules, the one with the most valid pixels first (its product name
    is stored). Sentinel-1 keeps every complete slice (the released files hold both slices of a pass
    where they overlap, with equal values); a pass with no complete slice gives the mosaic of its
    slices. A take whose mosaic still lacks pixels is not written: the released series hold no NaN.
    """
    takes: dict[tuple, list] = {}
    empty = 0
    for frame in sorted(frames, key=lambda f: f[0]):
        if not np.isfinite(frame[3]).any():
            empty += 1
        else:
            takes.setdefault(same_take(frame[1]), []).append(frame)
    kept, mosaicked, dropped = [], 0, 0
    full = shape[0] * shape[1]
    for members in takes.values():
        complete = [f for f in members if _valid(f[3]) == full]
        if complete:
            kept.extend(complete[:1] if sentinel2 else complete)
            continue
        ranked = sorted(members, key=lambda f: -_valid(f[3]))  # stable: the first in time on a tie
        values, used = first_valid([f[3] for f in ranked])
        if _valid(values) == full:
            kept.append(ranked[0][:3] + (values,))
            mosaicked += len(used) > 1
        else:
            dropped += 1
    kept.sort(key=lambda f: f[0])
    data = np.zeros((len(kept), n_bands) + shape, np.float32)
    masks = np.zeros((len(kept), MASK_CHANNELS) + shape, np.float32) if sentinel2 else None
    for k, (_, _, _, values) in enumerate(kept):
        data[k] = values[:n_bands]
        if sentinel2:
            masks[k, : values.shape[0] - n_bands] = values[n_bands:]
    return Series(tuple(f[1] for f in kept), tuple(f[2] for f in kept), data, masks, mosaicked, dropped, empty)


def write_h5(path: Path, s2: Series, asc: Series, des: Series) -> None:
    strings = h5py.string_dtype("utf-8")
    with replacing(path) as tmp, h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        for series, name in ((asc, "sen-1-asc"), (des, "sen-1-des"), (s2, "sen-2")):
            f.create_dataset(f"{name}-data", data=series.data.astype(np.float32), track_times=False)
            if name == "sen-2":
                f.create_dataset("sen-2-masks", data=series.masks.astype(np.float32), track_times=False)
            f.create_dataset(f"{name}-products", data=np.array(series.products, dtype=object), dtype=strings,
                             track_times=False)


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
