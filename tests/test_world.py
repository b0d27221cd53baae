"""The synthetic world: COGs as declared by their items, pixels equal to the analytic field, sources as specified."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.windows import Window

from omnisat_data.geo.grid import Grid
from omnisat_data.sim.world import render
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.field import Field
from omnisat_data.sim.world.legend import S2_BANDS, S2_RESOLUTION
from omnisat_data.stac.gdal import gdal_http_env


def _items(world):
    lines = (world / "stac" / "items.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_cog_opens_as_its_item_declares(world):
    items = _items(world)
    checked = 0
    for item in items:
        for asset in item["assets"].values():
            path = (world / "stac" / asset["href"]).resolve()
            with rasterio.open(path) as ds:
                assert (
                    ds.crs.to_epsg()
                    == int(item["properties"]["proj:code"].split(":")[1])
                    == item["properties"]["proj:epsg"]
                )
                assert list(ds.transform)[:6] == pytest.approx(asset["proj:transform"][:6], abs=1e-9)
                assert [ds.height, ds.width] == asset["proj:shape"]
                assert ds.profile["tiled"], f"{path} is not tiled"
                block = ds.block_shapes[0][0]
                assert block in (128, 512)
                if max(ds.height, ds.width) > block:
                    assert ds.overviews(1), f"{path} has no overviews"
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
                bands = asset.get("raster:bands", [])
                assert ds.dtypes[0] == bands[0]["data_type"]
                if "nodata" in bands[0]:
                    assert ds.nodata == bands[0]["nodata"]
            checked += 1
    assert checked == sum(len(i["assets"]) for i in items) > 900


def test_items_validate_with_pystac(world):
    """Against the STAC core schemas pystac ships (extension schemas need the network; their fields are
    checked by the tests above and below)."""
    items = _items(world)
    by_collection = {}
    for d in items:
        by_collection.setdefault(d["collection"], d)
    assert set(by_collection) == {"sentinel-2-l2a", "sentinel-1-rtc", "aerial-cir-20cm", "spot-rgb-1m", "naip"}
    for d in by_collection.values():
        item = pystac.Item.from_dict({**d, "stac_extensions": []})
        assert item.validate(), item.id
        assert "https://stac-extensions.github.io/projection/v2.0.0/schema.json" in d["stac_extensions"]
    for path in (world / "stac" / "collections").glob("*.json"):
        doc = json.loads(path.read_text())
        assert pystac.Collection.from_dict({**doc, "stac_extensions": []}).validate()


def test_item_conventions(world, truth):
    items = {d["id"]: d for d in _items(world)}
    for item_id, t in truth["s2"].items():
        props = items[item_id]["properties"]
        assert props["s2:processing_baseline"] == t["baseline"]
        assert (t["datetime"] >= "2022-01-25") == (float(t["baseline"]) >= 4.0)
        assert props["s2:product_uri"] == t["product"] + ".SAFE"
        assert t["product"].split("_")[2][:8] == t["datetime"][:10].replace("-", "")  # OmniSat reads token 2
        assert props["eo:cloud_cover"] == pytest.approx(t["cloud_cover"], abs=1e-3)
        assert set(items[item_id]["assets"]) == set(S2_BANDS) | {"SCL", "CLD", "SNW"}
    for product, t in truth["s1"].items():  # Planetary Computer's RTC ids: the ESA name less its unique id, + _rtc
        item = items[product.rsplit("_", 1)[0] + "_rtc"]
        props = item["properties"]
        assert product.startswith("S1A_IW_GRDH_1SDV_") and product.split("_")[4][:8] == t["datetime"][:10].replace(
            "-", ""
        )
        assert all(f"/{product}/" in a["href"] for a in item["assets"].values())  # the ESA name is in the path
        assert props["sat:orbit_state"] == t["direction"]
        assert props["sar:polarizations"] == ["VV", "VH"]


def test_sentinel1_grids_are_their_own_and_slices_exist(truth):
    offsets = {
        (round(g["grid"]["transform"][2] % 10, 3), round(g["grid"]["transform"][5] % 10, 3))
        for g in truth["s1"].values()
    }
    assert all(ox != 0 and oy != 0 for ox, oy in offsets)  # never on the 10 m lattice
    assert len(offsets) > len(truth["s1"]) // 2  # each product has its own grid
    assert any(t["slice"] == 2 for t in truth["s1"].values())
    assert {t["direction"] for t in truth["s1"].values()} == {"ascending", "descending"}


def _check_pixels(read_href, scene, grid: Grid, expected_fn, window: Window, tol: float):
    with rasterio.Env(**gdal_http_env()), rasterio.open(read_href) as ds:
        data = ds.read(window=window)
        sub = Grid(ds.crs.to_string(), ds.window_transform(window), (int(window.height), int(window.width)))
    x, y = sub.pixel_centres()
    expected = expected_fn(x, y)
    expected = expected if expected.ndim == 3 else expected[None]
    diff = np.abs(data.astype(np.float64) - expected.astype(np.float64))
    assert diff.max() <= tol, f"{read_href}: max |read - field| = {diff.max()}"


def test_pixels_read_over_http_equal_the_analytic_field(world, plan, truth, servers):
    """Pixel centres from the COG's own transform, values from the field: a georeferencing slip cannot pass."""
    field = Field(PRESETS["tiny"])
    base = servers.assets.url
    shifted = [s for s in plan.s2 if s.shift != (0.0, 0.0)]
    cloudy = [s for s in plan.s2 if np.isfinite(s.weather.cloud_threshold) and s.swath_edge is not None]
    offset = [s for s in plan.s2 if s.offset_applied]
    assert shifted and cloudy and offset
    win = Window(30, 40, 24, 20)
    for scene in (shifted[0], cloudy[0], offset[0]):
        for band in ("B04", "B08", "B11", "B01"):
            res = S2_RESOLUTION[band]
            w = win if res < 60 else Window(3, 4, 8, 6)
            _check_pixels(f"{base}/data/sentinel-2-l2a/{scene.item_id}/{band}.tif", scene, scene.band_grid(res),
                          lambda x, y: render.s2_values(field, scene, [band], x, y), w, tol=1)
        for mask in ("SCL", "CLD", "SNW"):
            _check_pixels(
                f"{base}/data/sentinel-2-l2a/{scene.item_id}/{mask}.tif",
                scene,
                scene.band_grid(20),
                lambda x, y: render.s2_mask_values(field, scene, x, y)[mask],
                win,
                tol=1 if mask != "SCL" else 0,
            )
    s1 = next(s for s in plan.s1 if s.shift != (0.0, 0.0))
    for pol, k in (("vv", 0), ("vh", 1)):
        _check_pixels(f"{base}/data/sentinel-1-rtc/{s1.item_id}/{pol}.tif", s1, s1.grid,
                      lambda x, y: render.s1_values(field, s1, x, y)[k], win, tol=1e-6)
    sheet = plan.aerial[0]
    _check_pixels(f"{base}/data/aerial-cir-20cm/{sheet.item_id}/image.tif", sheet, sheet.grid,
                  lambda x, y: render.aerial_values(field, sheet, x, y), Window(200, 300, 64, 48), tol=1)
    _check_pixels(f"{base}/data/spot-rgb-1m/{plan.spot.item_id}/image.tif", plan.spot, plan.spot.grid,
                  lambda x, y: render.spot_values(field, plan.spot, x, y), Window(500, 700, 64, 48), tol=1)


