"""build treesatai on the tiny world: values against the analytic truth, the format against the real
sample, pgstac against the embedded catalog, kill and resume, injected faults."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, recipe_for, run_cli
from pyproj import Transformer
from world_truth import check_series_file

from omnisat_data.build.engine import Frame
from omnisat_data.build.plan import one_granule_per_datatake
from omnisat_data.build.treesatai_series import assemble
from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai, carve_val, is_complete
from omnisat_data.formats.treesatai import read_treesatai
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.field import Field
from omnisat_data.sim.world.make import make_world, plan_world
from omnisat_data.stac.acquisitions import Acquisition
from omnisat_data.stac.products import s2_datatake

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "treesatai-ts-sample" / "Abies_alba_1_1005_WEFL_NLF.h5"


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("build-report.json", "plan.json")}


def check_tree(out: Path, world: Path, preset: str, year: int = 2022) -> dict[str, int]:
    """Every tile of a build against the world's truth (world_truth.check_series_file); totals."""
    plan = plan_world(PRESETS[preset])
    field = Field(PRESETS[preset])
    s2 = [s for s in plan.s2 if s.datetime.year == year]
    s1 = [s for s in plan.s1 if s.start.year == year]
    totals: dict[str, int] = {}
    for tile in read_treesatai(world / "sources" / "treesatai").tiles:
        counts = check_series_file(out / "sentinel" / f"{tile.name}.h5", field, s2, s1, tile.sentinel)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        for series in ("s1-asc", "s1-des"):
            assert torch.isfinite(torch.load(out / series / f"{tile.name}.pth", weights_only=True)).all()
    return totals


def test_values_dates_and_products_equal_the_world(built, world):
    out, report = built
    assert report.failed == {} and len(report.done) == 8
    totals = check_tree(out, world, "tiny")
    assert totals["checked"] > 8 * 10
    assert totals["duplicates"] > 0  # the tiny world's tiles lie where two MGRS granules overlap: the rule is exercised


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    """The 'edges' world (tiles across a granule edge and a swath edge) and its TreeSatAI-TS build."""
    root = tmp_path_factory.mktemp("edges")
    make_world(root / "world", PRESETS["edges"], workers=2)
    cfg = BuildConfig(
        root / "world" / "sources" / "treesatai",
        recipe_for(str(root / "world" / "stac" / "items.ndjson")),
        root / "treesatai-ts",
        workers=0,
    )
    return root / "world", cfg.out, build_treesatai(cfg)


def test_frames_across_granule_and_swath_edges_are_mosaicked_or_dropped(edges):
    world, out, report = edges
    assert report.failed == {} and len(report.done) == 8
    totals = check_tree(out, world, "edges")
    assert totals["mosaicked"] > 0 and totals["dropped"] > 0  # both cases are exercised
    frames = report.to_dict()["frames"]
    # the truth renders every scene over every tile; the build reads only scenes whose footprint meets
    # the tile, so a tile just outside a swath (reached only by the bilinear support) is no dropped frame
    assert frames["mosaicked"] == totals["mosaicked"] and 0 < frames["dropped"] <= totals["dropped"]
    assert sum(c["s2"]["mosaicked"] for c in report.completion.values()) == totals["mosaicked"]


def test_tile_dates_are_sorted(built):
    out, _ = built
    for path in (out / "sentinel").glob("*.h5"):
        with h5py.File(path, "r") as f:
            s2 = [p.decode().split("_")[2] for p in f["sen-2-products"][()]]
            assert s2 == sorted(s2)
            for series in ("sen-1-asc", "sen-1-des"):
                starts = [p.decode().split("_")[4] for p in f[f"{series}-products"][()]]
                assert starts == sorted(starts)


