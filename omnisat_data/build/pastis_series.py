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

import numpy as np

from omnisat_data.geo.grid import Grid
from omnisat_data.geo.mosaic import first_valid
from omnisat_data.stac.acquisitions import Acquisition

from .engine import Frame
from .sentinel import BlockCount, ReadSpec, read_acquisition

S2_MISSING = np.iinfo(np.int16).min  # in-flight marker of "no data" (never written)


@dataclass(frozen=True)
class DailySeries:
    dates: tuple[int, ...]  # YYYYMMDD, ascending, unique
    data: np.ndarray  # (T, C, H, W) in the file's dtype
    items: tuple[tuple[str, ...], ...]  # per date, the items mosaicked into it


def pastis_unit(acq: Acquisition, grids: tuple[Grid, ...], spec: ReadSpec) -> tuple[np.ndarray, BlockCount]:
    """read_acquisition, converted in the worker to the file's compact dtype (4x less to hold):
    Sentinel-2 int16 DN (S2_MISSING where no data), Sentinel-1 float16 dB with VV - VH (NaN: no data)."""
    values, blocks = read_acquisition(acq, grids, spec)
    if acq.series == "s2":
        data = values[:, : len(spec.bands)]
        return np.where(np.isnan(data), S2_MISSING, np.rint(data)).astype(np.int16), blocks
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(np.where(values > 0, values, np.nan))
    return np.concatenate([db, db[:, :1] - db[:, 1:2]], axis=1).astype(np.float16), blocks


def _missing(frame: np.ndarray) -> np.ndarray:
    """(H, W) True where any band has no data."""
    return (frame == S2_MISSING).any(axis=0) if frame.dtype == np.int16 else np.isnan(frame).any(axis=0)


def daily_series(frames: list[Frame], channels: int, dtype, shape: tuple[int, int]) -> DailySeries:
    """Frames of one series (sort keys with the UTC datetime first) -> one complete frame per day."""
    days: dict[int, list] = {}
    for frame in sorted(frames, key=lambda f: f.sort_key):
        days.setdefault(int(frame.sort_key[0].strftime("%Y%m%d")), []).append((frame.item_id, frame.values))
    dates, data, items = [], [], []
    for day in sorted(days):
        mosaic, used = first_valid([values for _, values in days[day]], _missing)
        if not _missing(mosaic).any():
            dates.append(day)
            data.append(mosaic)
            items.append(tuple(days[day][k][0] for k in used))
    array = np.stack(data).astype(dtype) if data else np.zeros((0, channels) + shape, dtype)
    return DailySeries(tuple(dates), array, tuple(items))
