"""A pixel grid as one immutable value: CRS + affine transform + shape.

Every reprojection, crop and footprint computation in the toolkit takes and returns `Grid`
values, so pixel-centre and rounding conventions live here and nowhere else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import Polygon, box


@functools.lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """x, y order whatever the CRS axis order; cached, since building one costs milliseconds."""
    return Transformer.from_crs(src, dst, always_xy=True)


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

    @classmethod
    def square(cls, crs: str, cx: float, cy: float, size_m: float, res: float, lattice: float) -> Grid:
        """The `size_m` square of `res` pixels centred on (cx, cy), its corner on the `lattice` (metres):
        how own-area tiles and PASTIS patches are put on the 10 m Sentinel lattice."""
        left = round((cx - size_m / 2) / lattice) * lattice
        top = round((cy + size_m / 2) / lattice) * lattice
        n = int(round(size_m / res))
        return cls.from_origin(crs, left, top, res, (n, n))

    @classmethod
    def covering(cls, crs: str, x: np.ndarray, y: np.ndarray, res: float) -> Grid:
        """The grid of `res` cells aligned to multiples of `res` that covers the points (x, y)."""
        x0, x1 = np.floor(x.min() / res) * res, np.ceil(x.max() / res) * res
        y0, y1 = np.floor(y.min() / res) * res, np.ceil(y.max() / res) * res
        return cls.from_origin(crs, float(x0), float(y1), res, (int(round((y1 - y0) / res)),
                                                                int(round((x1 - x0) / res))))

    def centred(self, shape: tuple[int, int], res: float, decimals: int = 6) -> Grid:
        """The north-up `shape` grid of `res` pixels in this grid's CRS sharing its centre.

        The origin is rounded to `decimals` (1 um) so that pixel sizes such as 0.2000000000001 in real
        TreeSatAI files leave no float noise in the grid."""
        t = self.transform
        cx = t.c + t.a * self.width / 2
        cy = t.f + t.e * self.height / 2
        left = round(cx - res * shape[1] / 2, decimals)
        top = round(cy + res * shape[0] / 2, decimals)
        return Grid(self.crs, Affine(res, 0.0, left, 0.0, -res, top), (int(shape[0]), int(shape[1])))

    def lonlat_footprint(self) -> Polygon:
        """The footprint in longitude, latitude (what a STAC search and item geometry speak)."""
        to_wgs84 = transformer(self.crs, "EPSG:4326").transform  # cached: one per CRS pair, not per grid
        return shapely.transform(self.footprint, lambda x, y: to_wgs84(x, y), interleaved=False)

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

    def fractional_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (col, row) of points (in this grid's CRS): pixel (r, c) spans [c, c+1) x [r, r+1),
        its centre at +0.5."""
        inv = ~self.transform
        return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f

    def window(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The sub-grid starting at pixel (row_off, col_off)."""
        return Grid(self.crs, self.transform @ Affine.translation(col_off, row_off), (height, width))

    def to_dict(self) -> dict:
        t = self.transform
        return {"crs": self.crs, "transform": [t.a, t.b, t.c, t.d, t.e, t.f], "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(crs=d["crs"], transform=Affine(*d["transform"][:6]), shape=tuple(d["shape"]))