def test_assemble_completes_frames_within_a_take_and_writes_no_nan():
    nan = np.full((2, 6, 6), np.nan, np.float32)
    one, two = np.ones((2, 6, 6), np.float32), np.full((2, 6, 6), 2, np.float32)
    west, east = one.copy(), two.copy()
    west[:, :, 3:] = np.nan
    east[:, :, :2] = np.nan
    s1 = "S1A_IW_GRDH_1SDV_20220102T0541{:02d}_20220102T054137_000123_{}_{}"
    def slice_(k: int, second: int, take: str, name: str, values: np.ndarray) -> Frame:
        return Frame((k, name), s1.format(second, take, name.upper()), name, "s1-asc", values)

    frames = [
        slice_(2, 37, "00AAAA", "b", one),  # a complete slice ...
        slice_(1, 12, "00AAAA", "a", west),  # ... makes the partial slice of its pass redundant
        slice_(3, 50, "00BBBB", "c", west),  # a pass of two partial slices: their mosaic,
        slice_(4, 55, "00BBBB", "d", east),  # named after the one with more valid pixels
        slice_(5, 59, "00CCCC", "e", west),  # a pass no slice completes: dropped
        slice_(6, 59, "00DDDD", "x", nan),  # no pixel over the tile
    ]
    series = assemble(frames, 2, sentinel2=False)
    assert series.item_ids == ("b", "d") and (series.mosaicked, series.dropped, series.empty) == (1, 1, 1)
    np.testing.assert_array_equal(series.data[1], np.where(np.isnan(east), one, two))
    assert np.isfinite(series.data).all() and series.masks is None
    s2 = "S2A_MSIL2A_20220513T104031_N0400_R108_T32{}_20220513T135731"
    both = [Frame((1, "ulu"), s2.format("ULU"), "ulu", "s2", np.concatenate([west, west[:1] * 0 + 7])),
            Frame((2, "umu"), s2.format("UMU"), "umu", "s2", np.concatenate([east, east[:1] * 0 + 9]))]
    series = assemble(both, 2, sentinel2=True)
    assert series.item_ids == ("umu",) and series.mosaicked == 1  # the granule with more valid pixels names it
    assert series.masks.shape == (1, 10, 6, 6) and not series.masks[:, 1:].any()
    np.testing.assert_array_equal(series.masks[0, 0], np.where(np.isnan(east[0]), 7, 9))


def test_each_tile_keeps_one_granule_per_sentinel2_datatake():
    name = "S2A_MSIL2A_{}_N0400_R108_T32{}_20220513T135731"
    may, june = "20220513T104031", "20220602T104031"
    when = {may: dt.datetime(2022, 5, 13), june: dt.datetime(2022, 6, 2)}
    s2 = lambda day, mgrs: Acquisition(f"{day}{mgrs}", name.format(day, mgrs), "s2", when[day], ())  # noqa: E731
    s1 = Acquisition("slice", "S1A_IW_GRDH_1SDV_20220513T054112_20220513T054137_0_0_0", "s1-des", when[may], ())
    # tile 0: the May ULU granule's swath ends inside it; tile 1: both granules cover it whole
    found = [(s2(may, "UMU"), [0, 1], [1.0, 1.0]), (s2(may, "ULU"), [0, 1], [0.4, 1.0]),
             (s2(june, "ULU"), [1], [1.0]), (s1, [0, 1], []), (s2(june, "UMU"), [1], [1.0])]
    units = {u.source.item_id: list(u.tiles) for u in one_granule_per_datatake(found)}
    assert units == {f"{may}UMU": [0], f"{may}ULU": [1],  # the whole granule; on a tie the first in time order
                     f"{june}ULU": [1], "slice": [0, 1]}  # another datatake; Sentinel-1 slices all kept
    assert (
        s2_datatake(name.format(may, "ULU"))
        == s2_datatake(name.format(may, "UMU"))
        != s2_datatake(name.format(june, "ULU"))
    )


def test_h5_matches_the_real_sample_format(built):
    out, _ = built
    path = sorted((out / "sentinel").glob("*.h5"))[0]
    with h5py.File(SAMPLE, "r") as ref, h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(ref.keys())
        assert dict(f.attrs) == {} and all(isinstance(f[k], h5py.Dataset) for k in f)
        for k in ref:
            a, b = ref[k], f[k]
            assert b.dtype == a.dtype, k
            assert h5py.check_string_dtype(b.dtype) == h5py.check_string_dtype(a.dtype), k
            assert b.id.get_create_plist().get_layout() == a.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
            assert b.compression is None and b.ndim == a.ndim, k
        for k in ("sen-2-data", "sen-2-masks", "sen-1-asc-data", "sen-1-des-data"):
            assert f[k].shape[1:] == ref[k].shape[1:], k  # masks (T, 10, 6, 6): snow, cloud, then zeros
        assert not ref["sen-2-masks"][:, 2:].any() and not f["sen-2-masks"][:, 2:].any()
        for series in ("s1-asc", "s1-des"):
            data = f[f"sen-1-{series[3:]}-data"][()]
            t = torch.load(out / series / path.name.replace(".h5", ".pth"), weights_only=True)
            assert t.dtype == torch.float32 and tuple(t.shape) == (len(f[f"sen-1-{series[3:]}-products"]), 3, 6, 6)
            np.testing.assert_array_equal(t[:, :2].numpy(), np.nan_to_num(data, nan=t[:, :2].numpy()))
            np.testing.assert_allclose(t[:, 2].numpy(), t[:, 0].numpy() / (t[:, 1].numpy() + 1e-8), rtol=1e-6)


