"""`omnisat-data verify-alignment` for TreeSatAI-TS: format checks and image-based shifts, per tile.

`check_tile` reads one tile's files (aerial tif, h5, pth, manifest item when present) and returns
a `TileCheck`: every format problem as one line naming the tile, file and field, the nodata
fraction per series, and one shift estimate per Sentinel-2 date (aerial NIR box-averaged onto the
tile's Sentinel grid against B08, cloud/snow/nodata pixels masked: verify/shift.py). `summarise` pools
the estimates per source scene (median over its tiles: Sentinel-2 misregistration is a per-scene,
near-constant shift) and per tile, and flags what exceeds the thresholds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
import rasterio

from omnisat_data.formats.treesatai_ts import DATE_TOKEN, H5_NAMES, S2_BANDS
from omnisat_data.geo.grid import Grid, crs_string
from omnisat_data.geo.tile import SENTINEL_RES
from omnisat_data.stac.products import token_time

from .shift import estimate_shifts

DATASETS = {"sen-2-data": 4, "sen-2-masks": 4, "sen-2-products": 1, "sen-1-asc-data": 4, "sen-1-asc-products": 1,
            "sen-1-des-data": 4, "sen-1-des-products": 1}
TOKEN_OF = {H5_NAMES[s]: DATE_TOKEN[s] for s in H5_NAMES}  # keyed by h5 name
S2_PAIR = {"nir": S2_BANDS.index("B08"), "red": S2_BANDS.index("B04")}


@dataclass(frozen=True)
class Layout:
    """Where a TreeSatAI-TS tree keeps each file kind: the loader layout (aerial/, sentinel/, s1-asc/,
    s1-des/) or a flat folder such as the released sample (<stem>.tif, <stem>.h5, <stem>.pth = s1-asc)."""

    root: Path
    aerial: Path
    sentinel: Path
    pth: dict  # series -> folder

    @classmethod
    def of(cls, root: Path) -> Layout:
        root = Path(root)
        if (root / "sentinel").is_dir():
            pth = {s: root / s for s in ("s1-asc", "s1-des") if (root / s).is_dir()}
            return cls(root, root / "aerial", root / "sentinel", pth)
        return cls(root, root, root, {"s1-asc": root} if any(root.glob("*.pth")) else {})

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))


@dataclass
class TileCheck:
    name: str
    problems: list[str] = field(default_factory=list)
    nodata: dict[str, float] = field(default_factory=dict)  # series -> fraction of NaN pixels
    shifts: list[dict] = field(default_factory=list)  # one per Sentinel-2 date: product, dx, dy (m), r2, ok


def check_h5(where: str, f: h5py.File, problems: list[str]) -> dict[str, np.ndarray]:
    """Structure, dtypes, shapes, product lists and date order of one h5; returns the arrays read."""
    arrays: dict[str, np.ndarray] = {}
    for key, ndim in DATASETS.items():
        if key not in f:
            problems.append(f"{where}: dataset {key} missing")
            continue
        d = f[key]
        if key.endswith("-products"):
            if h5py.check_string_dtype(d.dtype) is None:
                problems.append(f"{where}: {key} is {d.dtype}, not variable-length strings")
            arrays[key] = np.array([p.decode() if isinstance(p, bytes) else str(p) for p in d[()]], dtype=object)
        else:
            if d.dtype != np.float32:
                problems.append(f"{where}: {key} is {d.dtype}, not float32")
            if d.ndim != ndim or d.shape[-2:] != (6, 6):
                problems.append(f"{where}: {key} has shape {d.shape}, expected (T, C, 6, 6)")
                continue
            arrays[key] = d[()].astype(np.float32)
    bands = {"sen-2-data": (10,), "sen-2-masks": (2, 10), "sen-1-asc-data": (2,), "sen-1-des-data": (2,)}
    for key, allowed in bands.items():
        if key in arrays and arrays[key].shape[1] not in allowed:
            problems.append(
                f"{where}: {key} has {arrays[key].shape[1]} channels, expected {' or '.join(map(str, allowed))}"
            )
    for series in ("sen-2", "sen-1-asc", "sen-1-des"):
        data, products = arrays.get(f"{series}-data"), arrays.get(f"{series}-products")
        if data is None or products is None:
            continue
        if len(products) != len(data):
            problems.append(f"{where}: {series}-products has {len(products)} names for {len(data)} frames")
        dates = [token_time(p, TOKEN_OF[series]) for p in products]
        bad = [p for p, d in zip(products, dates) if d is None]
        if bad:
            problems.append(f"{where}: {series}-products: {bad[0]!r} has no date at token {TOKEN_OF[series]}")
        elif any(b < a for a, b in zip(dates, dates[1:])):
            k = next(i for i, (a, b) in enumerate(zip(dates, dates[1:])) if b < a)
            problems.append(f"{where}: {series}-products: dates out of order at index {k + 1} "
                            f"({products[k]} then {products[k + 1]})")
        if len(set(products)) != len(products):
            problems.append(f"{where}: {series}-products: repeated product names")
        empty = [k for k in range(len(data)) if np.isnan(data[k]).all()]
        if empty:
            problems.append(f"{where}: {series}-data: frame {empty[0]} is all NaN ({len(empty)} such frames)")
        holes = [k for k in range(len(data)) if not np.isfinite(data[k]).all() and k not in empty]
        if holes:
            problems.append(f"{where}: {series}-data: frame {holes[0]} holds NaN or inf ({len(holes)} such frames; "
                            "the released series hold none)")
    if "sen-2-masks" in arrays and "sen-2-data" in arrays and len(arrays["sen-2-masks"]) != len(arrays["sen-2-data"]):
        problems.append(f"{where}: sen-2-masks has {len(arrays['sen-2-masks'])} frames for "
                        f"{len(arrays['sen-2-data'])} data frames")
    return arrays


def check_values(where: str, arrays: dict[str, np.ndarray], problems: list[str]) -> None:
    """Physical plausibility that catches swapped channels: forests are brighter in NIR than in red,
    and VV backscatter exceeds VH."""
    s2 = arrays.get("sen-2-data")
    masks = arrays.get("sen-2-masks")
    if s2 is not None and len(s2) and s2.shape[1] == 10:
        clear = np.ones(len(s2), bool)
        if masks is not None and len(masks) == len(s2):
            clear = np.nanmax(masks[:, :2].reshape(len(s2), -1), axis=1, initial=0) < 20
        if clear.sum() >= 3:
            red = np.nanmedian(s2[clear, S2_BANDS.index("B04")])
            nir = np.nanmedian(s2[clear, S2_BANDS.index("B08")])
            if not nir > red:
                problems.append(f"{where}: sen-2-data: median B08 ({nir:.0f}) <= B04 ({red:.0f}) on clear dates: "
                                "band order is not B02..B12 (TreeSatAI-TS)")
    for series in ("sen-1-asc", "sen-1-des"):
        s1 = arrays.get(f"{series}-data")
        if s1 is not None and len(s1) >= 3 and s1.shape[1] == 2:
            vv, vh = np.nanmedian(s1[:, 0]), np.nanmedian(s1[:, 1])
            if not vv > vh:
                problems.append(f"{where}: {series}-data: median VV ({vv:.4f}) <= VH ({vh:.4f}): channels swapped?")
            if np.nanmax(s1) > 50 or np.nanmin(s1) < 0:
                problems.append(f"{where}: {series}-data: values outside linear backscatter range (dB stored?)")


def check_pth(layout: Layout, name: str, arrays: dict[str, np.ndarray], problems: list[str]) -> None:
    import torch

    for series, folder in layout.pth.items():
        path = folder / f"{name}.pth"
        where = f"{name}: {layout.rel(path)}"
        if not path.is_file():
            problems.append(f"{where}: missing")
            continue
        try:
            t = torch.load(path, weights_only=True, map_location="cpu").numpy()
        except Exception as error:  # a corrupt file is a finding, whatever torch raises
            problems.append(f"{where}: cannot be read ({error.__class__.__name__})")
            continue
        data = arrays.get(f"sen-1-{series[3:]}-data")
        products = arrays.get(f"sen-1-{series[3:]}-products")
        if t.ndim != 4 or t.shape[1:] != (3, 6, 6) or t.dtype != np.float32:
            problems.append(f"{where}: tensor {t.dtype} {t.shape}, expected float32 (T, 3, 6, 6)")
            continue
        if products is not None and len(t) != len(products):
            problems.append(f"{where}: {len(t)} frames for {len(products)} products: dates would fall out of step")
            continue
        if data is not None and len(data) == len(t):
            filled = np.where(np.isnan(data), t[:, :2], data)
            if not np.allclose(t[:, :2], filled, rtol=1e-6, equal_nan=True):
                problems.append(f"{where}: channels VV, VH differ from sen-1-{series[3:]}-data")
            ratio = t[:, 0] / (t[:, 1] + np.float32(1e-8))
            if not np.allclose(t[:, 2], ratio, rtol=1e-5, equal_nan=True):
                problems.append(f"{where}: channel 2 is not VV/(VH+1e-8)")


def check_aerial(layout: Layout, name: str, problems: list[str]) -> tuple[np.ndarray | None, Grid | None]:
    path = layout.aerial / f"{name}.tif"
    where = f"{name}: {layout.rel(path)}"
    if not path.is_file():
        problems.append(f"{where}: missing")
        return None, None
    try:
        with rasterio.open(path) as src:
            data = src.read()
            grid = Grid(crs_string(src.crs), src.transform, (src.height, src.width))
    except rasterio.errors.RasterioError as error:
        problems.append(f"{where}: cannot be read ({' '.join(str(error).split())})")
        return None, None
    t = grid.transform
    if data.shape[0] != 4 or data.dtype != np.uint8:
        problems.append(f"{where}: {data.shape[0]} bands of {data.dtype}, expected 4 x uint8 (NIR, G, B, R)")
    if not grid.crs:
        problems.append(f"{where}: no CRS")
    if t.b != 0 or t.d != 0 or t.e >= 0:
        problems.append(f"{where}: transform {tuple(t)[:6]} is not north-up")
    if min(grid.shape) < 300:
        problems.append(f"{where}: {grid.shape[0]} x {grid.shape[1]} px, OmniSat crops 300 x 300")
    if abs(abs(t.a) * grid.width - 60.8) > 0.5 or abs(abs(t.e) * grid.height - 60.8) > 0.5:
        problems.append(f"{where}: covers {abs(t.a) * grid.width:.2f} x {abs(t.e) * grid.height:.2f} m, "
                        "expected a 60.8 m tile (304 px at 0.2 m)")
    return data, grid


def check_manifest(layout: Layout, name: str, grid: Grid, problems: list[str]) -> None:
    path = layout.root / "stac" / "items" / f"{name}.json"
    if not path.is_file() or grid is None:
        return
    try:
        item = json.loads(path.read_text())
        props = item.get("properties", {}) if isinstance(item, dict) else None
        if not isinstance(props, dict):
            raise ValueError("not a STAC item (no properties object)")
    except (ValueError, UnicodeDecodeError) as error:  # one bad manifest item is this tile's problem, not verify's
        problems.append(f"{name}: stac/items/{name}.json: unreadable ({' '.join(str(error).split())[:120]})")
        return
    expected = grid.centred((6, 6), SENTINEL_RES)
    written = props.get("proj:transform")
    if written is None or not np.allclose(written[:6], list(expected.transform)[:6], atol=1e-3):
        problems.append(f"{name}: stac/items/{name}.json: proj:transform {written} is not the 6 x 6 10 m grid "
                        f"centred on the aerial tile {list(expected.transform)[:6]}")
    if props.get("proj:code") not in (None, grid.crs):
        problems.append(f"{name}: stac/items/{name}.json: proj:code {props.get('proj:code')} != aerial CRS {grid.crs}")


def estimate_tile_shifts(
    aerial: np.ndarray,
    grid: Grid,
    s2: np.ndarray,
    masks: np.ndarray | None,
    products,
    pair: str = "both",
    max_mask: float = 10.0,
    lattice_m: float | None = 10.0,
) -> list[dict]:
    """One shift estimate per Sentinel-2 date: the four aerial bands box-averaged onto the centred 6 x 6
    grid and mapped linearly onto the paired S2 band (B08 for nir, B04 for red, both: one estimate each),
    pixels with snow or
    cloud probability above `max_mask` masked. `lattice_m`: the Sentinel pixel lattice in the tile's
    CRS (10 m: multiples of 10 m, as UTM Sentinel-2 tiles), from which a build resamples bilinearly
    onto the tile grid; None compares with box averages on the tile grid itself."""
    res = abs(grid.transform.a)
    block = SENTINEL_RES / res
    origin = ((grid.height - 6 * block) / 2, (grid.width - 6 * block) / 2)
    lattice = None
    if lattice_m:
        tile = grid.centred((6, 6), SENTINEL_RES)
        lattice = ((-tile.transform.f / lattice_m) % 1.0, (tile.transform.c / lattice_m) % 1.0)
    bands = ("nir", "red") if pair == "both" else (pair,)
    targets = np.concatenate([s2[:, S2_PAIR[b]] for b in bands]).astype(np.float64)  # every band in one call
    if masks is not None and len(masks) == len(s2):
        cloudy = (masks[:, :2] > max_mask).any(axis=1)
        targets = np.where(np.concatenate([cloudy] * len(bands)), np.nan, targets)
    estimates = estimate_shifts(aerial.astype(np.float64), targets, res, origin, block, lattice=lattice)
    labels = [(str(p), S2_BANDS[S2_PAIR[b]]) for b in bands for p in products]
    return [{"product": p, "band": band, "dx": round(e.dx, 4), "dy": round(e.dy, 4),
             "r2": round(e.r2, 4) if np.isfinite(e.r2) else None,
             "condition": round(e.condition, 2) if np.isfinite(e.condition) else None, "pixels": e.pixels,
             "ok": e.ok, "reason": e.reason} for (p, band), e in zip(labels, estimates)]


def check_tile(layout: Layout, name: str, pair: str = "both", lattice_m: float | None = 10.0) -> TileCheck:
    check = TileCheck(name)
    aerial, grid = check_aerial(layout, name, check.problems)
    h5_path = layout.sentinel / f"{name}.h5"
    where = f"{name}: {layout.rel(h5_path)}"
    if not h5_path.is_file():
        check.problems.append(f"{where}: missing")
        return check
    try:
        with h5py.File(h5_path, "r") as f:
            arrays = check_h5(where, f, check.problems)
    except OSError as error:
        check.problems.append(f"{where}: cannot be read ({error})")
        return check
    check_values(where, arrays, check.problems)
    check_pth(layout, name, arrays, check.problems)
    check_manifest(layout, name, grid, check.problems)
    for series in ("sen-2", "sen-1-asc", "sen-1-des"):
        data = arrays.get(f"{series}-data")
        if data is not None and data.size:
            check.nodata[series] = round(float(np.isnan(data).mean()), 4)
    s2, products = arrays.get("sen-2-data"), arrays.get("sen-2-products")
    if aerial is not None and s2 is not None and products is not None and len(s2) == len(products) and len(s2):
        check.shifts = estimate_tile_shifts(aerial, grid, s2, arrays.get("sen-2-masks"), products, pair,
                                            lattice_m=lattice_m)
    return check


# -- pooling ------------------------------------------------------------------------------------------

def _stats(values: np.ndarray) -> dict:
    if not len(values):
        return {"median_m": None, "p95_m": None, "median_px": None, "p95_px": None}
    med, p95 = float(np.median(values)), float(np.percentile(values, 95))
    return {"median_m": round(med, 3), "p95_m": round(p95, 3), "median_px": round(med / SENTINEL_RES, 4),
            "p95_px": round(p95 / SENTINEL_RES, 4)}


def summarise(checks: list[TileCheck], max_shift_px: float = 0.5, good_px: float = 0.2,
              min_estimates: int = 3) -> dict:
    """Pool the accepted estimates: per scene, the median over its tiles (its geolocation error); per
    tile, what stays once every scene's own error is taken out (`tile_shift`: a misplaced VHR tile, a
    wrong grid). Flags over `max_shift_px`."""
    scenes: dict[str, list[tuple[float, float]]] = {}
    for c in checks:
        for s in c.shifts:
            if s["ok"]:
                scenes.setdefault(s["product"], []).append((s["dx"], s["dy"]))
    scene_out = {}
    for product, values in sorted(scenes.items()):
        if len(values) < min_estimates:
            continue
        dx, dy = np.median(np.array(values), axis=0)
        shift = float(np.hypot(dx, dy))
        scene_out[product] = {"estimates": len(values), "dx": round(float(dx), 3), "dy": round(float(dy), 3),
                              "shift_m": round(shift, 3), "shift_px": round(shift / SENTINEL_RES, 4),
                              "flagged": shift > max_shift_px * SENTINEL_RES}
    tiles = {}
    for c in checks:
        accepted = [s for s in c.shifts if s["ok"]]
        entry = {"estimates": len(c.shifts), "accepted": len(accepted), "nodata": c.nodata, "problems": c.problems,
                 "flagged": False}
        shift = tile_shift(accepted, scene_out, min_estimates)
        if shift is not None:
            entry.update(dx=round(shift[0], 3), dy=round(shift[1], 3), shift_m=round(float(np.hypot(*shift)), 3))
            entry["flagged"] = entry["shift_m"] > max_shift_px * SENTINEL_RES
        tiles[c.name] = entry
    tile_shifts = np.array([t["shift_m"] for t in tiles.values() if "shift_m" in t])
    scene_shifts = np.array([s["shift_m"] for s in scene_out.values()])
    problems = [p for c in checks for p in c.problems]
    summary = {
        "tiles": len(checks),
        "tiles_with_problems": sum(1 for c in checks if c.problems),
        "problems": len(problems),
        "tile_shift": _stats(tile_shifts),
        "scene_shift": _stats(scene_shifts),
        "tiles_flagged": sum(1 for t in tiles.values() if t["flagged"]),
        "scenes_flagged": sum(1 for s in scene_out.values() if s["flagged"]),
        "tiles_good": int((tile_shifts <= good_px * SENTINEL_RES).sum()),
        "scenes_good": int((scene_shifts <= good_px * SENTINEL_RES).sum()),
        "thresholds_px": {"good": good_px, "suspect": max_shift_px},
        "estimates": sum(len(c.shifts) for c in checks),
        "estimates_accepted": sum(t["accepted"] for t in tiles.values()),
    }
    # nothing measured is no evidence of alignment: a check without one accepted estimate does not pass
    summary["passed"] = (summary["problems"] == 0 and summary["tiles_flagged"] == 0 and summary["scenes_flagged"] == 0
                         and summary["estimates_accepted"] > 0)
    if summary["estimates_accepted"] == 0:
        summary["not_measured"] = ("no shift estimate was accepted (no Sentinel-2 date, or none with texture, clear "
                                   "sky and enough pixels): alignment is unknown")
    return {"summary": summary, "scenes": scene_out, "tiles": tiles}


def tile_shift(accepted: list[dict], scenes: dict, min_estimates: int = 3) -> tuple[float, float] | None:
    """What stays of a tile's estimates once each scene's own shift is taken out: per band, the median
    residual over dates; of the bands with `min_estimates`, the smallest (None when no band has enough).

    A misplaced VHR tile moves every band alike, whereas a class whose contrast changed since the VHR
    date (deciduous trees in winter red light) biases one band's estimates on that tile by metres:
    the smallest band median keeps the first and ignores the second. A scene seen by too few tiles to
    pool (a small sample, one tile) counts as unshifted."""
    zero = {"dx": 0.0, "dy": 0.0}
    by_band: dict[str, list[tuple[float, float]]] = {}
    for s in accepted:
        scene = scenes.get(s["product"], zero)
        by_band.setdefault(s.get("band", ""), []).append((s["dx"] - scene["dx"], s["dy"] - scene["dy"]))
    medians = [np.median(np.array(r), axis=0) for r in by_band.values() if len(r) >= min_estimates]
    if not medians:
        return None
    dx, dy = min(medians, key=lambda m: float(np.hypot(*m)))
    return float(dx), float(dy)


def tile_names(layout: Layout) -> list[str]:
    return sorted(p.name[: -len(".h5")] for p in layout.sentinel.glob("*.h5"))


def as_dict(check: TileCheck) -> dict:
    return asdict(check)