def test_baseline_offset_and_nodata_are_rendered(world, plan):
    field = Field(PRESETS["tiny"])
    scene = next(s for s in plan.s2 if s.offset_applied and s.swath_edge is not None)
    with rasterio.open(world / "data" / "sentinel-2-l2a" / scene.item_id / "B04.tif") as ds:
        dn = ds.read(1)
        x, y = scene.grid.pixel_centres()
    valid = render.s2_valid(scene, field, x, y)
    assert (dn[~valid] == 0).all() and (~valid).any()
    assert dn[valid].min() > 1000  # +1000 DN offset of baseline >= 04.00


def test_treesatai_source_tree(world, truth):
    root = world / "sources" / "treesatai"
    labels = json.loads((root / "labels" / "TreeSatBA_v9_60m_multi_labels.json").read_text())
    train = (root / "train_filenames.lst").read_text().split()
    test = (root / "test_filenames.lst").read_text().split()
    assert len(test) >= 2 and len(train) >= 2 and not set(train) & set(test)
    assert set(train) | set(test) == set(labels) == {p.name for p in (root / "aerial" / "60m").glob("*.tif")}
    footprints = json.loads((root / "geojson" / "bb_60m.GeoJSON").read_text())
    assert {f["properties"]["IMG_ID"] + ".tif" for f in footprints["features"]} == set(labels)
    genera = {"Abies", "Acer", "Alnus", "Betula", "Cleared", "Fagus", "Fraxinus", "Larix", "Picea", "Pinus",
              "Populus", "Prunus", "Pseudotsuga", "Quercus", "Tilia"}
    for name, pairs in labels.items():
        assert {g for g, _ in pairs} <= genera
        assert sum(f for _, f in pairs) == pytest.approx(1.0, abs=0.01)
        assert name.startswith(pairs[0][0])  # named after the dominant genus
        with rasterio.open(root / "aerial" / "60m" / name) as ds:
            assert (ds.count, ds.height, ds.width, ds.dtypes[0]) == (4, 304, 304, "uint8")
            assert ds.crs.to_epsg() == 25832 and ds.transform.a == 0.2000000000001 and ds.nodata is None
            tile = ds.read()
            t = truth["treesatai_tiles"][name[:-4]]
        with rasterio.open(world / "data" / "aerial-cir-20cm" / t["sheet"] / "image.tif") as sheet:
            col, row = ~sheet.transform @ (t["grid"]["transform"][2], t["grid"]["transform"][5])
            assert (sheet.read(window=Window(round(col), round(row), 304, 304)) == tile).all()
        with rasterio.open(root / "s2" / "60m" / name) as ds:
            assert (ds.count, ds.height, ds.width, ds.dtypes[0], ds.crs.to_epsg()) == (12, 6, 6, "uint16", 32632)
        with rasterio.open(root / "s1" / "60m" / name) as ds:
            assert (ds.count, ds.height, ds.width, ds.dtypes[0], ds.nodata) == (3, 6, 6, "float32", -9999)
            assert ds.read(1).mean() < 0  # dB