def test_tree_layout_labels_and_splits(built, world):
    out, _ = built
    source = read_treesatai(world / "sources" / "treesatai")
    names = {f"{t.name}.tif" for t in source.tiles}
    for folder in ("aerial", "aerial/60m", "s1/60m", "s2/60m"):
        assert {p.name for p in (out / folder).glob("*.tif")} == names, folder
    for t in source.tiles:
        assert (out / "aerial" / f"{t.name}.tif").read_bytes() == source.files[t.name].read_bytes()
    labels = json.loads((out / "labels" / "TreeSatBA_v9_60m_multi_labels.json").read_text())
    assert set(labels) == names and all(any(f > 0.07 for _, f in v) for v in labels.values())
    splits = {s: (out / f"{s}_filenames.lst").read_text().split() for s in ("train", "val", "test")}
    assert all(len(v) >= 2 for v in splits.values())
    assert set(splits["train"]) | set(splits["val"]) == set(source.splits["train"])
    assert not set(splits["train"]) & set(splits["val"]) and set(splits["test"]) == set(source.splits["test"])
    assert set(splits["val"]) == carve_val(source.splits["train"])


def test_manifest_collection_items_and_statistics(built):
    out, report = built
    collection = json.loads((out / "stac" / "collection.json").read_text())
    items = [json.loads((out / "stac" / link["href"]).read_text()) for link in collection["links"]
             if link["rel"] == "item"]
    assert len(items) == 8
    for item in items:
        for asset in item["assets"].values():
            assert (out / "stac" / "items" / asset["href"]).resolve().is_file()
        with h5py.File(out / "sentinel" / f"{item['id']}.h5", "r") as f:
            dates = item["properties"]["omnisat:dates"]
            assert [d["product"] for d in dates["s2"]] == [p.decode() for p in f["sen-2-products"][()]]
    stats = collection["summaries"]["omnisat:band_statistics"]["sen-2-data"]
    data = np.concatenate([h5py.File(p, "r")["sen-2-data"][()] for p in sorted((out / "sentinel").glob("*.h5"))])
    np.testing.assert_allclose(stats["mean"], np.nanmean(data, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], np.nanstd(data, axis=(0, 2, 3)), rtol=1e-4)
    # the build summed the arrays it wrote; read back from the files, the same numbers to the last digit
    from omnisat_data.build.treesatai_ts import band_statistics

    assert band_statistics(out, sorted(i["id"] for i in items)) == collection["summaries"]["omnisat:band_statistics"]
    saved = json.loads((out / "build-report.json").read_text())
    assert saved["tiles"] == {"total": 8, "done": 8, "skipped": 0, "failed": 0} and saved["bytes_read"] > 0
    for item in items:
        counts = {k: len(v) for k, v in item["properties"]["omnisat:dates"].items()}
        assert saved["dates"][item["id"]] == counts and counts["s2"] > 0 and counts["s1-asc"] > 0


def test_rerun_skips_complete_tiles(built, world):
    out, _ = built
    before = tree_files(out)
    cfg = BuildConfig(world / "sources" / "treesatai", recipe_for(str(world / "stac" / "items.ndjson")), out, workers=0)
    report = build_treesatai(cfg)
    assert report.done == [] and len(report.skipped) == 8 and report.units == 0
    assert tree_files(out) == before


@pytest.mark.slow
def test_pgstac_api_and_worker_processes_give_identical_files(built, world, servers, tmp_path):
    out, _ = built
    cfg = BuildConfig(world / "sources" / "treesatai", recipe_for(servers.api.url), tmp_path / "api", workers=2)
    servers.assets.counters.reset()
    report = build_treesatai(cfg)
    served = servers.assets.counters.bytes_sent
    assert report.failed == {} and servers.assets.counters.requests > 0  # read over HTTP Range
    assert tree_files(tmp_path / "api") == tree_files(out)
    # read amplification: bytes served (headers included) / compressed bytes of the blocks the tiles need
    assert served <= 1.2 * report.bytes_read, served / report.bytes_read


