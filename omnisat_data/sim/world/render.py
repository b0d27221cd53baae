"""What each sensor records: exact values of the field for any point of a scene.

`*_values(field, scene, x, y)` give the value a scene holds at coordinates (x, y) in the scene's
own CRS; rendering a raster is calling them at its pixel centres. Tests call the same functions
at the pixel centres they read back, so georeferencing mistakes cannot hide.
"""

from __future__ import annotations

import numpy as np
from pyproj import Transformer

from omnisat_data.geo.grid import Grid

from .config import FIELD_CRS
from .field import Field
from .legend import S2_BANDS, S2_RESOLUTION
from .scenes import AerialScene, S1Scene, S2Scene, SpotScene

S2_NODATA = 0
S1_NODATA = -32768.0
AERIAL_BANDS = ("nir", "green", "blue", "red")  # TreeSatAI CIR order: IR, G, B, R
_AERIAL_S2 = np.array([S2_BANDS.index(b) for b in ("B08", "B03", "B02", "B04")])
_AERIAL_GAIN = np.array([420.0, 1100.0, 1300.0, 1100.0])
SPOT_BANDS = ("red", "green", "blue")
_SPOT_S2 = np.array([S2_BANDS.index(b) for b in ("B04", "B03", "B02")])
_SPOT_GAIN = np.array([1000.0, 1000.0, 1100.0])

# Scene classification (ESA L2A SCL) codes used by the world.
SCL_NODATA, SCL_VEGETATION, SCL_NOT_VEGETATED = 0, 4, 5
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_SNOW = 8, 9, 11


