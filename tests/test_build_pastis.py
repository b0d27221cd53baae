"""build pastis-r on the tiny world: patch grids recovered exactly, VHR values equal an independent area
average of the source scene, the PASTIS-HD layout of spec section 7.2, bad input named; --sentinel series
equal an independent interpolation of the world's render functions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import assert_one_line_error, run_cli
from world_truth import exact_area_average, expected_s1, expected_s2

from omnisat_data.build.pastis_hd import PastisConfig, build_pastis, record_path
from omnisat_data.build.pastis_hd import dry_run as pastis_dry_run
from omnisat_data.build.plan import PLAN
from omnisat_data.formats.pastis import read_pastis, spot_path, tile_crs
from omnisat_data.formats.treesatai import SourceError
from omnisat_data.geo.grid import Grid
from omnisat_data.recipe import RecipeError, load_recipe
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.field import Field
from omnisat_data.stac.search import resolve_href

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pastis_hd(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("pastis") / "PASTIS-R"
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    return out, build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, out, workers=0))


def test_patch_grids_are_the_worlds(world, truth):
    source = read_pastis(world / "sources" / "PASTIS-R")
    assert source.problems == () and len(source.patches) == len(truth["pastis_patches"])
    for p in source.patches:
        assert p.sentinel == Grid.from_dict(truth["pastis_patches"][str(p.id)]["grid"])
        assert p.vhr.bounds == p.sentinel.bounds and p.vhr.shape == (1280, 1280)
    assert tile_crs("t30uxv") == "EPSG:32630" and tile_crs("t31tfj") == "EPSG:32631"


def test_vhr_values_equal_anexact_area_average(pastis_hd, world):
    out, report = pastis_hd
    assert report.failed == {} and len(report.done) == 1
    source = read_pastis(world / "sources" / "PASTIS-R")
    patch = source.patches[0]
    scene = next((world / "data" / "spot-rgb-1m").glob("*/image.tif"))
    rng = np.random.default_rng(0)
    with rasterio.open(spot_path(out, patch.id)) as written, rasterio.open(scene) as src:
        assert written.count == 3 and written.dtypes[0] == "uint8" and (written.height, written.width) == (1280, 1280)
        assert written.crs.to_string() == patch.vhr.crs and written.transform == patch.vhr.transform
        data = written.read()
        diffs = []
        for row, col in rng.integers(0, 1280, size=(40, 2)):
            diffs.append(np.abs(data[:, row, col] - exact_area_average(src, patch.vhr, int(row), int(col))))
    diffs = np.array(diffs)
    # 4 x 4 sub-pixel sampling and rounding to uint8: within 2 DN, and below 0.5 DN on average
    assert diffs.max() <= 2.0 and diffs.mean() < 0.5, diffs.max()


def test_layout_is_pastis_hd(pastis_hd, world):
    out, _ = pastis_hd
    src = world / "sources" / "PASTIS-R"
    for path in src.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(src)).read_bytes() == path.read_bytes(), path
    meta = json.loads((out / "metadata.geojson").read_text())
    pids = [f["properties"]["ID_PATCH"] for f in meta["features"]]
    assert sorted(p.name for p in (out / "DATA_SPOT" / "PASTIS_SPOT6_RVB_1M00_2019").glob("*.tif")) == \
        sorted(f"SPOT6_RVB_1M00_2019_{pid}.tif" for pid in pids)
    for name in ("S2", "S1A", "S1D"):
        norm = json.loads((out / f"NORM_{name}_patch.json").read_text())
        folds = {f"Fold_{f['properties']['Fold']}" for f in meta["features"]}
        assert set(norm) == folds
        arrays = np.concatenate([np.load(p).astype(np.float64) for p in sorted((out / f"DATA_{name}").glob("*.npy"))])
        if len(folds) == 1:
            np.testing.assert_allclose(norm[folds.pop()]["mean"], arrays.mean(axis=(0, 2, 3)), rtol=1e-6)
    # a rerun resumes: nothing rewritten
    before = spot_path(out, pids[0]).stat().st_mtime_ns
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    again = build_pastis(PastisConfig(src, recipe, out, workers=0))
    assert again.skipped == pids and again.done == [] and spot_path(out, pids[0]).stat().st_mtime_ns == before


def test_bad_pastis_input_is_named(world, tmp_path):
    src = world / "sources" / "PASTIS-R"
    meta = json.loads((src / "metadata.geojson").read_text())

    def tree(mutate) -> Path:
        root = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        doc = json.loads(json.dumps(meta))
        mutate(doc["features"][0])
        (root / "metadata.geojson").write_text(json.dumps(doc))
        return root

    with pytest.raises(SourceError, match="dates-S1A"):
        read_pastis(tree(lambda f: f["properties"].pop("dates-S1A")))
    stretched = read_pastis(tree(lambda f: f["geometry"]["coordinates"][0][0].__setitem__(1, [
        f["geometry"]["coordinates"][0][0][1][0] + 300, f["geometry"]["coordinates"][0][0][1][1]])))
    assert stretched.patches == () and "not a 1280 m square" in stretched.problems[0][1]
    unknown = read_pastis(tree(lambda f: f["properties"].__setitem__("TILE", "t99zzz")))
    assert unknown.patches == () and "t99zzz" in unknown.problems[0][1]
    r = run_cli("cli.data", "build", "pastis-r", "--source", tmp_path / "none", "--recipe",
                ROOT / "recipes" / "pastis-hd-demo.toml", "--out", tmp_path / "o")
    assert_one_line_error(r, "metadata.geojson")


def test_verify_pastis_hd_names_planted_defects(pastis_hd, tmp_path):
    from omnisat_data.verify.run import VerifyConfig, verify

    out, _ = pastis_hd
    good = verify(VerifyConfig(out, format="pastis-hd", report=tmp_path / "r.json", png=tmp_path, workers=0))
    assert good["summary"]["problems"] == 0, [t["problems"] for t in good["tiles"].values()]
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    meta = json.loads((bad / "metadata.geojson").read_text())
    pid = meta["features"][0]["properties"]["ID_PATCH"]
    dates = meta["features"][0]["properties"]["dates-S1A"]
    dates["0"], dates["1"] = dates["1"], dates["0"]  # out of order
    (bad / "metadata.geojson").write_text(json.dumps(meta))
    s2 = np.load(bad / "DATA_S2" / f"S2_{pid}.npy")
    np.save(bad / "DATA_S2" / f"S2_{pid}.npy", s2[:-1])  # one frame short of its dates
    (bad / "NORM_S1D_patch.json").unlink()
    with rasterio.open(spot_path(bad, pid), "r+") as ds:  # moved off the patch grid
        ds.transform = ds.transform * rasterio.Affine.translation(5, 0)
    report = verify(VerifyConfig(bad, format="pastis-hd", report=tmp_path / "b.json", png=tmp_path, workers=0))
    problems = report["tiles"][str(pid)]["problems"] + report["summary"]["dataset_problems"]
    for needle in ("dates-S1A: dates not ascending", "DATA_S2/S2_", "frames but metadata dates-S2",
                   "not on the patch grid", "NORM_S1D_patch.json: missing"):
        assert any(needle in p for p in problems), (needle, problems)
    assert not report["summary"]["passed"]


# -- --sentinel: the series re-fetched from STAC ------------------------------------------------------------

@pytest.fixture(scope="module")
def refetched(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("pastis-sentinel") / "PASTIS-R"
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    recipe = dataclasses.replace(recipe, period=PRESETS["tiny"].pastis_span)
    return out, build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, out, workers=0, sentinel=True))


def _expected_days(scenes, day_of, expected):
    """Per day, in time order, the first scene with every band valid at each pixel: (days, frames)."""
    days: dict[int, list] = {}
    for s in scenes:
        days.setdefault(day_of(s), []).append(expected(s))
    out_days, frames = [], []
    for day in sorted(days):
        mosaic = np.full(days[day][0].shape, np.nan)
        for e in days[day]:
            take = np.isnan(mosaic).any(axis=0) & ~np.isnan(e).any(axis=0)
            mosaic[:, take] = e[:, take]
        if not np.isnan(mosaic).any():
            out_days.append(day)
            frames.append(mosaic)
    return out_days, np.stack(frames)


def test_sentinel_refetch_equals_the_world(refetched, world, plan):
    out, report = refetched
    assert report.failed == {} and report.series_done == [10000]
    field = Field(PRESETS["tiny"])
    start, end = (dt.date.fromisoformat(d) for d in PRESETS["tiny"].pastis_span)
    patch = read_pastis(world / "sources" / "PASTIS-R").patches[0]
    meta = json.loads((out / "metadata.geojson").read_text())["features"][0]["properties"]
    source_meta = json.loads((world / "sources" / "PASTIS-R" / "metadata.geojson").read_text())["features"][0][
        "properties"
    ]
    ymd = int

    # Sentinel-2: scenes of the patch's tile, one complete frame per day, reflectance x 10000 as int16
    s2 = sorted((s for s in plan.s2 if s.mgrs == "32ULU" and start <= s.datetime.date() <= end),
                key=lambda s: (s.datetime, s.product))
    days, want = _expected_days(s2, lambda s: ymd(s.datetime.strftime("%Y%m%d")),
                                lambda s: expected_s2(field, s, patch.sentinel)[:10])
    data = np.load(out / "DATA_S2" / "S2_10000.npy")
    assert data.dtype == np.int16 and data.shape == (len(days), 10, 128, 128)
    assert list(meta["dates-S2"]) == [str(i) for i in range(len(days))] and list(meta["dates-S2"].values()) == days
    assert np.abs(data - want).max() <= 0.5 + 1e-6
    # where the world's own PASTIS-R renders the same thing (10 m bands on the same lattice), identical;
    # the days it keeps and we drop are those with no-data pixels (swath edges)
    source = np.load(world / "sources" / "PASTIS-R" / "DATA_S2" / "S2_10000.npy")
    source_days = list(source_meta["dates-S2"].values())
    kept = [source_days.index(d) for d in days]
    np.testing.assert_array_equal(data[:, [0, 1, 2, 6]], source[kept][:, [0, 1, 2, 6]])
    dropped = [i for i, d in enumerate(source_days) if d not in days]
    assert dropped and all(np.isin(source[i], (0, -1000)).any() for i in dropped)

    # Sentinel-1: float16 dB, VV, VH, VV - VH; slices of one pass mosaicked into one day
    for key, direction in (("S1A", "ascending"), ("S1D", "descending")):
        scenes = sorted((s for s in plan.s1 if s.direction == direction and start <= s.start.date() <= end),
                        key=lambda s: (s.start, s.item_id))
        days, want = _expected_days(scenes, lambda s: ymd(s.start.strftime("%Y%m%d")),
                                    lambda s: expected_s1(field, s, patch.sentinel))
        data = np.load(out / f"DATA_{key}" / f"{key}_10000.npy")
        assert data.dtype == np.float16 and data.shape == (len(days), 3, 128, 128)
        assert list(meta[f"dates-{key}"].values()) == days and days == sorted(set(days))
        db = 10 * np.log10(want)
        np.testing.assert_allclose(data[:, :2].astype(float), db, atol=0.02)
        np.testing.assert_allclose(data[:, 2].astype(float), db[:, 0] - db[:, 1], atol=0.02)
        if key == "S1D":  # passes delivered as two slices: two items, one day
            assert len({s.start.date() for s in scenes}) < len(scenes)
    record = json.loads(record_path(out, 10000).read_text())
    assert list(record["dates"]) == ["S2", "S1A", "S1D"] and record["proj:shape"] == [128, 128]


def test_sentinel_refetch_writes_norms_and_resumes(refetched, world):
    out, _ = refetched
    meta = json.loads((out / "metadata.geojson").read_text())
    fold = f"Fold_{meta['features'][0]['properties']['Fold']}"
    for name in ("S2", "S1A", "S1D"):
        arrays = np.load(out / f"DATA_{name}" / f"{name}_10000.npy").astype(np.float64)
        norm = json.loads((out / f"NORM_{name}_patch.json").read_text())[fold]
        np.testing.assert_allclose(norm["mean"], arrays.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert (out / "ANNOTATIONS" / "TARGET_10000.npy").read_bytes() == \
        (world / "sources" / "PASTIS-R" / "ANNOTATIONS" / "TARGET_10000.npy").read_bytes()
    before = (out / "DATA_S2" / "S2_10000.npy").stat().st_mtime_ns
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    recipe = dataclasses.replace(recipe, period=PRESETS["tiny"].pastis_span)
    again = build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, out, workers=0, sentinel=True))
    assert again.series_done == [] and again.failed == {}
    assert (out / "DATA_S2" / "S2_10000.npy").stat().st_mtime_ns == before
    assert json.loads((out / "metadata.geojson").read_text()) == meta


def test_an_unreadable_scene_costs_its_day_and_a_rerun_reads_it_again(refetched, world, tmp_path):
    """One Sentinel-2 scene unreadable: the patch is written without that day (the other days equal the
    whole build's), the loss is in the report and the patch record; a rerun with the scene readable again
    reads the patch again and gives the whole build's arrays. `strict` fails the patch instead."""
    whole, _ = refetched
    days = list(json.loads(record_path(whole, 10000).read_text())["dates"]["S2"])
    items = [json.loads(line) for line in (world / "stac" / "items.ndjson").read_text().splitlines()]
    for item in items:  # the copy lies elsewhere: its hrefs made absolute
        for asset in item["assets"].values():
            asset["href"] = resolve_href(asset["href"], world / "stac")
    # a scene that is alone on a kept day, so that losing it costs exactly that day
    on_day = {}
    for item in items:
        if item["id"].startswith("S2") and "T32ULU" in item["id"]:
            on_day.setdefault(int(item["properties"]["datetime"][:10].replace("-", "")), []).append(item)
    day = next(d for d in days if len(on_day.get(d, [])) == 1)
    broken = on_day[day][0]
    good_href = broken["assets"]["B04"]["href"]
    broken["assets"]["B04"]["href"] = str(tmp_path / "gone" / "B04.tif")
    catalog = tmp_path / "items.ndjson"
    catalog.write_text("".join(json.dumps(i) + "\n" for i in items))
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(catalog))
    recipe = dataclasses.replace(recipe, period=PRESETS["tiny"].pastis_span)
    out = tmp_path / "out"
    lenient = build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, out, workers=0, sentinel=True))
    assert lenient.failed == {} and [d["item"] for d in lenient.lost["10000"]] == [broken["id"]]
    record = json.loads(record_path(out, 10000).read_text())
    assert record["dates"]["S2"] == [d for d in days if d != day] and record["lost"][0]["item"] == broken["id"]
    keep = [i for i, d in enumerate(days) if d != day]
    np.testing.assert_array_equal(np.load(out / "DATA_S2" / "S2_10000.npy"),
                                  np.load(whole / "DATA_S2" / "S2_10000.npy")[keep])
    meta = json.loads((out / "metadata.geojson").read_text())["features"][0]["properties"]
    assert list(meta["dates-S2"].values()) == record["dates"]["S2"]

    strict = build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, tmp_path / "strict", workers=0,
                                       sentinel=True, strict=True))
    assert list(strict.failed) == ["10000"] and broken["id"] in strict.failed["10000"] and not strict.lost

    broken["assets"]["B04"]["href"] = good_href
    catalog.write_text("".join(json.dumps(i) + "\n" for i in items))
    again = build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe.with_catalog(str(catalog)), out,
                                      workers=0, sentinel=True))
    assert again.series_done == [10000] and not again.lost
    for name in ("S2", "S1A", "S1D"):
        assert (out / f"DATA_{name}" / f"{name}_10000.npy").read_bytes() == \
            (whole / f"DATA_{name}" / f"{name}_10000.npy").read_bytes()
    assert "lost" not in json.loads(record_path(out, 10000).read_text())