@pytest.mark.slow
def test_requests_in_flight_are_bounded_by_the_recipes_concurrency(built, world, servers, tmp_path):
    """Against object storage's latency (50 ms a request) one worker keeps many requests in flight, at most
    `concurrency` per modality; at concurrency 1, one per modality (the build before); the same files."""
    import dataclasses

    from omnisat_data.sim.serve.assets import Shaping

    out, _ = built
    recipe = recipe_for(servers.api.url)
    try:
        for concurrency, delay, low, high in ((8, 0.05, 4, 16), (1, 0.0, 1, 2)):
            run = dataclasses.replace(recipe, s2=dataclasses.replace(recipe.s2, concurrency=concurrency),
                                      s1=dataclasses.replace(recipe.s1, concurrency=concurrency))
            servers.assets.shape(Shaping(delay))
            servers.assets.counters.reset()
            # one worker process, fresh for each build (an in-process build would find GDAL's cache filled)
            report = build_treesatai(BuildConfig(world / "sources" / "treesatai", run, tmp_path / str(concurrency),
                                                 workers=1))
            assert report.failed == {} and tree_files(tmp_path / str(concurrency)) == tree_files(out)
            assert low <= servers.assets.counters.peak_in_flight <= high, servers.assets.counters.peak_in_flight
    finally:
        servers.assets.shape(Shaping())


# -- kill and resume ------------------------------------------------------------------------------------

def _recipe_file(tmp_path: Path, catalog: str, group_size_m: float) -> Path:
    text = (ROOT / "recipes" / "demo.toml").read_text()
    text = text.replace('catalog = "../demo/world/stac/items.ndjson"', f'catalog = "{catalog}"')
    text = text.replace("group_size_m = 5000", f"group_size_m = {group_size_m}")
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def _cli_build(source: Path, recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cli.data", "build", "treesatai", "--source", str(source), "--recipe", str(recipe),
            "--out", str(out), "--workers", "0"]


