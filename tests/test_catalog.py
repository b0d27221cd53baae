"""Searches through the real pgstac API and through the embedded catalog return what the generator placed."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import rasterio
from pystac_client import Client
from shapely.geometry import box

from omnisat_data.sim.serve.assets import AssetServer
from omnisat_data.sim.world.stac import footprint_lonlat, s2_valid_polygon
from omnisat_data.stac.gdal import gdal_http_env
from omnisat_data.stac.search import ApiCatalog, CatalogError, EmbeddedCatalog, Search, read_items

BBOX = (7.62, 48.57, 7.66, 48.60)


def _expected_s2(plan, truth, bbox, start, end, max_cloud):
    """From the generator's own records: footprint, acquisition time and cloud cover of every scene."""
    out = set()
    for s in plan.s2:
        fp = footprint_lonlat(s.grid, s2_valid_polygon(s, plan.cfg.aoi_top))
        if (
            fp.intersects(box(*bbox))
            and start <= s.datetime <= end
            and truth["s2"][s.item_id]["cloud_cover"] < max_cloud
        ):
            out.add(s.item_id)
    return out


def test_pystac_client_through_pgstac_returns_exactly_the_expected_items(servers, plan, truth):
    expected = _expected_s2(plan, truth, BBOX, dt.datetime(2022, 3, 1), dt.datetime(2022, 10, 31, 23, 59, 59), 40)
    assert 3 < len(expected) < len(plan.s2)
    client = Client.open(servers.api.url)
    search = client.search(collections=["sentinel-2-l2a"], bbox=list(BBOX), datetime="2022-03-01/2022-10-31",
                           filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 40]}, filter_lang="cql2-json",
                           limit=2, method="POST")
    pages = list(search.pages())
    assert len(pages) >= 2  # pagination was exercised
    ids = [i.id for p in pages for i in p.items]
    assert len(ids) == len(set(ids)) and set(ids) == expected


QUERIES = [
    Search(
        collections=("sentinel-2-l2a",),
        bbox=BBOX,
        datetime="2022-03-01/2022-10-31",
        filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 40]},
        page_size=3,
    ),
    Search(
        collections=("sentinel-2-l2a",),
        datetime="2018-09-01/2019-03-31",
        filter={
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "s2:mgrs_tile"}, "32ULU"]},
                {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 10]},
            ],
        },
        sortby=("-properties.eo:cloud_cover", "+id"),
    ),
    Search(
        collections=("sentinel-1-rtc",),
        bbox=BBOX,
        datetime="2022-01-01/2022-12-31",
        filter={"op": "=", "args": [{"property": "sat:orbit_state"}, "descending"]},
        sortby=("+properties.datetime", "+id"),
    ),
    Search(collections=("aerial-cir-20cm", "spot-rgb-1m")),
]


@pytest.mark.parametrize("query", QUERIES, ids=["s2-cloud", "s2-tile-sorted", "s1-desc-sorted", "vhr"])
def test_embedded_catalog_answers_like_the_api(servers, world, query):
    api = [i.id for i in ApiCatalog(servers.api.url).search(query)]
    embedded = [i.id for i in EmbeddedCatalog(world / "stac" / "items.ndjson").search(query)]
    assert api, "query matched nothing: it would not test anything"
    if query.sortby:
        assert embedded == api
    else:
        assert sorted(embedded) == sorted(api)


def test_item_file_formats_agree(world):
    import pyarrow.parquet as pq
    import stac_geoparquet

    ndjson = world / "stac" / "items.ndjson"
    dicts = [json.loads(line) for line in ndjson.read_text().splitlines()]
    # Relative hrefs are relative to the item file: keep the same folder depth.
    collection_file = world / "stac" / "copy-itemcollection.json"
    collection_file.write_text(json.dumps({"type": "FeatureCollection", "features": dicts}))
    parquet = world / "stac" / "copy.parquet"
    pq.write_table(stac_geoparquet.arrow.parse_stac_items_to_arrow(dicts).read_all(), parquet)
    try:
        query = QUERIES[0]
        ref = [(i.id, i.assets["B04"].href) for i in EmbeddedCatalog(ndjson).search(query)]
        for other in (collection_file, parquet):
            got = [(i.id, i.assets["B04"].href) for i in EmbeddedCatalog(other).search(query)]
            assert got == ref
        assert all(h.startswith(str(world.resolve())) for _, h in ref)
    finally:
        collection_file.unlink()
        parquet.unlink()


