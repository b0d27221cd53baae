"""`omnisat-data verify-alignment --format pastis-hd`: format checks and image-based shifts per patch.

Same contract as verify.treesatai_ts.check_tile (a `TileCheck` per patch, pooled by `summarise`): every
format problem names the patch, file and field; one shift estimate per Sentinel-2 date: the SPOT R,
G, B bands box-averaged over each 10 m pixel (10 x 10 SPOT pixels) and mapped linearly onto B04 and
onto B03, for the dates within SEASON_DAYS of the VHR image (crops change too much across a year for
one linear map). The scene of a date is its Sentinel-2 tile and day
(`T32ULU_20190817`): PASTIS stores dates, not product names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from omnisat_data.formats.pastis import SPOT_FOLDER, Patch, read_pastis
from omnisat_data.geo.grid import crs_string

from .shift import estimate_shifts, with_classes
from .treesatai_ts import TileCheck

PASTIS_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
PAIR = {"red": PASTIS_BANDS.index("B04"), "green": PASTIS_BANDS.index("B03")}
VHR_DATE = 20190701  # PASTIS-HD's SPOT images are of 2019; their day is not stored (MAESTRO assumes 1 July)
SEASON_DAYS = 60  # shifts are estimated on dates this close to it: crops change too much in between
SERIES = {"S2": ("DATA_S2", "dates-S2", np.int16, 10), "S1A": ("DATA_S1A", "dates-S1A", np.float16, 3),
          "S1D": ("DATA_S1D", "dates-S1D", np.float16, 3)}


def _dates(value) -> list[int]:
    if isinstance(value, str):  # older geopandas / writers store the object as a JSON string
        value = json.loads(value)
    return [int(v) for v in value.values()]


def check_patch(root: Path, patch: Patch, feature: dict, pair: str = "both") -> TileCheck:
    name = str(patch.id)
    check = TileCheck(name)
    props = feature.get("properties", {})
    arrays = {}
    for key, (folder, prop, dtype, channels) in SERIES.items():
        path = root / folder / f"{key}_{patch.id}.npy"
        where = f"{name}: {folder}/{path.name}"
        if not path.is_file():
            if (root / folder).is_dir():
                check.problems.append(f"{where}: missing")
            continue
        a = np.load(path, mmap_mode="r")
        if a.dtype != dtype:
            check.problems.append(f"{where}: {a.dtype}, expected {np.dtype(dtype).name}")
        if a.ndim != 4 or a.shape[1:] != (channels, 128, 128):
            check.problems.append(f"{where}: shape {a.shape}, expected (T, {channels}, 128, 128)")
            continue
        dates = _dates(props.get(prop, {}))
        if len(dates) != a.shape[0]:
            check.problems.append(f"{where}: {a.shape[0]} frames but metadata {prop} lists {len(dates)} dates")
        if any(b <= a_ for a_, b in zip(dates, dates[1:])):
            k = next(i for i, (x, y) in enumerate(zip(dates, dates[1:])) if y <= x)
            check.problems.append(f"{name}: metadata.geojson {prop}: dates not ascending and unique at index {k + 1} "
                                  f"({dates[k]} then {dates[k + 1]})")
        arrays[key] = (np.asarray(a), dates)
    target = root / "ANNOTATIONS" / f"TARGET_{patch.id}.npy"
    if not (root / "ANNOTATIONS").is_dir():
        pass  # an unlabelled tree (own areas: omnisat-data build grid) has no ANNOTATIONS at all
    elif not target.is_file():
        check.problems.append(f"{name}: ANNOTATIONS/{target.name}: missing")
    elif np.load(target, mmap_mode="r").shape != (3, 128, 128):
        check.problems.append(
            f"{name}: ANNOTATIONS/{target.name}: shape {np.load(target, mmap_mode='r').shape}, expected (3, 128, 128)"
        )
    spot = root / SPOT_FOLDER / f"SPOT6_RVB_1M00_2019_{patch.id}.tif"
    where = f"{name}: {SPOT_FOLDER}/{spot.name}"
    if not spot.is_file():
        check.problems.append(f"{where}: missing")
        return check
    with rasterio.open(spot) as src:
        image = src.read()
        if (src.count, src.height, src.width) != (3, 1280, 1280) or image.dtype != np.uint8:
            check.problems.append(
                f"{where}: {src.count} x {src.height} x {src.width} {image.dtype}, expected 3 x 1280 x 1280 uint8"
            )
        if (
            src.crs is None
            or crs_string(src.crs) != patch.vhr.crs
            or not np.allclose(list(src.transform)[:6], list(patch.vhr.transform)[:6], atol=1e-3)
        ):
            check.problems.append(f"{where}: georeferenced {src.crs} {tuple(src.transform)[:6]}, not on the patch grid "
                                  f"{patch.vhr.crs} {tuple(patch.vhr.transform)[:6]}")
            return check
    if "S2" in arrays and image.shape == (3, 1280, 1280):
        data, dates = arrays["S2"]
        check.nodata["S2"] = round(float((data == -10000).mean()), 4)
        tile = patch.tile.upper().lstrip("T")
        bands = ("red", "green") if pair == "both" else (pair,)
        vhr_day = _day(VHR_DATE)
        near = [k for k, d in enumerate(dates[: len(data)]) if abs((_day(d) - vhr_day).days) <= SEASON_DAYS]
        targets = np.concatenate([data[near, PAIR[b]] for b in bands]).astype(np.float64)
        targets[targets == -10000] = np.nan
        # one spectral map per crop class when the tree has annotations: crops change apart between the
        # VHR date and the S2 dates, which a single map turned into a 0.3-0.8 m bias per patch
        target = root / "ANNOTATIONS" / f"TARGET_{patch.id}.npy"
        vhr = image.astype(np.float64)
        if target.is_file():
            vhr = with_classes(vhr, np.load(target)[0], 10)
        estimates = estimate_shifts(vhr, targets, 1.0, (0.0, 0.0), 10.0) if near else []
        labels = [(f"T{tile}_{dates[k]}", PASTIS_BANDS[PAIR[b]]) for b in bands for k in near]
        check.shifts = [{"product": p, "band": band, "dx": round(e.dx, 4), "dy": round(e.dy, 4),
                         "r2": round(e.r2, 4) if np.isfinite(e.r2) else None,
                         "condition": round(e.condition, 2) if np.isfinite(e.condition) else None,
                         "pixels": e.pixels, "ok": e.ok, "reason": e.reason} for (p, band), e in zip(labels, estimates)]
    return check


def _day(yyyymmdd: int):
    import datetime as dt

    return dt.datetime.strptime(str(yyyymmdd), "%Y%m%d").date()


def check_norm_files(root: Path, folds: set[int]) -> list[str]:
    problems = []
    for key, (folder, _, _, channels) in SERIES.items():
        if not (root / folder).is_dir():
            continue
        path = root / f"NORM_{key}_patch.json"
        if not path.is_file():
            problems.append(f"dataset: {path.name}: missing (pastis-benchmark and utae-paps read it by default)")
            continue
        norm = json.loads(path.read_text())
        for fold in sorted(folds):
            entry = norm.get(f"Fold_{fold}")
            if not entry or len(entry.get("mean", [])) != channels or len(entry.get("std", [])) != channels:
                problems.append(f"dataset: {path.name}: Fold_{fold} lacks {channels} means and stds")
    return problems


def patches(root: Path) -> tuple[dict[str, Patch], dict[str, dict], list[tuple[str, str]]]:
    source = read_pastis(root)
    return ({str(p.id): p for p in source.patches}, {str(k): v for k, v in source.features.items()},
            list(source.problems))


