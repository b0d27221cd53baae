"""What a synthetic world holds: one frozen dataclass, with named sizes."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

FIELD_CRS = "EPSG:32632"  # the analytic field is defined in UTM 32N metres
AERIAL_CRS = "EPSG:25832"  # TreeSatAI aerial tiles (ETRS89 / UTM 32N)
SPOT_CRS = "EPSG:2154"  # PASTIS-HD SPOT images and PASTIS footprints (Lambert-93)


@dataclass(frozen=True)
class MgrsTile:
    """A Sentinel-2 tile: name and the UTM origin of its 109.8 km square (multiples of 60 m)."""

    name: str  # e.g. "32ULU"
    left: float
    top: float
    orbits: tuple[int, ...]  # relative orbits that image it


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    # Area of interest in FIELD_CRS; left/top/size on multiples of 60 m like Sentinel-2 tile origins.
    aoi_left: float = 400020.0
    aoi_top: float = 5383800.0
    aoi_size: float = 3840.0
    forest_width: float = 1280.0  # western strip of forest stands (TreeSatAI); crops east of it (PASTIS)
    # Time: calendar years simulated for TreeSatAI-like tiles, plus the PASTIS span when patches exist.
    aerial_years: tuple[int, ...] = (2019, 2022)
    pastis_span: tuple[str, str] = ("2018-09-01", "2019-11-30")
    # Sentinel-2
    s2_tiles: tuple[MgrsTile, ...] = (
        MgrsTile("32ULU", 300000.0, 5400000.0, (8, 108)),
        MgrsTile("32UMU", 399960.0, 5400000.0, (108,)),
    )
    s2_revisit_days: int = 20  # per relative orbit (5 in reality; sparser for speed)
    s2_margin: float = 120.0  # scene extent = AOI + margin ("reduced extent for speed")
    s2_swath_edge: float = 0.15  # relative orbit 8 images only east of this fraction of the AOI (at its top)
    snow_months: tuple[int, ...] = (1, 2, 12)
    # Sentinel-1: (relative orbit, direction, UTC time of day)
    s1_orbits: tuple[tuple[int, str, str], ...] = ((117, "ascending", "17:08:41"), (66, "descending", "05:41:12"))
    s1_revisit_days: int = 12
    s1_duplicate_every: int = 5  # every n-th descending pass is delivered as two overlapping slices
    s1_margin: float = 60.0
    # Aerial (TreeSatAI-like): square sheets of 0.2 m CIR imagery in the forest strip
    # 384 tiles: enough for every one of the 15 genera to appear in the test split many times.
    aerial_sheets: int = 6
    aerial_sheet_size: float = 576.0
    tiles_per_sheet: int = 64
    # PASTIS-like patches of 1280 m: rows x cols in the crop area; SPOT-like 1 m imagery over them
    pastis_patches: tuple[int, int] = (2, 2)
    # Geolocation errors (metres) injected into a fraction of scenes, recorded in truth.json
    shifted_fraction: float = 0.25
    max_shift: float = 8.0

    def years(self) -> list[int]:
        """Calendar years with Sentinel acquisitions: the TreeSatAI-TS rule (aerial year, or 2017 if earlier)."""
        return sorted({max(y, 2017) for y in self.aerial_years})

    def periods(self) -> list[tuple[dt.date, dt.date]]:
        spans = [(dt.date(y, 1, 1), dt.date(y, 12, 31)) for y in self.years()]
        if self.pastis_patches[0] * self.pastis_patches[1] > 0:
            spans.append((dt.date.fromisoformat(self.pastis_span[0]), dt.date.fromisoformat(self.pastis_span[1])))
        spans.sort()
        merged: list[tuple[dt.date, dt.date]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1] + dt.timedelta(days=1):
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def validate(self) -> None:
        for name in ("aoi_left", "aoi_top", "aoi_size", "s2_margin"):
            if getattr(self, name) % 60:
                raise ValueError(f"world config: {name}={getattr(self, name)} must be a multiple of 60 m")
        rows, cols = self.pastis_patches
        if self.forest_width + cols * 1280 > self.aoi_size or rows * 1280 > self.aoi_size:
            raise ValueError("world config: pastis_patches do not fit east of the forest strip inside the AOI")
        per_side = int(self.aerial_sheet_size // 72)
        if self.tiles_per_sheet > per_side * per_side:
            raise ValueError(
                f"world config: tiles_per_sheet={self.tiles_per_sheet} exceeds {per_side**2} for this sheet size"
            )
        if self.aerial_sheets * (self.aerial_sheet_size + 40) > self.aoi_size:
            raise ValueError("world config: aerial_sheets do not fit in the forest strip")


PRESETS: dict[str, WorldConfig] = {
    # What a new user sees first: generates in well under a minute on 2 cores.
    "demo": WorldConfig(),
    # The tests' world: one year, sparse dates, small sheets.
    "tiny": WorldConfig(
        aoi_size=3000.0,
        forest_width=600.0,
        aerial_years=(2022,),
        pastis_span=("2018-09-01", "2019-03-31"),
        s2_revisit_days=30,
        s1_revisit_days=36,
        s1_duplicate_every=3,
        aerial_sheets=2,
        aerial_sheet_size=150.0,
        tiles_per_sheet=4,
        pastis_patches=(1, 1),
    ),
}
# The tiny world moved onto the east edge of MGRS tile 32ULU, with a 32UMU granule overlapping it by only
# 20 m and orbit 8's swath edge across the first sheet: tiles whose Sentinel-2 frames only a mosaic of
# granules completes, and frames no granule completes.
PRESETS["edges"] = replace(
    PRESETS["tiny"],
    aoi_left=409620.0,
    s2_tiles=(MgrsTile("32ULU", 300000.0, 5400000.0, (8, 108)), MgrsTile("32UMU", 409780.0, 5400000.0, (108,))),
    s2_swath_edge=0.02,
    pastis_span=WorldConfig.pastis_span,
    pastis_patches=(0, 0),
)


def load_world_config(preset: str = "demo", toml_file: Path | None = None, **overrides) -> WorldConfig:
    """A preset, then values from a TOML file's [world] table, then explicit overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown world preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    values: dict = {}
    if toml_file is not None:
        with open(toml_file, "rb") as f:
            values.update(tomllib.load(f).get("world", {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(WorldConfig)}
    for key in values:
        if key not in known:
            raise ValueError(f"world config: unknown field {key!r}")
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k != "s2_tiles"}
    cfg = replace(cfg, **tuples)
    cfg.validate()
    return cfg