def test_sentinel_refetch_needs_a_period(world, tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    with pytest.raises(RecipeError, match="period: missing"):
        build_pastis(PastisConfig(world / "sources" / "PASTIS-R", dataclasses.replace(recipe, period=None), tmp_path,
                                  workers=0, sentinel=True))


@pytest.mark.slow
def test_dask_cluster_pastis_build_equals_local_build(refetched, world, tmp_path):
    from distributed import LocalCluster

    out, _ = refetched
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    recipe = dataclasses.replace(recipe, period=PRESETS["tiny"].pastis_span)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, tmp_path / "dask", workers=0,
                                           scheduler=cluster.scheduler_address, sentinel=True))
    assert report.failed == {} and report.series_done == [10000]

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name not in ("build-report.json", "plan.json")}
    assert files(tmp_path / "dask") == files(out)


def test_pastis_output_inside_the_source_is_refused(world, tmp_path):
    import shutil

    source = tmp_path / "PASTIS-R"
    shutil.copytree(world / "sources" / "PASTIS-R", source)
    names = sorted(str(p.relative_to(source)) for p in source.rglob("*"))
    r = run_cli("cli.data", "build", "pastis-r", "--source", source, "--recipe",
                ROOT / "recipes" / "pastis-hd-demo.toml", "--catalog", world / "stac" / "items.ndjson", "--out",
                source, "--workers", "0")
    assert_one_line_error(r, "never writes into")
    assert sorted(str(p.relative_to(source)) for p in source.rglob("*")) == names