@pytest.mark.slow
def test_killed_build_resumes_to_identical_files(world, tmp_path):
    source = world / "sources" / "treesatai"
    recipe = _recipe_file(tmp_path, str(world / "stac" / "items.ndjson"), 30)  # small groups: tiles land one by one
    whole = tmp_path / "whole"
    subprocess.run(_cli_build(source, recipe, whole), check=True, capture_output=True, cwd=ROOT, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli_build(source, recipe, killed), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((killed / "stac" / "items").glob("*.json"))) < 2:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list((killed / "stac" / "items").glob("*.json")))
    assert 2 <= finished < 8, "the kill should land mid-build"
    for h5 in (killed / "sentinel").glob("*.h5"):  # anything under a final name is whole
        with h5py.File(h5, "r") as f:
            f["sen-2-data"][()]
    r = subprocess.run(_cli_build(source, recipe, killed), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads((killed / "build-report.json").read_text())
    assert report["tiles"]["skipped"] == finished and report["tiles"]["done"] == 8 - finished
    assert not list(killed.rglob("*.tmp"))
    assert tree_files(killed) == tree_files(whole)


# -- faults ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_injected_faults_are_retried_isolated_or_refused(built, world, truth, tmp_path):
    import shapely
    from shapely.geometry import box, mapping

    from omnisat_data.sim.serve.assets import AssetServer
    from omnisat_data.sim.serve.world import rewrite_items

    source = read_treesatai(world / "sources" / "treesatai")
    sheet = {name: t["sheet"] for name, t in truth["treesatai_tiles"].items()}
    first_sheet = sorted(set(sheet.values()))[0]
    hit = [t for t in source.tiles if sheet[t.name] == first_sheet]
    spared = [t for t in source.tiles if sheet[t.name] != first_sheet]
    assert hit and spared

    with AssetServer(world) as assets:
        items_file = rewrite_items(world / "stac" / "items.ndjson", assets.url, tmp_path / "items.ndjson")
        items = [json.loads(line) for line in items_file.read_text().splitlines()]
        with h5py.File(next((built[0] / "sentinel").glob("*.h5")), "r") as f:
            used = f["sen-2-products"][0].decode()  # a scene over the tiles
        s2 = next(i for i in items if i["properties"].get("s2:product_uri") == used + ".SAFE")
        s1 = next(
            i for i in items if i["collection"] == "sentinel-1-rtc" and i["properties"]["datetime"].startswith("2022")
        )
        # 1. an asset answering HTTP 500 three times: retried, its date still written
        flaky = f"data/sentinel-2-l2a/{s2['id']}/B04.tif"
        assets.faults.fail(flaky, 3)
        # 2. a truncated COG in an item that covers only the first sheet: those tiles fail, the rest are built
        extra_root = tmp_path / "extra"
        extra_root.mkdir()
        corrupt = json.loads(json.dumps(s1))
        parts = s1["assets"]["vv"]["href"].split("/")[-2].split("_")  # the ESA name in the path, another datatake
        product = "_".join(parts[:7] + ["FFFFFF"] + parts[8:])
        corrupt["id"] = product.rsplit("_", 1)[0] + "_rtc"
        to_wgs84 = Transformer.from_crs(hit[0].vhr.crs, "EPSG:4326", always_xy=True).transform
        area = box(
            *np.array([t.vhr.bounds for t in hit]).min(axis=0)[:2],
            *np.array([t.vhr.bounds for t in hit]).max(axis=0)[2:],
        )
        corrupt["geometry"] = mapping(shapely.transform(area, lambda x, y: to_wgs84(x, y), interleaved=False))
        (extra_root / product).mkdir()
        for pol in ("vv", "vh"):
            source_file = world / s1["assets"][pol]["href"].removeprefix(assets.url + "/")
            (extra_root / product / f"{pol}.tif").write_bytes(source_file.read_bytes())
        with AssetServer(extra_root) as extra:
            extra.faults.truncate(f"{product}/vv.tif", 3000)
            for pol in ("vv", "vh"):
                corrupt["assets"][pol]["href"] = f"{extra.url}/{product}/{pol}.tif"
            # 3. an item with a hostile id and no product name: refused
            hostile = json.loads(json.dumps(s2))
            hostile["id"] = "../../x"
            del hostile["properties"]["s2:product_uri"]
            with items_file.open("a") as f:
                f.write(json.dumps(corrupt) + "\n" + json.dumps(hostile) + "\n")
            out = tmp_path / "out"
            report = build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe_for(str(items_file)), out,
                                                 workers=0, strict=True))
            lenient = build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe_for(str(items_file)),
                                                  tmp_path / "lenient", workers=0))
        assert assets.faults.errors[flaky][0] == 0 and assets.counters.per_path[flaky][0] >= 4
    assert sorted(report.failed) == sorted(t.name for t in hit)
    assert all(corrupt["id"] in reason and "vv" in reason for reason in report.failed.values())
    assert sorted(report.done) == sorted(t.name for t in spared)
    assert "../../x" in report.refused_items and "no ESA Sentinel-2 L2A product name" in report.refused_items["../../x"]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    assert not (tmp_path / "x").exists() and not (out.parent / "x").exists()
    for t in spared:
        with h5py.File(out / "sentinel" / f"{t.name}.h5", "r") as f:
            assert s2["properties"]["s2:product_uri"].removesuffix(".SAFE").encode() in list(f["sen-2-products"][()])
    lists = "".join((out / f"{s}_filenames.lst").read_text() for s in ("train", "val", "test"))
    assert all(t.name not in lists for t in hit), "failed tiles are never listed"
    # without --strict the hit tiles are written without the unreadable date, which they record ...
    assert lenient.failed == {} and sorted(lenient.lost) == sorted(t.name for t in hit)
    for t in hit:
        assert [d["item"] for d in lenient.lost[t.name]] == [corrupt["id"]]
        item = json.loads((tmp_path / "lenient" / "stac" / "items" / f"{t.name}.json").read_text())
        assert item["properties"]["omnisat:dates_lost"][0]["item"] == corrupt["id"]
        with h5py.File(tmp_path / "lenient" / "sentinel" / f"{t.name}.h5", "r") as f:
            assert product.encode() not in \
                list(f["sen-1-asc-products"][()]) + list(f["sen-1-des-products"][()])
    # ... and are not complete: a rerun (the server now whole) reads them again
    assert all(not is_complete(tmp_path / "lenient", t.name) for t in hit)