def test_pastis_source_tree(world, plan):
    root = world / "sources" / "PASTIS-R"
    meta = json.loads((root / "metadata.geojson").read_text())
    assert meta["crs"]["properties"]["name"].endswith("2154")
    for f in meta["features"]:
        p = f["properties"]
        pid = p["ID_PATCH"]
        s2 = np.load(root / "DATA_S2" / f"S2_{pid}.npy")
        assert s2.dtype == np.int16 and s2.shape[1:] == (10, 128, 128) and s2.shape[0] == len(p["dates-S2"])
        dates = list(p["dates-S2"].values())
        assert dates == sorted(set(dates)), "PASTIS date lists are ascending and unique (spec 7.2)"
        for key in ("S1A", "S1D"):
            s1 = np.load(root / f"DATA_{key}" / f"{key}_{pid}.npy")
            assert s1.dtype == np.float16 and s1.shape[1:] == (3, 128, 128) and s1.shape[0] == len(p[f"dates-{key}"])
            dates = list(p[f"dates-{key}"].values())
            assert dates == sorted(set(dates)) and list(p[f"dates-{key}"]) == [str(i) for i in range(len(dates))]
        target = np.load(root / "ANNOTATIONS" / f"TARGET_{pid}.npy")
        assert target.shape == (3, 128, 128) and target.max() < 20
        inst = np.load(root / "INSTANCE_ANNOTATIONS" / f"INSTANCES_{pid}.npy")
        assert inst.shape == (128, 128) and ((inst == 0) == (target[0] == 0)).all()
        assert p["N_Parcel"] == len(np.unique(inst)) - 1 and p["TILE"] == "t32ulu"
        ring = np.array(f["geometry"]["coordinates"][0][0])
        side = np.hypot(*(ring[1] - ring[0]))
        assert 1270 < side < 1290  # a 1280 m UTM square seen in Lambert-93


