"""A tile of a dataset: its name, its grid per output modality and the year it stands for.

TreeSatAI-TS convention (documented in the README): the Sentinel grid of a tile is the 6 x 6 grid
of 10 m pixels in the tile's CRS centred on the aerial tile, so Sentinel pixel (i, j) covers exactly
aerial pixels [2 + 50 i, 2 + 50 i + 50) x [2 + 50 j, 2 + 50 j + 50) of the 304 px tile: the 50 px
patch that OmniSat pairs with that pixel after its 300 px crop.
"""

from __future__ import annotations

from dataclasses import dataclass

from .grid import Grid

SENTINEL_RES = 10.0


@dataclass(frozen=True)
class Tile:
    name: str  # file stem, as the dataset names it (already safe as a path component)
    vhr: Grid  # the very-high-resolution image's grid (TreeSatAI: the aerial tif's own, 304 x 304 at 0.2 m)
    sentinel: Grid  # the Sentinel time series' grid (TreeSatAI: 6 x 6 at 10 m, centred on `vhr`)
    year: int  # acquisition year of the VHR image
