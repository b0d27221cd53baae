"""Earth Search and Copernicus Data Space end to end, values equal to a build of the same world served as
Planetary Computer does. Earth Search: common-name asset keys and its cloud/snow probability assets, through
the item file and through pgstac. Copernicus Data Space: items as CDSE serves them (the ESA name as id,
B02_10m keys, STAC 1.1 raster:offset and processing:version, lossless JPEG 2000 on s3://eodata), the objects
on a real local S3 endpoint (moto), read by the build through GDAL's /vsis3/ with the endpoint and keys from
the environment."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import recipe_for

from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
from omnisat_data.sim.world.config import PRESETS
from omnisat_data.sim.world.make import make_world

DATASETS = ("sen-2-data", "sen-2-masks", "sen-2-products", "sen-1-asc-data", "sen-1-des-data", "sen-1-asc-products")


def scl_recipe(catalog: str):
    """The demo recipe with SCL masks (CDSE serves no snow/cloud probability assets)."""
    recipe = recipe_for(catalog)
    return dataclasses.replace(recipe, s2=dataclasses.replace(recipe.s2, mask_source="scl", masks=()))


def assert_same_values(reference: Path, other: Path, stems: list[str], datasets=DATASETS) -> None:
    for stem in stems:
        with h5py.File(reference / "sentinel" / f"{stem}.h5") as a, h5py.File(other / "sentinel" / f"{stem}.h5") as b:
            for name in datasets:
                np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=f"{other.name} {stem} {name}")


@pytest.mark.slow
def test_an_earth_search_world_builds_the_same_values_with_its_probability_masks(built, tmp_path_factory):
    out, reference = built  # the Planetary Computer style tiny world, probability masks (SNW, CLD)
    world = tmp_path_factory.mktemp("earth-search") / "world"
    make_world(world, PRESETS["tiny"], workers=2, style="earth-search")
    s2 = next(json.loads(line) for line in (world / "stac" / "items.ndjson").read_text().splitlines()
              if '"sentinel-2-l2a"' in line)
    assert {"blue", "nir08", "scl", "cloud", "snow"} <= set(s2["assets"]) and s2["id"].endswith("_0_L2A")
    from omnisat_data.sim.serve.world import WorldServers

    with WorldServers(world) as servers:  # the embedded item file, and pgstac with its assets over HTTP Range
        for name, catalog in (("embedded", str(world / "stac" / "items.ndjson")), ("pgstac", servers.api.url)):
            es_out = tmp_path_factory.mktemp(f"es-{name}") / "out"
            servers.assets.counters.reset()
            report = build_treesatai(BuildConfig(world / "sources" / "treesatai", recipe_for(catalog), es_out,
                                                 workers=0))
            assert report.failed == {} and report.refused_items == {} and sorted(report.done) == sorted(reference.done)
            assert (servers.assets.counters.requests > 0) == (name == "pgstac")
            assert_same_values(out, es_out, reference.done)


@pytest.fixture(scope="module")
def cdse_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdse") / "world"
    make_world(root, PRESETS["tiny"], workers=2, style="cdse")
    return root


@pytest.mark.slow
def test_a_cdse_world_serves_jpeg2000_on_s3_as_cdse_does(cdse_world):
    items = [json.loads(line) for line in (cdse_world / "stac" / "items.ndjson").read_text().splitlines()]
    s2 = next(i for i in items if i["collection"] == "sentinel-2-l2a")
    assert s2["stac_version"] == "1.1.0" and "s2:product_uri" not in s2["properties"]
    baseline = s2["properties"]["processing:version"]  # "02.13" -> the N0213 token of the id
    assert s2["id"].split("_")[3] == "N" + baseline.replace(".", "")
    b02 = s2["assets"]["B02_10m"]
    assert b02["href"].startswith("s3://eodata/Sentinel-2/MSI/L2A/") and b02["href"].endswith("_B02_10m.jp2")
    assert b02["type"] == "image/jp2" and b02["raster:scale"] == 0.0001 and "proj:code" in b02
    assert "CLD_20m" not in s2["assets"] and "SCL_20m" in s2["assets"]


@pytest.mark.slow
def test_builds_through_vsis3_equal_the_planetary_computer_style_build(cdse_world, world, tmp_path, monkeypatch):
    """Embedded catalog and pgstac API (WorldServers starts the S3 endpoint with them) give the same values."""
    from omnisat_data.sim.serve.world import WorldServers

    reference = build_treesatai(BuildConfig(world / "sources" / "treesatai",
                                            scl_recipe(str(world / "stac" / "items.ndjson")), tmp_path / "pc",
                                            workers=0))
    with WorldServers(cdse_world) as servers:
        for key, value in servers.s3.gdal_env().items():
            monkeypatch.setenv(key, value)
        builds = {}
        for name, catalog in (("embedded", str(cdse_world / "stac" / "items.ndjson")), ("pgstac", servers.api.url)):
            servers.s3.counters.reset()
            builds[name] = build_treesatai(BuildConfig(cdse_world / "sources" / "treesatai", scl_recipe(catalog),
                                                       tmp_path / name, workers=2))
            assert servers.s3.counters.requests > 0  # every Sentinel-2 value came over S3
    for name, report in builds.items():
        assert report.failed == {} and report.refused_items == {} and len(report.done) == len(reference.done) == 8
        assert_same_values(tmp_path / "pc", tmp_path / name, reference.done)  # lossless JPEG 2000: bit for bit
