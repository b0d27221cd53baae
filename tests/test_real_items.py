"""Real STAC items as Planetary Computer, Earth Search and Copernicus Data Space serve them
(tests/data/real-items, from other projects' fixtures: see tests/data/README.md), through the build's own
item-to-acquisition path. Every expectation below was read from the item JSON by hand, not computed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import pytest

from omnisat_data.recipe import SourceRecipe
from omnisat_data.stac.acquisitions import s1_acquisition, s2_acquisition
from omnisat_data.stac.items import ItemError

ITEMS = Path(__file__).resolve().parent / "data" / "real-items"
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")  # the TreeSatAI-TS order


def item(name: str) -> pystac.Item:
    return pystac.Item.from_dict(json.loads((ITEMS / f"{name}.json").read_text()))


def s2_source(mask_source: str = "scl", masks: tuple[str, ...] = ()) -> SourceRecipe:
    return SourceRecipe("x", "sentinel-2-l2a", BANDS, 10.0, masks=masks, mask_source=mask_source)


S1 = SourceRecipe("x", "sentinel-1-rtc", ("vv", "vh"), 10.0)
UTC = dt.UTC

PC_BLOB = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2"
ES_COGS = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/13/T/DE/2023/10/S2A_13TDE_20231008_0_L2A"
ES_C1 = ("https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/sentinel-2-c1-l2a/13/T/DE/2024/4/"
         "S2A_T13TDE_20240422T174753_L2A")
CDSE = ("s3://eodata/Sentinel-2/MSI/L2A_N0500/2020/03/22/S2B_MSIL2A_20200322T074609_N0500_R135_T36NYH_20230612T214223"
        ".SAFE/GRANULE/L2A_T36NYH_A015891_20200322T075811/IMG_DATA")


S2_CASES = {
    # Planetary Computer, 2019: Microsoft's own N0212 reprocessing (its id drops the N token; s2:product_uri has it)
    "pc__sentinel-2-l2a__S2B_20190629_T06VVN_N0212": dict(
        product="S2B_MSIL2A_20190629T212529_N0212_R043_T06VVN_20201006T080531",
        when=dt.datetime(2019, 6, 29, 21, 25, 29, 24000, tzinfo=UTC), offset=0,
        first=f"{PC_BLOB}/06/V/VN/2019/06/29/S2B_MSIL2A_20190629T212529_N0212_R043_T06VVN_20201006T080531.SAFE/"
              "GRANULE/L2A_T06VVN_A012081_20190629T212530/IMG_DATA/R10m/T06VVN_20190629T212529_B02_10m.tif",
        last_suffix="R20m/T06VVN_20190629T212529_SCL_20m.tif"),
    # Planetary Computer, 2022: baseline 04.00 (s2:processing_baseline), no raster offset: -1000 DN
    "pc__sentinel-2-l2a__S2B_20220612_T24XWR_N0400": dict(
        product="S2B_MSIL2A_20220612T182919_N0400_R027_T24XWR_20220613T123251",
        when=dt.datetime(2022, 6, 12, 18, 29, 19, 24000, tzinfo=UTC), offset=-1000,
        first=None, last_suffix="R20m/T24XWR_20220612T182919_SCL_20m.tif"),
    # Earth Search v1 sentinel-2-l2a: common-name keys, earthsearch:boa_offset_applied true
    "earth-search__sentinel-2-l2a__S2A_13TDE_20231008": dict(
        product="S2A_MSIL2A_20231008T175231_N0509_R141_T13TDE_20231008T233154",
        when=dt.datetime(2023, 10, 8, 18, 2, 55, 276000, tzinfo=UTC), offset=0,
        first=f"{ES_COGS}/B02.tif", last_suffix="/SCL.tif"),
    # Earth Search sentinel-2-c1-l2a: no applied flag, raster:bands offset -0.1 at scale 0.0001
    "earth-search__sentinel-2-c1-l2a__S2A_T13TDE_20240422": dict(
        product="S2A_MSIL2A_20240422T173911_N0510_R098_T13TDE_20240423T004950",
        when=dt.datetime(2024, 4, 22, 17, 53, 2, 36000, tzinfo=UTC), offset=-1000,
        first=f"{ES_C1}/B02.tif", last_suffix="/SCL.tif"),
    # Copernicus Data Space (STAC 1.1): JPEG 2000 on s3://eodata, raster:offset on the asset, processing:version
    "cdse__sentinel-2-l2a__S2B_20200322_T36NYH_N0500": dict(
        product="S2B_MSIL2A_20200322T074609_N0500_R135_T36NYH_20230612T214223",
        when=dt.datetime(2020, 3, 22, 7, 46, 9, 24000, tzinfo=UTC), offset=-1000,
        first=f"{CDSE}/R10m/T36NYH_20200322T074609_B02_10m.jp2",
        last_suffix="R20m/T36NYH_20200322T074609_SCL_20m.jp2"),
}


@pytest.mark.parametrize("name", sorted(S2_CASES))
def test_sentinel2_items_give_the_esa_name_time_offset_and_bands(name):
    want = S2_CASES[name]
    acq = s2_acquisition(item(name), s2_source())
    assert acq.product == want["product"] and acq.series == "s2"
    assert acq.datetime == want["when"] and acq.offset_dn == want["offset"]
    assert [k for k, _ in acq.assets] == [*BANDS, "SCL"]
    if want["first"]:
        assert acq.assets[0][1] == want["first"]
    assert acq.assets[-1][1].endswith(want["last_suffix"])
    # B8A and B11 are 20 m bands: the keys resolve to them, not to a neighbour
    assert "B8A" in dict(acq.assets)["B8A"] and "B11" in dict(acq.assets)["B11"]


def test_earth_search_c1_serves_the_probability_masks():
    acq = s2_acquisition(item("earth-search__sentinel-2-c1-l2a__S2A_T13TDE_20240422"),
                         s2_source("probability", ("SNW", "CLD")))
    assert dict(acq.assets)["SNW"] == f"{ES_C1}/SNW_20m.tif" and dict(acq.assets)["CLD"] == f"{ES_C1}/CLD_20m.tif"


@pytest.mark.parametrize("name", ["pc__sentinel-2-l2a__S2B_20220612_T24XWR_N0400",
                                  "earth-search__sentinel-2-l2a__S2A_13TDE_20231008",
                                  "cdse__sentinel-2-l2a__S2B_20200322_T36NYH_N0500"])
def test_catalogs_without_probability_masks_are_refused_for_them_by_name(name):
    with pytest.raises(ItemError, match=r"no asset 'SNW'"):
        s2_acquisition(item(name), s2_source("probability", ("SNW", "CLD")))


def test_planetary_computer_rtc_takes_the_esa_name_from_its_href_not_the_rtc_id():
    it = item("pc__sentinel-1-rtc__S1A_20240419T045904")
    assert it.id.endswith("_rtc")
    acq = s1_acquisition(it, S1)
    # the blob path: .../S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_DCEC/measurement/iw-vv.rtc.tiff
    assert acq.product == "S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_DCEC"
    assert acq.series == "s1-des" and acq.datetime == dt.datetime(2024, 4, 19, 4, 59, 10, 436706, tzinfo=UTC)
    assert [k for k, _ in acq.assets] == ["vv", "vh"] and acq.assets[0][1].endswith("/measurement/iw-vv.rtc.tiff")
    assert acq.offset_dn == 0


def test_planetary_computer_grd_in_radar_geometry_is_refused_naming_the_field():
    with pytest.raises(ItemError, match=r"S1A_IW_GRDH_1SDV_20250312T052236_20250312T052301_058267_073394'.*"
                                        r"no proj:code or proj:epsg.*GRD in radar geometry.*sentinel-1-rtc"):
        s1_acquisition(item("pc__sentinel-1-grd__S1A_IW_20250312T052236"), S1)


def test_an_hh_only_item_is_refused_at_search():
    data = json.loads((ITEMS / "pc__sentinel-1-rtc__S1A_20240419T045904.json").read_text())
    data["properties"]["sar:polarizations"] = ["HH"]
    with pytest.raises(ItemError, match=r"sar:polarizations is \['HH'\]"):
        s1_acquisition(pystac.Item.from_dict(data), S1)


def test_cdse_cog_ids_and_bare_ids_never_become_product_names():
    data = json.loads((ITEMS / "pc__sentinel-1-rtc__S1A_20240419T045904.json").read_text())
    data["id"] = "S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_DCEC_COG"  # CDSE's form
    for asset in data["assets"].values():
        asset["href"] = asset["href"].replace("S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_DCEC",
                                              "somewhere")
    assert s1_acquisition(pystac.Item.from_dict(data), S1).product == data["id"].removesuffix("_COG")
    data["id"] = "S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_rtc"  # nothing whole anywhere
    with pytest.raises(ItemError, match="no ESA Sentinel-1 product name"):
        s1_acquisition(pystac.Item.from_dict(data), S1)


def test_naip_is_a_four_band_image_on_the_planetary_computer_blob():
    it = item("pc__naip__pr_m_1806551_nw_20221212")
    image = it.assets["image"]
    assert image.href == ("https://naipeuwest.blob.core.windows.net/naip/v002/pr/2022/pr_030cm_2022/18065/51/"
                          "m_1806551_nw_20_030_20221212_20230329.tif")
    # pystac reads the STAC 1.0 proj:epsg as proj:code; band order red, green, blue, nir (TreeSatAI: NIR, G, B, R)
    assert it.properties["proj:code"] == "EPSG:26920" and it.properties["proj:transform"][0] == 0.3
    assert [b["common_name"] for b in image.extra_fields["eo:bands"]] == ["red", "green", "blue", "nir"]