def _to_field(crs: str, x, y):
    if crs == FIELD_CRS:
        return np.asarray(x, float), np.asarray(y, float)
    fx, fy = Transformer.from_crs(crs, FIELD_CRS, always_xy=True).transform(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(fx), np.asarray(fy)


def content_coords(scene, x, y):
    """Field coordinates the scene's pixel at (x, y) actually shows, given its geolocation error."""
    fx, fy = _to_field(scene.grid.crs, x, y)
    return fx - scene.shift[0], fy - scene.shift[1]


def s2_valid(scene: S2Scene, field: Field, x, y) -> np.ndarray:
    if scene.swath_edge is None:
        return np.ones(np.shape(x), bool)
    return (np.asarray(x) - scene.swath_edge + 0.25 * (np.asarray(y) - field.y0)) > 0


def s2_weather(field: Field, scene: S2Scene, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Cloud and snow probability (0-100, float) at scene coordinates."""
    cx, cy = content_coords(scene, x, y)
    rx, ry = cx - field.x0, cy - field.y0
    return scene.weather.cloud_probability(rx, ry), scene.weather.snow_probability(rx, ry)


def s2_values(field: Field, scene: S2Scene, bands: list[str], x, y, basis=None) -> np.ndarray:
    """(n_bands, ...) uint16 DN at scene coordinates, as stored (+1000 from baseline 04.00, nodata 0).

    All `bands` must share one resolution; `basis` is `field.basis` at the content coordinates
    (`content_coords`) for that resolution, when the caller has it already.
    """
    idx = np.array([S2_BANDS.index(b) for b in bands])
    res = float(scene_resolution(bands[0]))
    cx, cy = content_coords(scene, x, y)
    doy = scene.datetime.timetuple().tm_yday
    surface = field.reflectance(cx, cy, doy, res, bands=idx, basis=basis)
    cloud, snow = s2_weather(field, scene, x, y)
    toa = scene.weather.apply(surface, cloud, snow, idx)
    dn = np.rint(toa * 10000.0) + (1000 if scene.offset_applied else 0)
    dn = np.clip(dn, 1, 65535)
    return np.where(s2_valid(scene, field, x, y)[None], dn, S2_NODATA).astype(np.uint16)


def s2_mask_values(field: Field, scene: S2Scene, x, y, basis=None) -> dict[str, np.ndarray]:
    """SCL class, cloud probability and snow probability (uint8) at scene coordinates (20 m basis)."""
    cloud, snow = s2_weather(field, scene, x, y)
    cx, cy = content_coords(scene, x, y)
    cover = field.vegetation_cover(cx, cy, scene.datetime.timetuple().tm_yday, 20.0, basis=basis)
    scl = np.where(cover > 0.5, SCL_VEGETATION, SCL_NOT_VEGETATED)
    scl = np.where(snow >= 50, SCL_SNOW, scl)
    scl = np.where(cloud >= 35, SCL_CLOUD_MEDIUM, scl)
    scl = np.where(cloud >= 65, SCL_CLOUD_HIGH, scl)
    valid = s2_valid(scene, field, x, y)
    return {
        "SCL": np.where(valid, scl, SCL_NODATA).astype(np.uint8),
        "CLD": np.where(valid, np.rint(cloud), 0).astype(np.uint8),
        "SNW": np.where(valid, np.rint(snow), 0).astype(np.uint8),
    }


def scene_resolution(band: str) -> int:
    """Native pixel size of an S2 asset (masks are 20 m)."""
    return S2_RESOLUTION.get(band, 20)


def s1_values(field: Field, scene: S1Scene, x, y, basis=None) -> np.ndarray:
    """(2, ...) float32 linear gamma0 VV, VH at scene coordinates."""
    cx, cy = content_coords(scene, x, y)
    doy = scene.start.timetuple().tm_yday
    return field.backscatter(cx, cy, doy, 10.0, scene.direction == "descending", basis=basis).astype(np.float32)


def aerial_values(field: Field, scene: AerialScene, x, y) -> np.ndarray:
    """(4, ...) uint8 NIR, G, B, R at scene coordinates (EPSG:25832)."""
    cx, cy = content_coords(scene, x, y)
    refl = field.reflectance(cx, cy, scene.datetime.timetuple().tm_yday, 0.2, bands=_AERIAL_S2)
    dn = refl * _AERIAL_GAIN.reshape((-1,) + (1,) * (refl.ndim - 1)) + 12.0
    return np.clip(np.rint(dn), 0, 255).astype(np.uint8)


NAIP_BANDS = ("red", "green", "blue", "nir")  # NAIP's order: R, G, B, NIR
_NAIP_FROM_AERIAL = [3, 1, 2, 0]  # the aerial camera's NIR, G, B, R as R, G, B, NIR


def naip_values(field: Field, scene, x, y) -> np.ndarray:
    """(4, ...) uint8 R, G, B, NIR: the aerial camera's response at NAIP's pixel size (its box PSF), in
    NAIP's band order."""
    cx, cy = content_coords(scene, x, y)
    refl = field.reflectance(cx, cy, scene.datetime.timetuple().tm_yday, scene.grid.res[0], bands=_AERIAL_S2)
    dn = refl * _AERIAL_GAIN.reshape((-1,) + (1,) * (refl.ndim - 1)) + 12.0
    return np.clip(np.rint(dn), 0, 255).astype(np.uint8)[_NAIP_FROM_AERIAL]


def spot_values(field: Field, scene: SpotScene, x, y) -> np.ndarray:
    """(3, ...) uint8 R, G, B at scene coordinates (EPSG:2154)."""
    cx, cy = content_coords(scene, x, y)
    refl = field.reflectance(cx, cy, scene.datetime.timetuple().tm_yday, 1.0, bands=_SPOT_S2)
    dn = refl * _SPOT_GAIN.reshape((-1,) + (1,) * (refl.ndim - 1)) + 8.0
    return np.clip(np.rint(dn), 0, 255).astype(np.uint8)


def on_grid(fn, grid: Grid, rows_per_block: int = 512) -> np.ndarray:
    """Evaluate `fn(x, y)` at every pixel centre of `grid`, in row blocks to bound memory."""
    out = None
    for r0 in range(0, grid.height, rows_per_block):
        sub = grid.window(r0, 0, min(rows_per_block, grid.height - r0), grid.width)
        x, y = sub.pixel_centres()
        block = fn(x, y)
        if out is None:
            out = np.empty(block.shape[:-2] + grid.shape, dtype=block.dtype)
        out[..., r0 : r0 + sub.height, :] = block
    return out
