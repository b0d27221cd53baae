"""The TreeSatAI-TS files of one tile, written exactly as released (datasets spec sections 2 and 7.1).

`sentinel/<stem>.h5`: top-level datasets only, contiguous, uncompressed, float32 data and
variable-length UTF-8 product names, sorted in time, every value finite. `s1-asc|s1-des/<stem>.pth`:
OmniSat's preprocessing (VV, VH, VV/(VH+1e-8), NaN filled with the frame's spatial mean). Every
file is written under a temporary name and renamed, so a file under its final name is complete.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from omnisat_data.io.atomic import replacing, write_bytes
from omnisat_data.io.pth import pth_bytes

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
SERIES = ("s2", "s1-asc", "s1-des")
H5_NAMES = {"s2": "sen-2", "s1-asc": "sen-1-asc", "s1-des": "sen-1-des"}  # <name>-data, -products (-masks)
DATE_TOKEN = {"s2": 2, "s1-asc": 4, "s1-des": 4}  # "_"-token of a product name that starts with its date
# The 15 genera of TreeSatAI's multi-label classification, in the class order of every loader.
GENERA = ("Abies", "Acer", "Alnus", "Betula", "Cleared", "Fagus", "Fraxinus", "Larix", "Picea", "Pinus", "Populus",
          "Prunus", "Pseudotsuga", "Quercus", "Tilia")
LABEL_THRESHOLD = 0.07  # a genus is a label of a tile whose area share exceeds it (the loaders' rule)
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


def write_h5(path: Path, s2: Series, asc: Series, des: Series) -> None:
    strings = h5py.string_dtype("utf-8")
    # built in memory and written once at close (the "core" driver): the same bytes, a third less time
    with replacing(path) as tmp, h5py.File(tmp, "w", libver="earliest", track_order=False, driver="core",
                                           backing_store=True) as f:
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
    """The bytes torch.save writes for the tensor (io/pth.py), without importing torch."""
    write_bytes(path, pth_bytes(pth_tensor(data)))


def split_list(root: Path, split: str) -> Path:
    """The file names of a split (train, val, test), one per line."""
    return Path(root) / f"{split}_filenames.lst"


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