def test_earth_search_style_items(plan):
    """Earth Search asset keys, with the -1000 DN offset expressed as raster:bands offset, not pre-applied."""
    from omnisat_data.sim.world import stac

    for scene in (next(s for s in plan.s2 if s.offset_applied), next(s for s in plan.s2 if not s.offset_applied)):
        item = stac.s2_item(scene, 12.5, plan.cfg.aoi_top, style="earth-search").to_dict()
        assert {"blue", "red", "nir", "nir08", "swir16", "swir22", "scl"} <= set(item["assets"])
        assert "B04" not in item["assets"]
        assert item["properties"]["earthsearch:boa_offset_applied"] is False
        red = item["assets"]["red"]
        assert red["href"].endswith(f"/{scene.item_id}/B04.tif")
        assert red["raster:bands"][0]["scale"] == 0.0001
        assert red["raster:bands"][0]["offset"] == (-0.1 if scene.offset_applied else 0.0)
        assert item["id"].endswith(f"_{scene.datetime:%Y%m%d}_0_L2A")


def test_every_treesatai_genus_has_its_own_signature():
    """The 15 forest classes differ over the year once overall brightness (the texture's gain) is divided
    out: Sentinel-2 spectra every 20 days plus log backscatter. The nearest pair is 1.58 apart; a first
    draft with Picea and Pseudotsuga at 0.85 made those two the classes the demo model confused most."""
    from omnisat_data.sim.world.legend import LEGEND, TREESATAI_GENERA, backscatter_at, spectra_at

    forest = [i for i, c in enumerate(LEGEND) if c.region == "forest"]
    assert sorted(LEGEND[i].genus for i in forest) == sorted(TREESATAI_GENERA)
    days = np.arange(10, 360, 20)
    s2 = [S2_BANDS.index(b) for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")]
    optical = np.stack([spectra_at(d)[forest][:, s2] for d in days], axis=1)  # (classes, dates, bands)
    optical /= optical.mean(axis=(1, 2), keepdims=True)
    radar = np.stack([backscatter_at(d)[forest] for d in days], axis=1)
    signature = np.concatenate([optical.reshape(len(forest), -1), 0.3 * np.log(radar).reshape(len(forest), -1)], axis=1)
    distance = np.linalg.norm(signature[:, None] - signature[None], axis=2)
    nearest = distance[~np.eye(len(forest), dtype=bool)].min()
    assert nearest >= 1.5, nearest


@pytest.mark.parametrize("res", [10.0, 20.0])
def test_a_coarse_pixel_mixes_land_cover_by_its_box_share(res):
    """A Sentinel pixel holds each class in proportion to its share of the pixel's box (mixed pixels at
    stand edges and corners), as the texture goes through the same box PSF: counted here on a 60 x 60
    grid of hard (nearest-seed) points inside the box, against the closed form / polygon clipping."""
    field = Field(PRESETS["demo"])
    rng = np.random.default_rng(0)
    x = field.x0 + rng.uniform(100, field.forest_right - field.x0 - 100, 400)
    y = field.y0 - rng.uniform(100, 1500, 400)
    weights = field.class_weights(x, y, res)
    offsets = ((np.arange(60) + 0.5) / 60 - 0.5) * res
    ox, oy = np.meshgrid(offsets, offsets)
    hard, _ = field.land_cover(x[:, None] + ox.ravel(), y[:, None] + oy.ravel())
    counted = np.stack([(hard == c).mean(axis=1) for c in range(len(weights))])
    mixed = counted.max(axis=0) < 1
    assert mixed.sum() > 50  # edges and corners are exercised, not only pure pixels
    assert np.allclose(weights.sum(axis=0), 1.0)
    assert np.abs(weights - counted).max() < 0.01  # the count's own resolution: one row of 60 points
