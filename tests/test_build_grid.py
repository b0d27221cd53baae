"""build grid: your own tiles, given as GeoJSON polygons in a CRS none of the sources use (ETRS89-LAEA,
EPSG:3035), built into both formats from the tiny world; values against independent computations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from conftest import assert_one_line_error, run_cli
from pyproj import Transformer
from shapely.geometry import Polygon
from world_truth import exact_area_average, expected_s1, expected_s2_series

from omnisat_data.build.own_area import GridConfig, build_grid
from omnisat_data.build.own_area import dry_run as grid_dry_run
from omnisat_data.build.own_tiles import tiles_from_bbox
from omnisat_data.build.plan import PLAN
from omnisat_data.formats.pastis import read_pastis
from omnisat_data.geo.grid import Grid
from omnisat_data.recipe import load_recipe
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.field import Field

ROOT = Path(__file__).resolve().parent.parent
LAEA = "EPSG:3035"


def _geojson(path: Path, squares: list[tuple[dict, float, float, float]]) -> Path:
    """Squares (properties, centre x, centre y, side) in EPSG:3035, as a GeoJSON declaring that CRS."""
    features = []
    for props, cx, cy, side in squares:
        h = side / 2
        ring = [[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h], [cx - h, cy - h]]
        features.append(
            {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features,
                                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3035"}}}))
    return path


def _centre(grid: Grid) -> tuple[float, float]:
    left, bottom, right, top = grid.bounds
    return Transformer.from_crs(grid.crs, LAEA, always_xy=True).transform((left + right) / 2, (bottom + top) / 2)


def _grid_recipe(world: Path):
    recipe = load_recipe(ROOT / "recipes" / "grid-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    return recipe


@pytest.fixture(scope="module")
def own_treesatai(world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    sheets = []
    for path in sorted((world / "data" / "aerial-cir-20cm").glob("*/image.tif")):
        with rasterio.open(path) as src:
            sheets.append(Grid(src.crs.to_string(), src.transform, src.shape))
    (x0, y0), (x1, y1) = _centre(sheets[0]), _centre(sheets[1])
    squares = [({"name": "mine/a"}, x0, y0, 60.0), ({"name": "mine/b"}, x0 + 30, y0 - 20, 60.0),
               ({"name": "mine/c"}, x1, y1, 60.0),
               ({"name": "wide"}, x1, y1, 100.0),  # not a 60 m tile: left out
               ({"name": "bare"}, x0 + 2000, y0, 60.0)]  # no aerial image there: fails alone
    source = _geojson(tmp / "tiles.geojson", squares)
    # class polygons in yet another CRS (lon/lat): a stand over half of tile a, one over all of tile c
    to_lonlat = Transformer.from_crs(LAEA, "EPSG:4326", always_xy=True)
    stands = [("Quercus", x0 - 40, y0 - 40, x0, y0 + 40), ("Fagus", x1 - 50, y1 - 50, x1 + 50, y1 + 50)]
    features = [{"type": "Feature", "properties": {"genus": genus}, "geometry": {"type": "Polygon", "coordinates": [[
        list(to_lonlat.transform(x, y)) for x, y in ((a, b), (c, b), (c, d), (a, d), (a, b))]]}}
        for genus, a, b, c, d in stands]
    labels = tmp / "stands.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp / "treesatai-ts"
    cfg = GridConfig(_grid_recipe(world), out, tiles=source, crs=LAEA, year=2022, workers=0, labels=labels,
                     label_field="genus")
    return out, build_grid(cfg), cfg


def test_own_treesatai_ts_values_equal_the_world(own_treesatai, world, plan):
    out, report, _ = own_treesatai
    assert report.failed == {"bare": "no aerial-cir-20cm item of 2022 covers it"} and len(report.done) == 3
    assert any("wide" in k and "not a 60 m square" in v for k, v in report.source_problems.items())
    field = Field(PRESETS["tiny"])
    s2 = sorted((s for s in plan.s2 if s.datetime.year == 2022), key=lambda s: (s.datetime, s.product))
    s1 = [s for s in plan.s1 if s.start.year == 2022]
    for item in sorted((out / "stac" / "items").glob("*.json")):
        meta = json.loads(item.read_text())
        assert meta["id"].startswith("mine_") and meta["properties"]["proj:code"] == LAEA
        grid = Grid(
            LAEA, rasterio.Affine(*meta["properties"]["proj:transform"]), tuple(meta["properties"]["proj:shape"])
        )
        assert grid.shape == (6, 6) and grid.transform.c % 10 == 0 and grid.transform.f % 10 == 0
        with h5py.File(out / "sentinel" / f"{meta['id']}.h5", "r") as f:
            frames, _ = expected_s2_series(field, s2, grid)
            assert [p.decode() for p in f["sen-2-products"][()]] == [s.product for s, _ in frames]
            want = np.stack([e for _, e in frames])
            np.testing.assert_array_equal(np.isnan(f["sen-2-data"][()]), np.isnan(want[:, :10]))
            assert np.nanmax(np.abs(f["sen-2-data"][()] - want[:, :10])) <= 0.5 + 1e-6
            scenes = sorted((s for s in s1 if s.direction == "descending"), key=lambda s: (s.start, s.item_id))
            frames = [e for e in (expected_s1(field, s, grid) for s in scenes) if not np.isnan(e).all()]
            np.testing.assert_allclose(f["sen-1-des-data"][()], np.stack(frames), rtol=2e-6)
        with rasterio.open(out / "aerial" / f"{meta['id']}.tif") as aerial:
            assert aerial.crs.to_string() == LAEA and (aerial.count, aerial.height, aerial.width) == (4, 300, 300)
            assert aerial.transform.c == grid.transform.c and aerial.transform.f == grid.transform.f
            data, vhr = aerial.read(), Grid(LAEA, aerial.transform, (300, 300))
        centre = Transformer.from_crs(LAEA, "EPSG:25832", always_xy=True).transform(*_centre(vhr))
        scene = next(p for p in (world / "data" / "aerial-cir-20cm").glob("*/image.tif")
                     if rasterio.open(p).bounds.left < centre[0] < rasterio.open(p).bounds.right
                     and rasterio.open(p).bounds.bottom < centre[1] < rasterio.open(p).bounds.top)
        with rasterio.open(scene) as src:
            for row, col in np.random.default_rng(1).integers(0, 300, size=(8, 2)):
                assert np.abs(data[:, row, col] - exact_area_average(src, vhr, int(row), int(col))).max() <= 2.0


def test_own_treesatai_ts_tree_labels_and_resume(own_treesatai):
    out, report, cfg = own_treesatai
    to_laea = Transformer.from_crs("EPSG:4326", LAEA, always_xy=True)
    stands = [(f["properties"]["genus"], Polygon([to_laea.transform(*xy) for xy in f["geometry"]["coordinates"][0]]))
              for f in json.loads(cfg.labels.read_text())["features"]]
    names = sorted(p.stem for p in (out / "sentinel").glob("*.h5"))
    listed = sorted(line.removesuffix(".tif") for split in ("train", "val", "test")
                    for line in (out / f"{split}_filenames.lst").read_text().split())
    assert listed == names
    labels = json.loads((out / "labels" / "TreeSatBA_v9_60m_multi_labels.json").read_text())
    assert sorted(labels) == [f"{n}.tif" for n in names]
    assert labels["mine_c.tif"] == [["Fagus", 1.0]]  # a stand over the whole tile
    for name in names:  # each stand's share of the tile's square, computed here in the tile CRS
        props = json.loads((out / "stac" / "items" / f"{name}.json").read_text())["properties"]
        square = Grid(LAEA, rasterio.Affine(*props["proj:transform"]), tuple(props["proj:shape"])).footprint
        want = {genus: stand.intersection(square).area / square.area for genus, stand in stands}
        got = dict(labels[f"{name}.tif"])
        assert set(got) == {g for g, share in want.items() if round(share, 4) > 0}, name
        assert all(abs(got[g] - want[g]) < 1e-4 for g in got), (name, got, want)
    assert 0.3 < dict(labels["mine_a.tif"])["Quercus"] < 0.7  # half of tile a, up to its snapping to 10 m
    for name in names:
        assert (out / "s1-asc" / f"{name}.pth").is_file() and (out / "aerial" / "60m" / f"{name}.tif").is_file()
    again = build_grid(cfg)
    assert sorted(again.skipped) == names and again.done == [] and list(again.failed) == ["bare"]


def test_own_pastis_hd_from_the_same_kind_of_file(world, tmp_path):
    patch = read_pastis(world / "sources" / "PASTIS-R").patches[0]
    source = _geojson(tmp_path / "patches.geojson", [({"ID_PATCH": 777}, *_centre(patch.sentinel), 1280.0)])
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    recipe = dataclasses.replace(recipe, period=PRESETS["tiny"].pastis_span)
    out = tmp_path / "PASTIS-HD"
    report = build_grid(GridConfig(recipe, out, tiles=source, year=2019, workers=0))
    assert report.failed == {} and report.done == [777] and report.series_done == [777]
    # the tree reads back as PASTIS: the footprint in Lambert-93 and TILE give back the patch grid (UTM 32N)
    back = read_pastis(out)
    assert back.problems == () and back.patches[0].sentinel == patch.sentinel
    props = json.loads((out / "metadata.geojson").read_text())["features"][0]["properties"]
    assert props["TILE"] == "t32ulu" and 1 <= props["Fold"] <= 5
    # where the world's own PASTIS-R renders the same thing (10 m bands), the same values on the same days
    ours, days = np.load(out / "DATA_S2" / "S2_777.npy"), list(props["dates-S2"].values())
    source_meta = json.loads((world / "sources" / "PASTIS-R" / "metadata.geojson").read_text())["features"][0]
    source_days = list(source_meta["properties"]["dates-S2"].values())
    theirs = np.load(world / "sources" / "PASTIS-R" / "DATA_S2" / f"S2_{patch.id}.npy")
    np.testing.assert_array_equal(ours[:, [0, 1, 2, 6]], theirs[[source_days.index(d) for d in days]][:, [0, 1, 2, 6]])
    with rasterio.open(out / "DATA_SPOT" / "PASTIS_SPOT6_RVB_1M00_2019" / "SPOT6_RVB_1M00_2019_777.tif") as spot:
        assert spot.transform == patch.vhr.transform and spot.count == 3
    for name in ("S2", "S1A", "S1D"):
        assert set(json.loads((out / f"NORM_{name}_patch.json").read_text())) == {f"Fold_{props['Fold']}"}
    # AnySat's normalisation files: every fold, its estimator (per-patch mean and unbiased std, averaged)
    import torch

    for modality, array in (
        ("s2", ours),
        ("s1a", np.load(out / "DATA_S1A" / "S1A_777.npy")),
        ("s1", np.load(out / "DATA_S1A" / "S1A_777.npy")),
        (
            "spot",
            rasterio.open(out / "DATA_SPOT" / "PASTIS_SPOT6_RVB_1M00_2019" / "SPOT6_RVB_1M00_2019_777.tif").read()[
                None
            ],
        ),
    ):
        norm = json.loads((out / f"NORM_{modality}_patch.json").read_text())
        data = torch.from_numpy(array.astype(np.float32)).permute(1, 0, 2, 3)
        assert sorted(norm) == [f"Fold_{k}" for k in range(1, 6)]
        np.testing.assert_allclose(norm["Fold_1"]["mean"], data.mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)
        np.testing.assert_allclose(norm["Fold_1"]["std"], data.std(dim=(1, 2, 3)).numpy(), rtol=1e-4)
    # unlabelled: all-background targets and no instances, as the released arrays' dtypes and shapes
    target, instances = (
        np.load(out / "ANNOTATIONS" / "TARGET_777.npy"),
        np.load(out / "INSTANCE_ANNOTATIONS" / "INSTANCES_777.npy"),
    )
    assert target.dtype == np.uint8 and target.shape == (3, 128, 128) and not target.any()
    assert instances.dtype == np.int64 and instances.shape == (128, 128) and not instances.any()
    assert props["N_Parcel"] == 0 and props["Parcel_Cover"] == 0.0


def test_bbox_grid_is_aligned():
    own = tiles_from_bbox((7.60, 48.58, 7.61, 48.59), 60.0, None, 0.2, 2022)
    assert own.tiles[0].sentinel.crs == "EPSG:32632" and len(own.tiles) == len({t.name for t in own.tiles})
    lefts = {t.sentinel.transform.c for t in own.tiles}
    assert all(v % 60 == 0 for v in lefts) and len(own.tiles) == len(lefts) * len(
        {t.sentinel.transform.f for t in own.tiles}
    )
    assert all(t.vhr.shape == (300, 300) and t.sentinel.shape == (6, 6) for t in own.tiles)


@pytest.mark.parametrize("args, message", [
    (["--bbox", "7.6,48.58,7.61,48.59", "--tiles", "x.geojson"], "not both"),
    (["--bbox", "7.6,48.58,7.61", "--crs", "EPSG:32632"], "--bbox"),
    (["--bbox", "7.6,48.58,7.61,48.59", "--crs", "EPSG:4326"], "not projected"),
    (["--tiles", "missing.geojson"], "missing.geojson"),
])
def test_bad_grid_input_is_one_line(world, tmp_path, args, message):
    r = run_cli("cli.data", "build", "grid", "--recipe", ROOT / "recipes" / "grid-demo.toml", "--out", tmp_path / "o",
                *args, cwd=tmp_path)
    assert_one_line_error(r, message)


def test_pastis_hd_grid_must_be_utm(world, tmp_path):
    r = run_cli("cli.data", "build", "grid", "--recipe", ROOT / "recipes" / "pastis-hd-demo.toml", "--bbox",
                "7.6,48.58,7.61,48.59", "--crs", LAEA, "--out", tmp_path / "o")
    assert_one_line_error(r, "UTM grid")


def _own_tile(left: float, top: float, size: float, crs: str = "EPSG:32632"):
    from omnisat_data.build.own_tiles import make_tile

    return make_tile("t", left + size / 2, top - size / 2, crs, size, 0.2 if size == 60 else 1.0, 2022)


def _polygon_file(path: Path, polygons: list[tuple[object, list]], crs: str = "EPSG:32632") -> Path:
    features = [
        {"type": "Feature", "properties": {"cls": value}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        for value, ring in polygons
    ]
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": features,
                "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:{crs.replace(':', '::')}"}},
            }
        )
    )
    return path


def test_class_fractions_are_the_polygons_area_shares(tmp_path):
    from omnisat_data.build.own_labels import class_fractions, read_class_polygons, treesatai_labels

    left, top = 500000.0, 5400000.0
    tile = _own_tile(left, top, 60.0)
    rect = lambda a, b, c, d: [[a, b], [c, b], [c, d], [a, d], [a, b]]  # noqa: E731
    path = _polygon_file(tmp_path / "classes.geojson", [
        ("Picea", rect(left, top - 60, left + 30, top)),  # the western half: 0.5
        ("Fagus", [[left + 30, top], [left + 60, top], [left + 60, top - 30], [left + 30, top]]),  # a triangle: 0.125
        ("Picea", rect(left + 54, top - 66, left + 66, top - 54)),  # 6 x 6 m of a square across the corner: 0.01
        ("Abies", rect(left + 100, top - 60, left + 160, top)),  # another tile's
    ])
    polygons = read_class_polygons(path, "cls")
    assert class_fractions(polygons, tile) == [["Picea", 0.51], ["Fagus", 0.125]]
    assert treesatai_labels(None, [tile]) == {"t.tif": [["unlabelled", 1.0]]}


def test_parcel_rasters_equal_an_independent_rasterisation(tmp_path):
    from shapely import contains_xy

    from omnisat_data.build.own_labels import pastis_annotations, read_class_polygons

    left, top = 600000.0, 5300000.0
    tile = _own_tile(left, top, 1280.0)
    rng = np.random.default_rng(3)
    parcels = []
    for _ in range(12):  # irregular quadrilaterals, a few reaching out of the patch
        cx, cy = rng.uniform(left + 100, left + 1180), rng.uniform(top - 1180, top - 100)
        r = rng.uniform(60, 250, 4)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 4))
        ring = [[float(cx + r[i] * np.cos(a)), float(cy + r[i] * np.sin(a))] for i, a in enumerate(angles)]
        parcels.append((int(rng.integers(1, 19)), ring + [ring[0]]))
    parcels.append(
        (
            5,
            [
                [left + 1200, top - 200],
                [left + 1600, top - 200],
                [left + 1600, top - 400],
                [left + 1200, top - 400],
                [left + 1200, top - 200],
            ],
        )
    )  # 80 of its 400 m width inside: void
    target, instances = pastis_annotations(
        read_class_polygons(_polygon_file(tmp_path / "p.geojson", parcels), "cls"), tile
    )
    assert target.shape == (3, 128, 128) and target.dtype == np.uint8 and instances.dtype == np.int64
    assert (target == target[0]).all()
    x, y = tile.sentinel.pixel_centres()
    want_class, want_id = np.zeros((128, 128), np.uint8), np.zeros((128, 128), np.int64)
    square = Polygon([(left, top), (left + 1280, top), (left + 1280, top - 1280), (left, top - 1280)])
    for k, (value, ring) in enumerate(parcels):  # later polygons win, as in the file's order
        polygon = Polygon(ring)
        inside = contains_xy(polygon, x, y)
        void = polygon.intersection(square).area < 0.5 * polygon.area
        want_class[inside] = 19 if void else value
        want_id[inside] = k + 1
    np.testing.assert_array_equal(target[0], want_class)
    np.testing.assert_array_equal(instances, want_id)
    assert (target[0] == 19).any() and len(np.unique(want_id)) > 10


@pytest.mark.parametrize("value, message", [("maize", "not a PASTIS class id"), (25, "not a PASTIS class id")])
def test_pastis_labels_must_be_class_ids(tmp_path, value, message):
    from omnisat_data.build.own_labels import pastis_annotations, read_class_polygons
    from omnisat_data.formats.treesatai import SourceError

    left, top = 600000.0, 5300000.0
    path = _polygon_file(
        tmp_path / "p.geojson", [(value, [[left, top], [left + 500, top], [left + 500, top - 500], [left, top]])]
    )
    with pytest.raises(SourceError, match=message):
        pastis_annotations(read_class_polygons(path, "cls"), _own_tile(left, top, 1280.0))
    with pytest.raises(SourceError, match="no field 'crop'"):
        read_class_polygons(path, "crop")


def test_naip_like_rgbn_at_60_cm_is_written_as_treesatai_nir_g_b_r_at_20_cm(world, tmp_path):
    """A VHR source coarser than the tile grid, bands in another order (NAIP: R, G, B, NIR at 0.6 m): `bands =
    [4, 2, 3, 1]` writes TreeSatAI's NIR, G, B, R; each 0.2 m pixel is the area average of the 0.6 m pixels
    under it (one source pixel inside, two or four at their edges), against the exact shapely areas."""
    recipe = _grid_recipe(world)
    recipe = dataclasses.replace(recipe, vhr=dataclasses.replace(recipe.vhr, collection="naip", bands=(4, 2, 3, 1)))
    naip = next((world / "data" / "naip").glob("*/image.tif"))
    with rasterio.open(naip) as src:  # the 60 m tile cell (UTM 32N, as the sheet) holding the sheet's centre
        left, bottom, right, top = src.bounds
        x = (left + right) / 2 // 60 * 60 + 30
        y = (bottom + top) / 2 // 60 * 60 + 30
        lon, lat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform([x - 1, x + 1], [y - 1, y + 1])
    report = build_grid(GridConfig(recipe, tmp_path / "naip", bbox=(lon[0], lat[0], lon[1], lat[1]), year=2022,
                                   workers=0))
    assert report.failed == {} and len(report.done) == 1
    name = report.done[0]
    with rasterio.open(tmp_path / "naip" / "aerial" / f"{name}.tif") as aerial, rasterio.open(naip) as src:
        assert aerial.count == 4 and aerial.res == (0.2, 0.2)
        data, vhr = aerial.read(), Grid(aerial.crs.to_string(), aerial.transform, (aerial.height, aerial.width))
        for row, col in np.random.default_rng(2).integers(0, 300, size=(12, 2)):
            want = exact_area_average(src, vhr, int(row), int(col))[[3, 1, 2, 0]]  # R, G, B, NIR -> NIR, G, B, R
            assert np.abs(data[:, row, col] - want).max() <= 1.0 + 1e-9, (row, col, data[:, row, col], want)


def test_the_dry_run_plans_what_the_build_ran_and_writes_nothing(own_treesatai, tmp_path):
    out, report, cfg = own_treesatai
    fresh = tmp_path / "fresh"
    rows, planned = grid_dry_run(dataclasses.replace(cfg, out=fresh))
    assert not fresh.exists()
    sections = json.loads((out / PLAN).read_text())["sections"]
    for name in ("vhr", "sentinel"):  # the build's own plan (the bare tile, which no VHR item covers, has no series)
        assert sorted((r.tiles, r.units) for r in rows if r.section == name) == sorted(
            (len(g["tiles"]), len(g["units"])) for g in sections[name]["groups"])
    assert {s for r in rows if r.section == "sentinel" for s in r.found} == {"s2", "s1-asc", "s1-des"}

    before = (out / PLAN).read_bytes()
    rows, again = grid_dry_run(cfg)  # on the build: only the bare tile is pending, and the plan says no item covers it
    assert again.searches == 0 and again.plan["vhr"].reused and [(r.section, r.tiles, r.units) for r in rows] == [
        ("vhr", 1, 0)]
    assert (out / PLAN).read_bytes() == before


def test_the_dry_run_from_the_command_line(own_treesatai, tmp_path):
    _, _, cfg = own_treesatai
    r = run_cli("cli.data", "build", "grid", "--recipe", ROOT / "recipes" / "grid-demo.toml", "--catalog",
                cfg.recipe.s2.catalog, "--tiles", cfg.tiles, "--crs", LAEA, "--year", "2022", "--out", tmp_path / "o",
                "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "Plan: 4 tiles, 0 already complete" in r.stdout and "sentinel" in r.stdout and "vhr" in r.stdout, r.stdout
    assert not (tmp_path / "o").exists()


def test_an_empty_split_is_reported(own_treesatai, capsys):
    from cli.render import print_grid_report

    out, report, _ = own_treesatai  # three tiles: too few to carve val from train
    counts = {name: len((out / f"{name}_filenames.lst").read_text().split()) for name in ("train", "val", "test")}
    assert report.splits == counts and sum(counts.values()) == 3 and report.empty_splits == ["val"]
    assert json.loads((out / "build-report.json").read_text())["splits"] == counts
    print_grid_report(report, "treesatai-ts", out)
    assert "val_filenames.lst holds no tile" in capsys.readouterr().out
