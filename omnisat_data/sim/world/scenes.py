"""The acquisitions of a synthetic world: what each scene is, where its grid lies, when it was taken.

Planning is pure and deterministic (a function of the WorldConfig); rendering (render.py) and
writing (make.py) follow from these values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from omnisat_data.geo.grid import Grid

from .config import AERIAL_CRS, FIELD_CRS, SPOT_CRS, WorldConfig
from .field import Weather

S2_TILE_SIZE = 109800.0
S2_TIME_OF_DAY = {8: "103021", 108: "104031", 65: "102421"}


@dataclass(frozen=True)
class S2Scene:
    item_id: str  # Planetary Computer style
    product: str  # ESA product name (what TreeSatAI-TS stores)
    platform: str
    mgrs: str
    orbit: int
    datetime: dt.datetime
    baseline: str
    grid: Grid  # the 10 m grid; 20 m and 60 m grids share its origin
    shift: tuple[float, float]  # geolocation error (dx, dy) in metres: content drawn from (x - dx, y - dy)
    weather: Weather
    swath_edge: float | None  # data only east of x = swath_edge - 0.25 (y - aoi_top); None = full

    @property
    def offset_applied(self) -> bool:
        """Processing baseline >= 04.00 adds 1000 DN to every valid pixel."""
        return float(self.baseline) >= 4.0

    def band_grid(self, res: int) -> Grid:
        left, _, right, top = self.grid.bounds
        bottom = self.grid.bounds[1]
        return Grid.from_origin(self.grid.crs, left, top, float(res),
                                (round((top - bottom) / res), round((right - left) / res)))


@dataclass(frozen=True)
class S1Scene:
    item_id: str  # ESA product name
    platform: str
    orbit: int
    direction: str  # "ascending" / "descending"
    start: dt.datetime
    stop: dt.datetime
    absolute_orbit: int
    grid: Grid  # its own 10 m grid, not aligned with Sentinel-2's
    shift: tuple[float, float]
    slice_number: int  # 1 for a single product; 1, 2 for two slices of one pass


@dataclass(frozen=True)
class AerialScene:
    item_id: str
    datetime: dt.datetime
    grid: Grid  # 0.2 m in EPSG:25832
    shift: tuple[float, float]


@dataclass(frozen=True)
class SpotScene:
    item_id: str
    datetime: dt.datetime
    grid: Grid  # 1 m in EPSG:2154
    shift: tuple[float, float]


@dataclass(frozen=True)
class TreeSatTile:
    name: str  # <FILE> stem without .tif
    sheet: str  # aerial item id it was cut from
    year: int  # aerial flight year
    grid: Grid  # 304 x 304 at 0.2 m in EPSG:25832


@dataclass(frozen=True)
class PastisPatch:
    patch_id: int
    fold: int
    tile: str  # "t32ulu"
    grid: Grid  # 128 x 128 at 10 m in EPSG:32632


def _baseline(day: dt.date) -> str:
    if day < dt.date(2019, 12, 1):
        return "02.13"
    if day < dt.date(2022, 1, 25):
        return "02.14"
    return "04.00"


def _shift(rng: np.random.Generator, cfg: WorldConfig) -> tuple[float, float]:
    """Either no geolocation error or a clearly visible one (>= 0.55 px at 10 m), never in between."""
    if rng.uniform() >= cfg.shifted_fraction:
        return (0.0, 0.0)
    magnitude = rng.uniform(5.5, cfg.max_shift)
    angle = rng.uniform(0, 2 * np.pi)
    return (round(float(magnitude * np.cos(angle)), 3), round(float(magnitude * np.sin(angle)), 3))


def _days(cfg: WorldConfig, phase: int, step: int) -> list[dt.date]:
    """Dates every `step` days from a fixed epoch (so periods agree), inside the configured periods."""
    epoch = dt.date(2015, 7, 1)
    out = []
    for start, end in cfg.periods():
        first = (start - epoch).days
        first += (phase - first) % step
        d = first
        while epoch + dt.timedelta(days=d) <= end:
            out.append(epoch + dt.timedelta(days=d))
            d += step
    return out


def plan_s2(cfg: WorldConfig) -> list[S2Scene]:
    scenes = []
    aoi = (cfg.aoi_left - cfg.s2_margin, cfg.aoi_top - cfg.aoi_size - cfg.s2_margin,
           cfg.aoi_left + cfg.aoi_size + cfg.s2_margin, cfg.aoi_top + cfg.s2_margin)
    for tile in cfg.s2_tiles:
        left = max(aoi[0], tile.left)
        top = min(aoi[3], tile.top)
        right = min(aoi[2], tile.left + S2_TILE_SIZE)
        bottom = max(aoi[1], tile.top - S2_TILE_SIZE)
        if right <= left or top <= bottom:
            continue
        grid = Grid.from_bounds(FIELD_CRS, (left, bottom, right, top), 10.0)
        for orbit in tile.orbits:
            for day in _days(cfg, phase=orbit % cfg.s2_revisit_days, step=cfg.s2_revisit_days):
                rng = np.random.default_rng([cfg.seed, 2, orbit, day.toordinal(), int(tile.name[:2])])
                platform = "S2A" if (day.toordinal() // cfg.s2_revisit_days) % 2 == 0 else "S2B"
                when = dt.datetime.combine(day, dt.time.fromisoformat(S2_TIME_OF_DAY.get(orbit, "103021")))
                stamp = when.strftime("%Y%m%dT%H%M%S")
                processed = (when + dt.timedelta(hours=3, minutes=17)).strftime("%Y%m%dT%H%M%S")
                baseline = _baseline(day)
                product = (
                    f"{platform}_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R{orbit:03d}_T{tile.name}_{processed}"
                )
                item_id = f"{platform}_MSIL2A_{stamp}_R{orbit:03d}_T{tile.name}_{processed}"
                edge = cfg.aoi_left + cfg.s2_swath_edge * cfg.aoi_size if orbit == 8 else None
                scenes.append(S2Scene(item_id, product, platform.replace("S2", "Sentinel-2"), tile.name, orbit, when,
                                      baseline, grid, _shift(rng, cfg), Weather.random(rng, day.month, cfg.snow_months),
                                      edge))
    scenes.sort(key=lambda s: (s.datetime, s.mgrs))
    return scenes


def plan_s1(cfg: WorldConfig) -> list[S1Scene]:
    scenes = []
    for orbit, direction, time_of_day in cfg.s1_orbits:
        for n, day in enumerate(_days(cfg, phase=(orbit * 7) % cfg.s1_revisit_days, step=cfg.s1_revisit_days)):
            rng = np.random.default_rng([cfg.seed, 1, orbit, day.toordinal()])
            start = dt.datetime.combine(day, dt.time.fromisoformat(time_of_day))
            # Each product is orthorectified onto its own 10 m grid: a fractional offset from the 10 m lattice.
            ox, oy = rng.uniform(0.5, 9.5, 2).round(3)
            left = cfg.aoi_left - cfg.s1_margin - 10 + ox
            top = cfg.aoi_top + cfg.s1_margin + oy
            size = int((cfg.aoi_size + 2 * cfg.s1_margin) // 10) + 1
            slices = [(1, top, size)]
            if direction == "descending" and cfg.s1_duplicate_every and n % cfg.s1_duplicate_every == 0:
                # Two consecutive slices of one pass overlapping in the middle of the area.
                north = int(size * 0.6)
                slices = [(1, top, north), (2, top - (size - north) * 10.0, north)]
            days_since = (day - dt.date(2014, 4, 3)).days
            absolute = 73 + (orbit - 1) + 175 * round(days_since * 175 / 12 / 175)
            for slice_no, slice_top, rows in slices:
                t0 = start + dt.timedelta(seconds=25 * (slice_no - 1))
                t1 = t0 + dt.timedelta(seconds=25)
                datatake = (absolute * 37 + orbit) % 0xFFFFFF
                uid = int(rng.integers(0, 0xFFFF)) ^ slice_no
                item_id = (f"S1A_IW_GRDH_1SDV_{t0:%Y%m%dT%H%M%S}_{t1:%Y%m%dT%H%M%S}_{absolute:06d}_"
                           f"{datatake:06X}_{uid:04X}")
                grid = Grid.from_origin(FIELD_CRS, left, slice_top, 10.0, (rows, size))
                scenes.append(S1Scene(item_id, "SENTINEL-1A", orbit, direction, t0, t1, absolute, grid,
                                      _shift(rng, cfg), slice_no))
    scenes.sort(key=lambda s: s.start)
    return scenes


def sheet_origin(cfg: WorldConfig, k: int) -> tuple[float, float]:
    """Top-left of aerial sheet k: on the 0.2 m lattice, deliberately off the 10 m lattice."""
    return cfg.aoi_left + 67.4, cfg.aoi_top - 63.6 - k * (cfg.aerial_sheet_size + 40.0)


def plan_aerial(cfg: WorldConfig) -> tuple[list[AerialScene], list[TreeSatTile]]:
    sheets, tiles = [], []
    rng = np.random.default_rng([cfg.seed, 3])
    to_25832 = Transformer.from_crs(FIELD_CRS, AERIAL_CRS, always_xy=True)
    per_side = int(cfg.aerial_sheet_size // 72)
    px = round(cfg.aerial_sheet_size / 0.2)
    for k in range(cfg.aerial_sheets):
        year = cfg.aerial_years[k % len(cfg.aerial_years)]
        left, top = sheet_origin(cfg, k)
        left, top = to_25832.transform(left, top)
        left, top = round(left / 0.2) * 0.2, round(top / 0.2) * 0.2
        grid = Grid.from_origin(AERIAL_CRS, round(left, 1), round(top, 1), 0.2, (px, px))
        when = dt.datetime(year, 6, 1, 10, 30) + dt.timedelta(days=int(rng.integers(0, 50)))
        sheet = AerialScene(f"DOP20_CIR_{year}_{k:03d}", when, grid, (0.0, 0.0))
        sheets.append(sheet)
        cells = rng.permutation(per_side * per_side)[: cfg.tiles_per_sheet]
        for cell in sorted(cells):
            r, c = divmod(int(cell), per_side)
            dr, dc = rng.integers(0, 360 - 304, 2)
            tile_grid = grid.window(int(r * 360 + dr), int(c * 360 + dc), 304, 304)
            tiles.append(TreeSatTile(name="", sheet=sheet.item_id, year=year, grid=tile_grid))
    return sheets, tiles


def plan_naip(cfg: WorldConfig) -> list[AerialScene]:
    """One NAIP-like sheet (0.6 m R, G, B, NIR in UTM, as Planetary Computer's naip serves them) over the
    first aerial sheet: the own-area builds' test of a VHR source coarser than the 0.2 m tile grid."""
    if cfg.aerial_sheets == 0:
        return []
    left, top = sheet_origin(cfg, 0)
    left, top = round(left / 0.6) * 0.6, round(top / 0.6) * 0.6
    px = round(cfg.aerial_sheet_size / 0.6)
    year = cfg.aerial_years[0]
    return [AerialScene(f"m_0000000_nw_32_060_{year}0701", dt.datetime(year, 7, 1, 16, 0),
                        Grid.from_origin(FIELD_CRS, round(left, 1), round(top, 1), 0.6, (px, px)), (0.0, 0.0))]


def plan_pastis(cfg: WorldConfig) -> tuple[list[PastisPatch], SpotScene | None]:
    rows, cols = cfg.pastis_patches
    if rows * cols == 0:
        return [], None
    patches = []
    left0 = cfg.aoi_left + cfg.forest_width
    top0 = cfg.aoi_top - 60.0
    n = 0
    for r in range(rows):
        for c in range(cols):
            grid = Grid.from_origin(FIELD_CRS, left0 + c * 1280.0, top0 - r * 1280.0, 10.0, (128, 128))
            patches.append(PastisPatch(patch_id=10000 + n, fold=n % 5 + 1, tile="t32ulu", grid=grid))
            n += 1
    # SPOT-like 1 m scene in Lambert-93 covering every patch with a margin.
    to_2154 = Transformer.from_crs(FIELD_CRS, SPOT_CRS, always_xy=True)
    bounds = (left0, top0 - rows * 1280.0, left0 + cols * 1280.0, top0)
    xs = np.array([bounds[0], bounds[2], bounds[0], bounds[2]])
    ys = np.array([bounds[1], bounds[1], bounds[3], bounds[3]])
    lx, ly = to_2154.transform(xs, ys)
    margin = 40.0
    left, right = np.floor(lx.min() - margin), np.ceil(lx.max() + margin)
    bottom, top = np.floor(ly.min() - margin), np.ceil(ly.max() + margin)
    grid = Grid.from_bounds(SPOT_CRS, (float(left), float(bottom), float(right), float(top)), 1.0)
    spot = SpotScene("SPOT6_RVB_1M00_2019_T32ULU", dt.datetime(2019, 7, 1, 10, 45), grid, (0.0, 0.0))
    return patches, spot
