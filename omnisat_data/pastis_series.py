"""PASTIS-R Sentinel series of one patch from the acquisitions read for it (datasets spec 3.2, 7.2).

PASTIS stores one frame per day, ascending and unique (its loaders rebuild dates from a table of
unique days): acquisitions of one day are mosaicked in time order (the first valid value wins), and
a day whose mosaic leaves any pixel of the patch without data is dropped, since the released
arrays have no nodata. Units:
  DATA_S2  int16 (T, 10, 128, 128): L2A reflectance x 10000 (harmonised DN);
  DATA_S1A / DATA_S1D float16 (T, 3, 128, 128): sigma0 in dB, VV, VH and VV - VH.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .acquisitions import Acquisition
from .atomic import replacing
from .grid import Grid
from .mosaic import first_valid
from .scene_read import ReadSpec, read_acquisition

FOLDERS = {"s2": ("DATA_S2", "S2"), "s1-asc": ("DATA_S1A", "S1A"), "s1-des": ("DATA_S1D", "S1D")}
S2_MISSING = np.iinfo(np.int16).min  # in-flight marker of "no data" (never written)


@dataclass(frozen=True)
class DailySeries:
    dates: tuple[int, ...]  # YYYYMMDD, ascending, unique
    data: np.ndarray  # (T, C, H, W) in the file's dtype
    items: tuple[tuple[str, ...], ...]  # per date, the items mosaicked into it


def pastis_unit(acq: Acquisition, grids: tuple[Grid, ...], spec: ReadSpec) -> tuple[np.ndarray, int]:
    """read_acquisition, converted in the worker to the file's compact dtype (4x less to hold):
    Sentinel-2 int16 DN (S2_MISSING where no data), Sentinel-1 float16 dB with VV - VH (NaN: no data)."""
    values, nbytes = read_acquisition(acq, grids, spec)
    if acq.series == "s2":
        data = values[:, : len(spec.bands)]
        return np.where(np.isnan(data), S2_MISSING, np.rint(data)).astype(np.int16), nbytes
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(np.where(values > 0, values, np.nan))
    return np.concatenate([db, db[:, :1] - db[:, 1:2]], axis=1).astype(np.float16), nbytes


def _missing(frame: np.ndarray) -> np.ndarray:
    """(H, W) True where any band has no data."""
    return (frame == S2_MISSING).any(axis=0) if frame.dtype == np.int16 else np.isnan(frame).any(axis=0)


def daily_series(frames: list[tuple[tuple, str, np.ndarray]], channels: int, dtype, shape: tuple[int, int]) -> DailySeries:
    """Frames (sort key with the UTC datetime first, item id, values) -> one complete frame per day."""
    days: dict[int, list] = {}
    for key, item, values in sorted(frames, key=lambda f: f[0]):
        days.setdefault(int(key[0].strftime("%Y%m%d")), []).append((item, values))
    dates, data, items = [], [], []
    for day in sorted(days):
        mosaic, used = first_valid([values for _, values in days[day]], _missing)
        if not _missing(mosaic).any():
            dates.append(day)
            data.append(mosaic)
            items.append(tuple(days[day][k][0] for k in used))
    array = np.stack(data).astype(dtype) if data else np.zeros((0, channels) + shape, dtype)
    return DailySeries(tuple(dates), array, tuple(items))


def save_npy(path: Path, array: np.ndarray) -> None:
    """np.save (C order, as the released files), atomically."""
    with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save would append .npy to the name
        np.save(f, np.ascontiguousarray(array))


def series_path(out: Path, series: str, pid: int | str) -> Path:
    folder, prefix = FOLDERS[series]
    return out / folder / f"{prefix}_{pid}.npy"


def s2_tile(product: str) -> str:
    """MGRS tile of a Sentinel-2 product name (token 5, e.g. T32ULU -> 32ULU); "" if absent."""
    tokens = product.split("_")
    return tokens[5][1:] if len(tokens) > 5 and tokens[5].startswith("T") else ""