def test_cli_errors_are_one_line(world, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('format = "treesatai-ts"\n[s2]\ncollection = "x"\n')
    source, demo, out = world / "sources" / "treesatai", ROOT / "recipes" / "demo.toml", tmp_path / "o"
    cases = [
        (["--source", tmp_path / "nope", "--recipe", demo, "--out", out], "nope"),
        (["--source", source, "--recipe", tmp_path / "missing.toml", "--out", out], "missing.toml"),
        (["--source", source, "--recipe", bad, "--out", out], "[s1] missing"),
        (["--source", source, "--recipe", demo, "--out", out, "--limit", "0"], "--limit"),
    ]
    for args, needle in cases:
        assert_one_line_error(run_cli("cli.data", "build", "treesatai", *args), needle)


def test_dry_run_plans_without_writing(world, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli.data", "build", "treesatai", "--source",
                        str(world / "sources" / "treesatai"), "--recipe", str(ROOT / "recipes" / "demo.toml"),
                        "--catalog", str(world / "stac" / "items.ndjson"), "--out", str(tmp_path / "o"), "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2022" in r.stdout and " 8 " in r.stdout and not (tmp_path / "o" / "sentinel").exists()


@pytest.mark.slow
def test_dask_cluster_build_equals_local_build(built, world, tmp_path):
    from distributed import LocalCluster

    out, _ = built
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cfg = BuildConfig(world / "sources" / "treesatai", recipe_for(str(world / "stac" / "items.ndjson")),
                          tmp_path / "dask", workers=0, scheduler=cluster.scheduler_address)
        report = build_treesatai(cfg)
    assert report.failed == {} and len(report.done) == 8
    assert tree_files(tmp_path / "dask") == tree_files(out)


def test_unreachable_scheduler_is_one_line(world, tmp_path):
    r = run_cli("cli.data", "build", "treesatai", "--source", world / "sources" / "treesatai", "--recipe",
                ROOT / "recipes" / "demo.toml", "--out", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9")
    assert_one_line_error(r, "tcp://127.0.0.1:9")


@pytest.mark.slow
def test_killing_a_dask_worker_mid_build_loses_nothing(built, world, tmp_path):
    from distributed import Client, LocalCluster

    out, _ = built
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as killer:
        victim = sorted(killer.scheduler_info()["workers"])[0]
        killed = []

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "read" and done == 5 and not killed:  # mid-build: 5 of 44 units back
                killed.append(victim)
                try:
                    killer.run(os._exit, 1, workers=[victim])
                except Exception:  # the worker dies before it can answer: that is the point
                    pass

        cfg = BuildConfig(world / "sources" / "treesatai", recipe_for(str(world / "stac" / "items.ndjson")),
                          tmp_path / "dask", workers=0, scheduler=cluster.scheduler_address)
        report = build_treesatai(cfg, progress=progress)
        assert victim not in killer.scheduler_info()["workers"]  # it did die (its nanny started a new one)
    assert killed and report.failed == {} and len(report.done) == 8
    assert tree_files(tmp_path / "dask") == tree_files(out)


@pytest.mark.parametrize("where", ["same", "inside", "holding"])
def test_outputs_overlapping_the_source_are_refused(world, tmp_path, where):
    import shutil

    source = tmp_path / "src"
    shutil.copytree(world / "sources" / "treesatai", source)
    before = tree_files(source)
    out = {"same": source, "inside": source / "out", "holding": tmp_path}[where]
    r = subprocess.run([sys.executable, "-m", "cli.data", "build", "treesatai", "--source", str(source), "--recipe",
                        str(ROOT / "recipes" / "demo.toml"), "--catalog", str(world / "stac" / "items.ndjson"),
                        "--out", str(out), "--workers", "0"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "--out" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert tree_files(source) == before and not (source / "out").exists()


def test_clean_up_removes_only_our_own_leftovers(built, world, tmp_path):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(built[0], out)
    (out / ".notes.tmp").write_text("a user's file")
    (out / "sentinel" / ".x.h5.omnisat-123.tmp").write_text("a killed build's")
    build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe_for(str(world / "stac" / "items.ndjson")), out,
                                workers=0))
    assert (out / ".notes.tmp").read_text() == "a user's file" and not (
        out / "sentinel" / ".x.h5.omnisat-123.tmp"
    ).exists()


def test_an_empty_series_fails_the_tile_and_a_corrected_recipe_rebuilds(world, tmp_path):
    """A misspelt collection finds nothing: every tile fails with the reason (exit 1 from the CLI, no
    PASSED from verify); the rerun with the right recipe builds them all, none skipped as complete."""
    import dataclasses

    catalog = str(world / "stac" / "items.ndjson")
    good = recipe_for(catalog)
    wrong = dataclasses.replace(good, s2=dataclasses.replace(good.s2, collection="sentinel-2-l2"))
    out = tmp_path / "out"
    report = build_treesatai(BuildConfig(world / "sources" / "treesatai", wrong, out, workers=0))
    assert report.done == [] and len(report.failed) == 8
    assert all("no Sentinel-2 frame" in why and "sentinel-2-l2" in why for why in report.failed.values())
    again = build_treesatai(BuildConfig(world / "sources" / "treesatai", good, out, workers=0))
    assert len(again.done) == 8 and again.skipped == []
    # a complete tile built with another recipe is rebuilt, not skipped
    changed = dataclasses.replace(good, s2=dataclasses.replace(good.s2, resampling="nearest"))
    third = build_treesatai(BuildConfig(world / "sources" / "treesatai", changed, out, workers=0))
    assert len(third.done) == 8 and third.skipped == []
    assert build_treesatai(BuildConfig(world / "sources" / "treesatai", changed, out, workers=0)).skipped != []


def test_verify_without_a_single_estimate_does_not_pass():
    from omnisat_data.verify.treesatai_ts import TileCheck, summarise

    report = summarise([TileCheck(name="t")], 0.5, 0.2)
    assert report["summary"]["problems"] == 0 and not report["summary"]["passed"]
    assert "alignment is unknown" in report["summary"]["not_measured"]


@pytest.mark.slow
def test_a_stalled_connection_is_bounded_by_the_recipe_timeout(built, world, tmp_path):
    """An asset server that holds every answer for one scene: the read gives up after the recipe's
    timeout (with retries), the tiles that scene covers fail naming the item, the build ends."""
    import dataclasses

    from omnisat_data.sim.serve.assets import AssetServer
    from omnisat_data.sim.serve.world import rewrite_items

    with AssetServer(world) as assets:
        items_file = rewrite_items(world / "stac" / "items.ndjson", assets.url, tmp_path / "items.ndjson")
        items = [json.loads(line) for line in items_file.read_text().splitlines()]
        with h5py.File(next((built[0] / "sentinel").glob("*.h5")), "r") as f:
            used = f["sen-2-products"][0].decode()
        s2 = next(i for i in items if i["properties"].get("s2:product_uri") == used + ".SAFE")
        assets.faults.stall(f"data/sentinel-2-l2a/{s2['id']}/B04.tif", 60)
        recipe = recipe_for(str(items_file))
        recipe = dataclasses.replace(recipe, s2=dataclasses.replace(recipe.s2, timeout_s=2.0))
        report = build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe, tmp_path / "out", workers=0))
    assert report.lost and all(s2["id"] == d["item"] for lost in report.lost.values() for d in lost), report.lost
    assert len(report.done) == 8 and report.failed == {}


def test_a_twice_listed_item_and_a_signed_href_leave_no_trace(built, world, tmp_path):
    """An item listed twice is used once; a signed href (its token in the query) that fails to read
    fails its tiles with a reason that keeps the URL but not the token, in the report and on screen."""
    from omnisat_data.sim.serve.assets import AssetServer
    from omnisat_data.sim.serve.world import rewrite_items

    with AssetServer(world) as assets:
        items_file = rewrite_items(world / "stac" / "items.ndjson", assets.url, tmp_path / "items.ndjson")
        items = [json.loads(line) for line in items_file.read_text().splitlines()]
        s1 = next(
            i for i in items if i["collection"] == "sentinel-1-rtc" and i["properties"]["datetime"].startswith("2022")
        )
        broken = json.loads(json.dumps(s1))
        parts = s1["assets"]["vv"]["href"].split("/")[-2].split("_")  # the ESA name in the path, another datatake
        product = "_".join(parts[:7] + ["EEEEEE"] + parts[8:])
        broken["id"] = product.rsplit("_", 1)[0] + "_rtc"
        broken["properties"].pop("s1:product_identifier", None)
        for pol in ("vv", "vh"):  # a port nothing listens on: refused at once
            broken["assets"][pol]["href"] = f"http://127.0.0.1:9/{product}/{pol}.tif?se=2026-12-02&sig=TOPSECRET"
        items_file.write_text("".join(json.dumps(i) + "\n" for i in items + [s1, broken]))
        out = tmp_path / "out"
        r = subprocess.run(_cli_build(world / "sources" / "treesatai", _recipe_file(tmp_path, str(items_file), 5000),
                                      out), capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = (out / "build-report.json").read_text()
    assert "TOPSECRET" not in report and "TOPSECRET" not in r.stdout + r.stderr
    assert broken["id"] in report and f"127.0.0.1:9/{product}/v" in report
    for h5 in (out / "sentinel").glob("*.h5"):
        with h5py.File(h5, "r") as f:
            products = [p.decode() for p in f["sen-1-des-products"][()]] + [
                p.decode() for p in f["sen-1-asc-products"][()]
            ]
            assert len(products) == len(set(products))  # the twice-listed item once


@pytest.mark.slow
def test_ctrl_c_stops_a_build_in_a_few_lines_and_the_rerun_completes_it(world, tmp_path):
    source = world / "sources" / "treesatai"
    recipe = _recipe_file(tmp_path, str(world / "stac" / "items.ndjson"), 30)
    out = tmp_path / "out"
    cmd = _cli_build(source, recipe, out)
    cmd[cmd.index("--workers") + 1] = "2"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "stac" / "items").glob("*.json"))) < 1:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: every process of the group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err and len(err.strip().splitlines()) <= 3, err[-2000:]
    r = subprocess.run(_cli_build(source, recipe, out), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and json.loads((out / "build-report.json").read_text())["tiles"]["failed"] == 0


# -- one read per scene for the whole build; the stage ----------------------------------------------------

def test_a_scene_is_read_once_for_every_batch_that_needs_it():
    """However finely the tiles are batched, each acquisition is one read over all of them (so a block that
    tiles anywhere in the build share is fetched once); a read whose values would be too large is cut in
    batch order."""
    from omnisat_data.build.engine import Batch, scene_reads
    from omnisat_data.build.plan import Unit
    from omnisat_data.build.sentinel import ReadSpec
    from omnisat_data.geo.grid import Grid
    from omnisat_data.geo.tile import Tile

    def acquisition(day: int) -> Acquisition:
        return Acquisition(f"item-{day}", f"S2A_MSIL2A_202206{day:02d}T103021_N0400_R108_T32ULU_x", "s2",
                           dt.datetime(2022, 6, day, tzinfo=dt.UTC), (("B02", f"/b{day}.tif"),))

    scenes = [acquisition(d) for d in (3, 1, 2)]
    grid = Grid.from_origin("EPSG:32632", 400000.0, 5400000.0, 10.0, (6, 6))
    tile = Tile(name="t", vhr=grid, sentinel=grid, year=2022)
    # 1,000 batches of one tile; the first scene covers the first 600 tiles, the others all of them
    batches = [Batch("2022", [tile], 2022, [Unit(s, (0,)) for s in scenes if b < 600 or s is not scenes[0]])
               for b in range(1000)]
    spec = ReadSpec(("B02",))  # 144 bytes of float32 per tile: 100 tiles fit in 14,400
    reads = scene_reads(batches, {"s2": spec})
    assert [(r.source.item_id, len(r.members)) for r in reads] == [("item-1", 1000), ("item-2", 1000), ("item-3", 600)]
    parts = scene_reads(batches, {"s2": spec}, limit=14_400)
    assert [len(r.members) for r in parts if r.source.item_id == "item-3"] == [100] * 6
    assert [r.members[0][0] for r in parts][:4] == [0, 0, 0, 100]  # in the order of the first batch served


def test_a_build_killed_mid_read_keeps_its_staged_reads_and_the_rerun_reads_only_the_rest(built, world, tmp_path,
                                                                                        monkeypatch):
    from omnisat_data.build import treesatai_ts
    from omnisat_data.build.stage import STAGE

    recipe = recipe_for(str(world / "stac" / "items.ndjson"), group_size_m=30)  # tiles in many batches
    cfg = BuildConfig(world / "sources" / "treesatai", recipe, tmp_path / "out", workers=0, batch_tiles=1)
    finish = treesatai_ts.finish_group
    calls = []

    def killed_at_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return finish(*args, **kwargs)

    monkeypatch.setattr(treesatai_ts, "finish_group", killed_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        build_treesatai(cfg)
    monkeypatch.setattr(treesatai_ts, "finish_group", finish)
    staged = list((cfg.out / STAGE).rglob("*.npy"))
    assert staged and not list(cfg.out.rglob("*.tmp"))
    # how bytes are fetched is not what values follow from: a rerun at another concurrency uses the stage
    import dataclasses

    faster = dataclasses.replace(recipe, s2=dataclasses.replace(recipe.s2, concurrency=2),
                                 s1=dataclasses.replace(recipe.s1, concurrency=2))
    report = build_treesatai(dataclasses.replace(cfg, recipe=faster))
    assert report.failed == {} and len(report.skipped) == 2
    assert report.blocks.read < built[1].blocks.read  # the staged scenes were not read again
    assert not (cfg.out / STAGE).exists()  # removed once every batch is written
    assert tree_files(cfg.out) == tree_files(built[0])


def test_tasks_mix_heavy_and_light_scenes_and_keep_local_reads_alone():
    from omnisat_data.build.engine import Read, tasks

    remote = [Read(Acquisition(f"i{k}", "p", "s2", dt.datetime(2022, 6, 1 + k, tzinfo=dt.UTC),
                               (("B02", f"https://x/{k}.tif"),)), ()) for k in range(5)]
    assert tasks(remote, [0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]  # dealt, not [0, 1, 2], [3, 4]
    assert tasks(remote, list(range(5)), 1) == [[0, 1, 2, 3], [4]]
    local = [Read(Acquisition("i", "p", "s2", dt.datetime(2022, 6, 1, tzinfo=dt.UTC), (("B02", "/x.tif"),)), ())] * 3
    assert tasks(local, [0, 1, 2], 2) == [[0], [1], [2]]
