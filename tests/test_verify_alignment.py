"""verify-alignment: the shift estimator on analytic images, injected scene shifts found in a build of the
tiny world, planted format defects named, the CLI's exit code and pictures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from omnisat_data.verify.run import VerifyConfig, verify
from omnisat_data.verify.shift import estimate_shifts, with_classes
from omnisat_data.verify.treesatai_ts import Layout, check_tile, tile_shift

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "treesatai-ts-sample"


def _waves(rng, n=20):
    return [(*(rng.normal(size=2) * 2 * np.pi / rng.uniform(8, 60)), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1))
            for _ in range(n)]


def _field(x, y, waves):
    return 5 + sum(a * np.sin(kx * x + ky * y + ph) for kx, ky, ph, a in waves)


@pytest.mark.parametrize("fine,coarse_px,margin", [(0.2, 6, 2), (1.0, 128, 0)])
def test_estimator_recovers_known_shifts_gain_and_offset(fine, coarse_px, margin):
    """TreeSatAI tiles (6 x 6 from 0.2 m) and PASTIS patches (128 x 128 from 1 m): a box-averaged field
    shifted by a known (dx, dy), with gain, offset and noise."""
    rng = np.random.default_rng(1)
    block = int(round(10 / fine))
    n = coarse_px * block + 2 * margin
    x, y = np.meshgrid((np.arange(n) + 0.5) * fine, -(np.arange(n) + 0.5) * fine)
    errors = []
    for _ in range(6 if coarse_px == 6 else 1):
        waves = _waves(rng)
        shifts = rng.uniform(-7, 7, size=(12 if coarse_px == 6 else 2, 2))
        inner = slice(margin, margin + coarse_px * block)
        targets = np.stack([
            _field(x - dx, y - dy, waves)[inner, inner].reshape(coarse_px, block, coarse_px, block).mean(axis=(1, 3))
            * 1.3 - 2.0 + rng.normal(scale=0.005, size=(coarse_px, coarse_px)) for dx, dy in shifts])
        estimates = estimate_shifts(_field(x, y, waves), targets, fine, (margin, margin), block)
        for e, (dx, dy) in zip(estimates, shifts):
            if e.ok:
                errors.append(np.hypot(e.dx - dx, e.dy - dy))
                assert abs(e.gain - 1.3) < 0.05
    errors = np.array(errors)
    assert len(errors) >= (60 if coarse_px == 6 else 2)
    # 0.05 px = 0.5 m is the acceptance bound; analytic images do far better
    assert np.median(errors) < 0.05 and np.percentile(errors, 90) < (0.5 if coarse_px == 6 else 0.05)


def test_per_class_spectral_maps_remove_the_bias_of_crops_that_changed_apart():
    """A PASTIS-like patch: four parcels whose reflectance changed by different gains and offsets between the
    VHR date and the Sentinel-2 date. One spectral map for the patch turns that into a shift; one per class
    (the annotations) recovers the known shift."""
    rng = np.random.default_rng(3)
    n, block = 128, 10
    x, y = np.meshgrid(np.arange(n * block) + 0.5, -(np.arange(n * block) + 0.5))
    waves = _waves(rng, 8)
    # four classes; the y edge 5 m off the 10 m lattice, the worst case for the 10 m annotation (with the
    # annotation's edges taken as they are, 0.64 m were left in y; moved to the VHR's edges, none)
    parcels = (x > 410).astype(int) + 2 * (y < -655).astype(int)
    gain, offset = np.array([1.0, 0.4, 1.8, 0.7]), np.array([0.0, 6.0, -3.0, 2.0])
    vhr = 0.3 * _field(x, y, waves) + 10 * parcels
    dx, dy = 3.0, -2.0

    def seen(shift_x, shift_y):  # the ground the Sentinel-2 pixel at (x, y) shows, on its own date
        xs, ys = x - shift_x, y - shift_y
        cls = (xs > 410).astype(int) + 2 * (ys < -655).astype(int)
        return gain[cls] * (0.3 * _field(xs, ys, waves) + 10 * cls) + offset[cls]

    target = seen(dx, dy).reshape(n, block, n, block).mean(axis=(1, 3))[None]
    classes = parcels[5::block, 5::block]  # the annotation on the patch grid (class at each pixel centre)
    single = estimate_shifts(vhr, target, 1.0, (0.0, 0.0), block)[0]
    per_class = estimate_shifts(with_classes(vhr, classes, block), target, 1.0, (0.0, 0.0), block)[0]
    assert np.hypot(single.dx - dx, single.dy - dy) > 0.5  # biased by more than 0.05 px
    assert per_class.ok and np.hypot(per_class.dx - dx, per_class.dy - dy) < 0.05 and per_class.r2 > 0.99


@pytest.fixture(scope="module")
def verified(built, tmp_path_factory):
    out, _ = built
    folder = tmp_path_factory.mktemp("verify")
    cfg = VerifyConfig(out, report=folder / "report.json", png=folder, workers=0)
    return verify(cfg), folder


def test_injected_scene_shifts_are_found_and_flagged(verified, truth):
    report, _ = verified
    by_product = {t["product"]: t for t in truth["s2"].values()}
    # the tiny world's year has 5 Sentinel-2 datatakes clear enough to pool over its 8 tiles
    assert report["summary"]["problems"] == 0 and len(report["scenes"]) >= 5
    errors = []
    for product, scene in report["scenes"].items():
        true = np.array(by_product[product]["shift"])
        errors.append(np.hypot(scene["dx"] - true[0], scene["dy"] - true[1]))
        assert scene["flagged"] == (np.hypot(*true) >= 5.0), (product, scene, true)
    assert any(np.hypot(*by_product[p]["shift"]) >= 5.0 for p in report["scenes"]), "the tiny world shifts some scenes"
    # The acceptance bound: 0.05 px (0.5 m) per scene, pooled from 6 x 6 px tiles (8 of them here).
    assert max(errors) <= 0.5, sorted(errors)
    assert report["summary"]["tiles_flagged"] == 0  # the aerial sheets carry no injected shift


def test_tile_shift_is_the_smaller_band_median_once_scene_shifts_are_out():
    scenes = {"A": {"dx": 5.0, "dy": 0.0}, "B": {"dx": 0.0, "dy": 0.0}}
    est = lambda product, band, dx, dy: {"product": product, "band": band, "dx": dx, "dy": dy}  # noqa: E731
    # a misplaced tile: every band and date 7 m off once each scene's own shift is removed
    moved = [est(p, b, scenes[p]["dx"] + 7.0, 0.1) for p in "AB" for b in ("B08", "B04")] * 2
    assert tile_shift(moved, scenes, min_estimates=3) == pytest.approx((7.0, 0.1))
    # one band biased on some dates (a class whose red contrast changed), the other clean: the clean one
    biased = [est("B", "B04", -6.0, -3.0)] * 3 + [est("B", "B08", 0.2, 0.0)] * 3
    assert tile_shift(biased, scenes, min_estimates=3) == pytest.approx((0.2, 0.0))
    # a band with too few estimates does not count; no band with enough: no tile shift at all
    assert tile_shift(biased[:3] + biased[3:5], scenes, min_estimates=3) == pytest.approx((-6.0, -3.0))
    assert tile_shift(biased[:2] + biased[3:5], scenes, min_estimates=3) is None
    # a scene too small to pool counts as unshifted
    assert tile_shift([est("C", "B08", 1.0, 2.0)] * 3, scenes) == pytest.approx((1.0, 2.0))


def test_a_misplaced_aerial_tile_is_flagged_alone(built, verified, tmp_path):
    import rasterio

    layout, _ = _copy_tile(built[0], tmp_path)
    # the tile with the most reliable estimates in the good build (a tile inside one uniform stand has
    # too little structure for any estimate to be accepted, and is reported as such, not flagged)
    good = verified[0]["tiles"]
    name = max(sorted(good), key=lambda n: good[n]["accepted"])
    path = layout.aerial / f"{name}.tif"
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    moved = np.concatenate([data[:, :, 35:], data[:, :, -1:].repeat(35, axis=2)], axis=2)  # content 7 m west
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(moved)
    report = verify(VerifyConfig(layout.root, report=tmp_path / "r.json", png=tmp_path, workers=0))
    flagged = [n for n, t in report["tiles"].items() if t["flagged"]]
    assert flagged == [name]
    assert report["tiles"][name]["dx"] == pytest.approx(7.0, abs=1.0)  # S2 sees it 7 m east of the aerial


def test_report_and_pictures_are_written(verified):
    report, folder = verified
    saved = json.loads((folder / "report.json").read_text())
    assert saved["summary"] == report["summary"] and not saved["summary"]["passed"]
    assert (folder / "shifts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(folder.glob("tile_*.png"))) == 4


def _copy_tile(built_dir: Path, tmp_path: Path) -> tuple[Layout, str]:
    dst = tmp_path / "ds"
    shutil.copytree(built_dir, dst, ignore=shutil.ignore_patterns("alignment"))
    name = sorted(p.stem for p in (dst / "sentinel").glob("*.h5"))[0]
    return Layout.of(dst), name


def _plant(layout: Layout, name: str, defect: str) -> None:
    h5 = layout.sentinel / f"{name}.h5"
    if defect == "transform":
        path = layout.root / "stac" / "items" / f"{name}.json"
        item = json.loads(path.read_text())
        item["properties"]["proj:transform"][2] += 10.0
        path.write_text(json.dumps(item))
    elif defect == "band order":
        with h5py.File(h5, "r+") as f:
            d = f["sen-2-data"][()]
            d[:, [2, 6]] = d[:, [6, 2]]
            f["sen-2-data"][...] = d
    elif defect == "date order":
        with h5py.File(h5, "r+") as f:
            p = f["sen-2-products"][()]
            p[[0, -1]] = p[[-1, 0]]  # (0 and 1 may be one datatake on two MGRS tiles: same date)
            f["sen-2-products"][...] = p
    elif defect == "short pth":
        path = layout.pth["s1-asc"] / f"{name}.pth"
        torch.save(torch.load(path, weights_only=True)[:-1].clone(), path)
    elif defect == "garbage manifest":
        (layout.root / "stac" / "items" / f"{name}.json").write_bytes(b"\x00garbage{")
    elif defect == "NaN pixel":
        with h5py.File(h5, "r+") as f:
            d = f["sen-2-data"][()]
            d[2, 4, 1, 1] = np.nan
            f["sen-2-data"][...] = d
    elif defect == "all-NaN frame":
        with h5py.File(h5, "r+") as f:
            d = f["sen-1-des-data"][()]
            d[1] = np.nan
            f["sen-1-des-data"][...] = d


DEFECTS = {"transform": "proj:transform", "band order": "band order", "date order": "out of order",
           "short pth": "frames for", "all-NaN frame": "all NaN", "NaN pixel": "holds NaN",
           "garbage manifest": "unreadable"}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_planted_defect_is_named(built, tmp_path, defect):
    layout, name = _copy_tile(built[0], tmp_path)
    assert check_tile(layout, name).problems == []
    _plant(layout, name, defect)
    problems = check_tile(layout, name).problems
    assert len(problems) >= 1 and all(p.startswith(f"{name}: ") for p in problems), problems
    assert any(DEFECTS[defect] in p for p in problems), problems


def test_cli_on_the_real_sample_passes_and_on_shifted_scenes_fails(built, tmp_path):
    base = [sys.executable, "-m", "cli.data", "verify-alignment"]
    r = subprocess.run(base + [str(SAMPLE), "--report", str(tmp_path / "s.json"), "--png", str(tmp_path / "png"),
                               "--workers", "0"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    sample = json.loads((tmp_path / "s.json").read_text())
    assert sample["summary"]["tiles"] == 1 and sample["summary"]["problems"] == 0
    r = subprocess.run(base + [str(built[0]), "--report", str(tmp_path / "b.json"), "--png", str(tmp_path / "png2"),
                               "--sample", "6"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert (
        r.returncode == 1
        and "FAILED" in r.stdout
        and json.loads((tmp_path / "b.json").read_text())["summary"]["tiles"] == 6
    )
    r = subprocess.run(base + [str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "nowhere" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pictures_go_beside_the_report_and_the_dataset_is_left_alone(built, tmp_path):
    """With --report elsewhere (e.g. a read-only dataset), nothing is written into the dataset."""
    before = {p: p.read_bytes() for p in sorted(built[0].rglob("*")) if p.is_file()}
    r = subprocess.run([sys.executable, "-m", "cli.data", "verify-alignment", str(built[0]), "--report",
                        str(tmp_path / "out" / "r.json"), "--sample", "4"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode in (0, 1), r.stderr
    after = {p: p.read_bytes() for p in sorted(built[0].rglob("*")) if p.is_file()}
    assert after == before
    assert (tmp_path / "out" / "shifts.png").is_file() and str(tmp_path / "out") in r.stdout