def test_a_corrupt_npy_is_named_and_the_build_goes_on(world, tmp_path):
    """One unreadable array in the source: the build finishes, the file is named in the report and left
    out of the normalisation statistics; the other patches' files are all there."""
    import shutil

    from omnisat_data.build.pastis_hd import PastisConfig, build_pastis
    from omnisat_data.recipe import load_recipe

    source = tmp_path / "PASTIS-R"
    shutil.copytree(world / "sources" / "PASTIS-R", source)
    corrupt = sorted((source / "DATA_S1A").glob("*.npy"))[0]
    corrupt.write_bytes(b"\x93NUMPY garbage")
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    report = build_pastis(PastisConfig(source, recipe, tmp_path / "out", 0))
    assert report.failed == {} and any(
        corrupt.name in k and "unreadable" in v for k, v in report.source_problems.items()
    )
    assert (tmp_path / "out" / "NORM_S2_patch.json").is_file() and (tmp_path / "out" / "DATA_SPOT").is_dir()


def test_a_null_patch_id_leaves_that_patch_out_with_its_reason(world, tmp_path):
    import shutil

    from omnisat_data.formats.pastis import read_pastis

    source = tmp_path / "PASTIS-R"
    shutil.copytree(world / "sources" / "PASTIS-R", source)
    doc = json.loads((source / "metadata.geojson").read_text())
    doc["features"].append(json.loads(json.dumps(doc["features"][0])))
    doc["features"][-1]["properties"]["ID_PATCH"] = None
    (source / "metadata.geojson").write_text(json.dumps(doc))
    tree = read_pastis(source)
    assert len(tree.patches) == 1 and any("ID_PATCH None" in why for _, why in tree.problems)


