"""What every TreeSatAI-TS reader of the trainer shares: the error type, the h5 names, day-of-year from a
product name, and the raw read of one tile (the datasets and the packed cache both read through it)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import rasterio
import rasterio.errors

from omnisat_data.formats.treesatai_ts import DATE_TOKEN, H5_NAMES
from omnisat_data.stac.products import day_of_year


class DataError(ValueError):
    """The dataset cannot serve this run; the message names the file and what is wrong."""


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
                products = [p.decode() if isinstance(p, bytes) else str(p) for p in f[f"{H5_NAMES[m]}-products"][()]]
                dates = np.array([day_of_year(p, DATE_TOKEN[m]) for p in products], np.int16)
                series[m] = (f[f"{H5_NAMES[m]}-data"][()].astype(np.float32), dates)
    return aerial, series