@pytest.mark.parametrize("collection", ["spot-rgb-1m", "aerial-cir-20cm"])
def test_small_window_over_vsicurl_reads_far_less_than_the_file(servers, world, collection):
    folder = next((world / "data" / collection).iterdir())
    # a URL of its own: GDAL's /vsicurl/ cache outlives rasterio.Env, and another test may have read the file
    href = f"{servers.assets.url}/data/{collection}/{folder.name}/image.tif?reader=small-window-test"
    size = (folder / "image.tif").stat().st_size
    servers.assets.counters.reset()
    # the toolkit's own settings: GDAL's /vsicurl/ cache assumes one chunk size per process
    with rasterio.Env(**gdal_http_env()):
        with rasterio.open(href) as ds:
            window = ds.read(window=rasterio.windows.Window(600, 600, 60, 60))
    assert window.shape[1:] == (60, 60) and window.max() > 0
    sent = servers.assets.counters.bytes_sent
    assert 0 < sent < 0.2 * size, (sent, size)


def test_catalog_without_filter_conformance_is_refused(tmp_path):
    """A server that lacks filter support would silently return wrong results: refuse before searching."""
    (tmp_path / "stac").mkdir()
    with AssetServer(tmp_path) as server:
        landing = {"type": "Catalog", "id": "bare", "stac_version": "1.0.0", "description": "no filter",
                   "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
                   "links": [{"rel": "self", "href": f"{server.url}/stac/landing.json"},
                             {"rel": "root", "href": f"{server.url}/stac/landing.json"},
                             {"rel": "search", "href": f"{server.url}/stac/search", "method": "POST"}]}
        (tmp_path / "stac" / "landing.json").write_text(json.dumps(landing))
        catalog = ApiCatalog(f"{server.url}/stac/landing.json")
        with pytest.raises(CatalogError, match="does not conform to filter"):
            list(catalog.search(QUERIES[0]))
        assert server.counters.per_path.keys() == {"stac/landing.json"}  # /search was never asked


def test_unreadable_item_file_names_the_file(tmp_path):
    bad = tmp_path / "items.ndjson"
    bad.write_text("{not json\n")
    with pytest.raises(CatalogError, match="items.ndjson"):
        read_items(bad)
    with pytest.raises(CatalogError, match="not found"):
        read_items(tmp_path / "missing.ndjson")


def test_an_item_file_is_read_once_per_build_not_per_group(world, monkeypatch, tmp_path):
    """Every group and sensor searches the same embedded catalog: its item file is parsed once."""
    import dataclasses

    from conftest import recipe_for

    from omnisat_data.build.treesatai_ts import BuildConfig, dry_run
    from omnisat_data.stac import search

    reads = []
    real = search.read_items
    monkeypatch.setattr(search, "read_items", lambda path: reads.append(path) or real(path))
    recipe = dataclasses.replace(recipe_for(str(world / "stac" / "items.ndjson")), group_size_m=60.0)
    rows, report = dry_run(BuildConfig(world / "sources" / "treesatai", recipe, tmp_path / "out", workers=0))
    assert len(rows) >= 4 and report.searches == 2 * len(rows)  # many groups, two sensors each ...
    assert len(reads) == 1  # ... one read of the item file


def test_a_bad_item_file_is_named_to_the_line(world, tmp_path):
    from omnisat_data.stac.search import CatalogError, EmbeddedCatalog, Search

    lines = (world / "stac" / "items.ndjson").read_text().splitlines()
    cases = {"truncated": (lines[:10] + ['{"type": "Feature", "id": "x"'] + lines[10:], "line 11 is not JSON"),
             "not an item": (lines[:3] + ['{"hello": 1}'] + lines[3:], "line 4 is not a STAC item")}
    for name, (content, needle) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.ndjson"
        path.write_text("\n".join(content) + "\n")
        with pytest.raises(CatalogError, match=needle):
            EmbeddedCatalog(path)
    item = json.loads(lines[0])
    item["id"], item["geometry"] = "no-geometry", None
    item.pop("bbox", None)
    path = tmp_path / "null.ndjson"
    path.write_text("\n".join(lines + [json.dumps(item)]) + "\n")
    hits = list(EmbeddedCatalog(path).search(Search(collections=(item["collection"],), bbox=(-180, -90, 180, 90))))
    assert hits and "no-geometry" not in {h.id for h in hits}  # matches no bbox, as in a STAC API
