"""A pixel grid as one immutable value: CRS + affine transform + shape.

Every reprojection, crop and footprint computation in the toolkit takes and returns `Grid`
values, so pixel-centre and rounding conventions live here and nowhere else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Polygon, box


@functools.lru_cache(maxsize=256)
def _crs_text(wkt: str) -> str:
    return CRS.from_wkt(wkt).to_string()


def crs_string(crs: CRS | None) -> str:
    """A dataset's CRS as the toolkit writes it ("EPSG:25832", else WKT); "" when it has none.

    Cached by WKT: identifying the EPSG code of a WKT that lacks one (TreeSatAI's tifs) costs ~40 ms,
    which would otherwise be paid for every tile of a 50,000-tile tree."""
    return _crs_text(crs.to_wkt()) if crs else ""


@dataclass(frozen=True)
class Grid:
    """A north-up (or any affine) pixel grid. `shape` is (height, width)."""

    crs: str
    transform: Affine
    shape: tuple[int, int]

    @classmethod
    def from_origin(cls, crs: str, left: float, top: float, res: float, shape: tuple[int, int]) -> Grid:
        return cls(crs=str(crs), transform=Affine(res, 0.0, left, 0.0, -res, top), shape=(int(shape[0]), int(shape[1])))

    @classmethod
    def from_bounds(cls, crs: str, bounds: tuple[float, float, float, float], res: float) -> Grid:
        """Grid of `res` pixels covering `bounds` exactly; the extent must be a whole number of pixels."""
        left, bottom, right, top = bounds
        width, height = (right - left) / res, (top - bottom) / res
        if abs(width - round(width)) > 1e-6 or abs(height - round(height)) > 1e-6:
            raise ValueError(f"bounds {bounds} are not a whole number of {res} m pixels")
        return cls.from_origin(crs, left, top, res, (round(height), round(width)))

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) as positive numbers."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS (north-up grids)."""
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.width
        bottom = top + self.transform.e * self.height
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)

    @property
    def footprint(self) -> Polygon:
        return box(*self.bounds)

    @property
    def rio_crs(self) -> CRS:
        return CRS.from_user_input(self.crs)

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y arrays of shape `shape` holding the coordinates of every pixel centre."""
        cols = np.arange(self.width) + 0.5
        rows = np.arange(self.height) + 0.5
        cc, rr = np.meshgrid(cols, rows)
        t = self.transform
        return t.a * cc + t.b * rr + t.c, t.d * cc + t.e * rr + t.f

    def window(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The sub-grid starting at pixel (row_off, col_off)."""
        return Grid(self.crs, self.transform @ Affine.translation(col_off, row_off), (height, width))

    def to_dict(self) -> dict:
        t = self.transform
        return {"crs": self.crs, "transform": [t.a, t.b, t.c, t.d, t.e, t.f], "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(crs=d["crs"], transform=Affine(*d["transform"][:6]), shape=tuple(d["shape"]))
