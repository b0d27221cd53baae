"""Writing Cloud-Optimised GeoTIFFs and plain GeoTIFFs, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from omnisat_data.geo.grid import Grid

from .atomic import replacing


def write_cog(path: Path, data: np.ndarray, grid: Grid, nodata: float | None, blocksize: int = 256,
              compress: str = "DEFLATE", resampling: str = "AVERAGE", band_names: tuple[str, ...] = (),
              predictor: bool = False, threads: int = 1) -> None:
    """Write (bands, H, W) or (H, W) `data` on `grid` as a tiled COG with internal overviews.

    Overviews are built down to one block (at least one level when the image exceeds a block), as GDAL's
    COG driver does; the file appears under its final name only once complete. `predictor`: the horizontal
    (integers) or floating-point predictor before compression, as production catalogs' COGs.
    """
    data = data[None] if data.ndim == 2 else data
    count, height, width = data.shape
    if (height, width) != grid.shape:
        raise ValueError(f"{path.name}: data shape {(height, width)} does not match grid {grid.shape}")
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                   crs=grid.rio_crs, transform=grid.transform, nodata=nodata)
    with MemoryFile() as mem, replacing(path) as tmp:
        with mem.open(**profile) as ds:
            ds.write(data)
            for i, name in enumerate(band_names, start=1):
                ds.set_band_description(i, name)
        with mem.open() as src:
            rasterio.shutil.copy(src, tmp, driver="COG", BLOCKSIZE=blocksize, COMPRESS=compress,
                                 OVERVIEW_RESAMPLING=resampling, RESAMPLING=resampling, NUM_THREADS=str(threads),
                                 **({"PREDICTOR": "YES"} if predictor else {}))


def write_gtiff(path: Path, data: np.ndarray, grid: Grid, nodata: float | None = None, **options) -> None:
    """Plain (uncompressed, pixel-interleaved) GeoTIFF, as the benchmark archives ship them."""
    data = data[None] if data.ndim == 2 else data
    with replacing(path) as tmp, rasterio.open(
            tmp, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
            dtype=data.dtype.name, crs=grid.rio_crs, transform=grid.transform, nodata=nodata,
            interleave="pixel", **options) as ds:
        ds.write(data)
