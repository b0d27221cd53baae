"""A tile of a dataset: its name, its grid per output modality and the year it stands for.

TreeSatAI-TS convention (documented in the README): the Sentinel grid of a tile is the 6 x 6 grid
of 10 m pixels in the tile's CRS centred on the aerial tile, so Sentinel pixel (i, j) covers exactly
aerial pixels [2 + 50 i, 2 + 50 i + 50) x [2 + 50 j, 2 + 50 j + 50) of the 304 px tile: the 50 px
patch that OmniSat pairs with that pixel after its 300 px crop.
"""

from __future__ import annotations

from dataclasses import dataclass

from affine import Affine

from .grid import Grid

SENTINEL_RES = 10.0


@dataclass(frozen=True)
class Tile:
    name: str  # file stem, as the dataset names it (already safe as a path component)
    vhr: Grid  # the very-high-resolution image's grid (TreeSatAI: the aerial tif's own, 304 x 304 at 0.2 m)
    sentinel: Grid  # the Sentinel time series' grid (TreeSatAI: 6 x 6 at 10 m, centred on `vhr`)
    year: int  # acquisition year of the VHR image


def centred_grid(outer: Grid, shape: tuple[int, int], res: float = SENTINEL_RES, decimals: int = 6) -> Grid:
    """The north-up `shape` grid of `res` pixels in `outer`'s CRS sharing its centre.

    The origin is rounded to `decimals` (1 um) so that pixel sizes such as 0.2000000000001 in real
    TreeSatAI files leave no float noise in the grid.
    """
    t = outer.transform
    cx = t.c + t.a * outer.width / 2
    cy = t.f + t.e * outer.height / 2
    left = round(cx - res * shape[1] / 2, decimals)
    top = round(cy + res * shape[0] / 2, decimals)
    return Grid(outer.crs, Affine(res, 0.0, left, 0.0, -res, top), (int(shape[0]), int(shape[1])))