def test_the_dry_run_plans_what_the_build_ran_and_writes_nothing(refetched, world, tmp_path):
    out, report = refetched
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    recipe = dataclasses.replace(recipe, period=PRESETS["tiny"].pastis_span)
    fresh = tmp_path / "fresh"
    rows, planned = pastis_dry_run(PastisConfig(world / "sources" / "PASTIS-R", recipe, fresh, workers=0,
                                                sentinel=True))
    assert not fresh.exists()
    sections = json.loads((out / PLAN).read_text())["sections"]
    for name in ("vhr", "sentinel"):  # the build's own plan: the same groups, tiles and units
        mine = [r for r in rows if r.section == name]
        assert [r.tiles for r in mine] == [len(g["tiles"]) for g in sections[name]["groups"]]
        assert [r.units for r in mine] == [len(g["units"]) for g in sections[name]["groups"]]
    vhr = next(r for r in rows if r.section == "vhr")
    assert vhr.found == {"vhr": vhr.units} and vhr.tiles == report.total and vhr.asset_bytes > 0
    assert planned.searches == 1 + 2 * len(sections["sentinel"]["groups"]) and not planned.plan["vhr"].reused

    before = (out / PLAN).read_bytes()
    rows, again = pastis_dry_run(PastisConfig(world / "sources" / "PASTIS-R", recipe, out, workers=0, sentinel=True))
    assert rows == [] and again.searches == 0 and len(again.skipped) == report.total  # all built: nothing to plan
    assert (out / PLAN).read_bytes() == before
