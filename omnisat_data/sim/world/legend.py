"""Land-cover classes of the synthetic world: what each looks like to each sensor over the year.

Each class carries the label it gives in each benchmark: a TreeSatAI genus (forest strip) or a
PASTIS crop class (agricultural area), so labels follow from the same map the pixels do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnisat_data.formats.pastis import CLASS_NAMES
from omnisat_data.formats.treesatai_ts import GENERA

# Sentinel-2 L2A band assets (B10 is absent from L2A) and their centre wavelengths in nm.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
                 "B8A": 20, "B09": 60, "B11": 20, "B12": 20}

# Reference spectra (reflectance per band in S2_BANDS order).
SOIL = np.array([0.07, 0.08, 0.11, 0.15, 0.17, 0.19, 0.21, 0.23, 0.24, 0.25, 0.32, 0.27])
SNOW = np.array([0.88, 0.87, 0.85, 0.82, 0.80, 0.78, 0.76, 0.74, 0.72, 0.60, 0.08, 0.05])
CLOUD = np.array([0.50, 0.48, 0.47, 0.46, 0.46, 0.46, 0.46, 0.46, 0.46, 0.40, 0.38, 0.30])
_CANOPY_SHAPE = np.array([0.04, 0.05, 0.10, 0.05, 0.20, 0.55, 0.80, 0.95, 1.00, 0.90, 0.45, 0.20])


def canopy_spectrum(nir: float, visible: float, swir: float) -> np.ndarray:
    """A green-vegetation spectrum with the given NIR plateau, visible scale and SWIR scale."""
    s = _CANOPY_SHAPE * nir
    s[:5] = _CANOPY_SHAPE[:5] * visible * 0.6  # B01..B05 follow the visible scale
    s[10:] = _CANOPY_SHAPE[10:] * swir * 0.5
    return s


@dataclass(frozen=True)
class LandCover:
    name: str
    region: str  # "forest" or "crop"
    genus: str | None  # TreeSatAI genus label, None for non-forest
    pastis: int  # PASTIS semantic class id (0 = background)
    frequency: float  # relative share of cells in its region
    nir: float
    visible: float
    swir: float
    base_cover: float  # vegetation cover outside the season
    peak_cover: float
    green_up: int  # day of year
    senescence: int
    vv: tuple[float, float]  # linear gamma0 (bare, full cover)
    vh: tuple[float, float]

    def cover(self, doy: float) -> float:
        rise = 1.0 / (1.0 + np.exp(-(doy - self.green_up) / 8.0))
        fall = 1.0 / (1.0 + np.exp(-(self.senescence - doy) / 8.0))
        return self.base_cover + (self.peak_cover - self.base_cover) * rise * fall

    @property
    def canopy(self) -> np.ndarray:
        return canopy_spectrum(self.nir, self.visible, self.swir)


LEGEND: tuple[LandCover, ...] = (
    # Forest strip: all 15 TreeSatAI genera, each with its own spectrum, phenology and backscatter
    # (evergreen conifers keep their cover in winter; deciduous genera differ in leaf-out, leaf fall
    # and brightness), in equal shares so that every genus is learnable from a few hundred tiles.
    LandCover("spruce", "forest", "Picea", 0, 1, 0.24, 0.35, 0.22, 0.85, 0.90, 110, 300, (0.06, 0.12), (0.02, 0.035)),
    LandCover("pine", "forest", "Pinus", 0, 1, 0.28, 0.55, 0.32, 0.75, 0.80, 110, 300, (0.06, 0.11), (0.02, 0.03)),
    LandCover("beech", "forest", "Fagus", 0, 1, 0.44, 0.50, 0.40, 0.30, 0.95, 115, 295, (0.05, 0.13), (0.012, 0.04)),
    LandCover("oak", "forest", "Quercus", 0, 1, 0.36, 0.60, 0.55, 0.35, 0.90, 142, 300, (0.05, 0.12), (0.012, 0.036)),
    LandCover("birch", "forest", "Betula", 0, 1, 0.40, 0.80, 0.50, 0.25, 0.85, 105, 270, (0.05, 0.10), (0.012, 0.03)),
    LandCover("larch", "forest", "Larix", 0, 1, 0.32, 0.78, 0.36, 0.15, 0.85, 118, 280, (0.05, 0.11), (0.012, 0.032)),
    LandCover(
        "clearing", "forest", "Cleared", 0, 1, 0.30, 1.00, 0.70, 0.30, 0.60, 100, 260, (0.04, 0.07), (0.008, 0.018)
    ),
    LandCover("fir", "forest", "Abies", 0, 1, 0.30, 0.28, 0.18, 0.90, 0.93, 105, 305, (0.07, 0.13), (0.022, 0.038)),
    LandCover(
        "douglas fir",
        "forest",
        "Pseudotsuga",
        0,
        1,
        0.42,
        0.58,
        0.30,
        0.55,
        0.92,
        125,
        290,
        (0.065, 0.10),
        (0.018, 0.028),
    ),
    LandCover("maple", "forest", "Acer", 0, 1, 0.54, 0.48, 0.34, 0.25, 0.95, 108, 275, (0.045, 0.12), (0.010, 0.038)),
    LandCover("alder", "forest", "Alnus", 0, 1, 0.42, 0.95, 0.46, 0.35, 0.88, 95, 310, (0.055, 0.09), (0.014, 0.026)),
    LandCover("ash", "forest", "Fraxinus", 0, 1, 0.34, 0.55, 0.55, 0.20, 0.88, 150, 270, (0.05, 0.14), (0.012, 0.042)),
    LandCover(
        "poplar", "forest", "Populus", 0, 1, 0.52, 0.90, 0.60, 0.15, 0.92, 100, 260, (0.04, 0.13), (0.008, 0.044)
    ),
    LandCover("cherry", "forest", "Prunus", 0, 1, 0.30, 0.85, 0.42, 0.30, 0.78, 88, 275, (0.045, 0.09), (0.010, 0.024)),
    LandCover("lime", "forest", "Tilia", 0, 1, 0.47, 0.82, 0.28, 0.30, 0.93, 138, 312, (0.05, 0.115), (0.012, 0.034)),
    # Agricultural area: PASTIS crop classes and non-agricultural background.
    LandCover("background", "crop", None, 0, 2, 0.25, 1.20, 0.80, 0.20, 0.35, 100, 280, (0.08, 0.10), (0.010, 0.015)),
    LandCover("meadow", "crop", None, 1, 3, 0.38, 0.90, 0.55, 0.55, 0.85, 90, 300, (0.03, 0.06), (0.006, 0.015)),
    LandCover("winter wheat", "crop", None, 2, 3, 0.46, 0.80, 0.50, 0.25, 0.95, 70, 190, (0.03, 0.07), (0.004, 0.015)),
    LandCover("corn", "crop", None, 3, 3, 0.50, 0.70, 0.45, 0.02, 0.95, 160, 265, (0.03, 0.10), (0.004, 0.025)),
    LandCover("rapeseed", "crop", None, 5, 1, 0.42, 1.10, 0.55, 0.35, 0.95, 60, 170, (0.04, 0.09), (0.006, 0.022)),
    LandCover("sunflower", "crop", None, 7, 1, 0.48, 0.90, 0.50, 0.02, 0.85, 150, 240, (0.03, 0.08), (0.004, 0.02)),
    LandCover("beet", "crop", None, 9, 1, 0.52, 0.75, 0.40, 0.02, 0.95, 140, 280, (0.03, 0.09), (0.004, 0.024)),
)

TREESATAI_GENERA = GENERA  # the world's forest classes are TreeSatAI's genera

PASTIS_CLASSES = CLASS_NAMES

# TreeSatAI file names start with the species of the stand; one species per genus in the world.
SPECIES_OF_GENUS = {"Abies": "Abies_alba", "Acer": "Acer_pseudoplatanus", "Alnus": "Alnus_spec.",
                    "Betula": "Betula_spec.", "Cleared": "Cleared", "Fagus": "Fagus_sylvatica",
                    "Fraxinus": "Fraxinus_excelsior", "Larix": "Larix_decidua", "Picea": "Picea_abies",
                    "Pinus": "Pinus_sylvestris", "Populus": "Populus_spec.", "Prunus": "Prunus_spec.",
                    "Pseudotsuga": "Pseudotsuga_menziesii", "Quercus": "Quercus_robur", "Tilia": "Tilia_spec."}


def class_indices(region: str) -> np.ndarray:
    return np.array([i for i, c in enumerate(LEGEND) if c.region == region])


def spectra_at(doy: float) -> np.ndarray:
    """(n_classes, n_bands) reflectance of each class on day-of-year `doy`."""
    rows = []
    for c in LEGEND:
        cov = c.cover(doy)
        rows.append((1.0 - cov) * SOIL + cov * c.canopy)
    return np.stack(rows)


def backscatter_at(doy: float) -> np.ndarray:
    """(n_classes, 2) linear gamma0 (VV, VH) of each class on day-of-year `doy`."""
    rows = []
    for c in LEGEND:
        cov = c.cover(doy)
        rows.append([(1 - cov) * c.vv[0] + cov * c.vv[1], (1 - cov) * c.vh[0] + cov * c.vh[1]])
    return np.array(rows)


def vegetation_cover_at(doy: float) -> np.ndarray:
    return np.array([c.cover(doy) for c in LEGEND])
