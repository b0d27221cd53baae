"""Catalog conventions normalised: asset aliases, Sentinel-2 harmonisation, Sentinel-1 direction."""

from __future__ import annotations

import pytest

from omnisat_data.stac.items import ItemError, canonical_assets, orbit_direction, s2_offset_dn

PC_ID = "S2B_MSIL2A_20220611T103629_R008_T32ULU_20220611T180000"


def test_asset_aliases_of_three_catalogs_resolve_to_band_names():
    pc = canonical_assets({"B02": {}, "B8A": {}, "SCL": {}, "visual": {}})
    earth_search = canonical_assets({"blue": {}, "nir08": {}, "scl": {}, "blue-jp2": {}})
    cdse = canonical_assets({"B02_10m": {}, "B02_20m": {}, "B02_60m": {}, "B8A_20m": {}, "SCL_20m": {}})
    assert pc["B02"] == "B02" and earth_search["B02"] == "blue" and cdse["B02"] == "B02_10m"
    assert earth_search["B8A"] == "nir08" and cdse["B8A"] == "B8A_20m"
    assert pc["SCL"] == "SCL" and earth_search["SCL"] == "scl" and cdse["SCL"] == "SCL_20m"
    assert canonical_assets({"VV": {}, "VH": {}}) == {"vv": "VV", "vh": "VH"}


def test_harmonisation_offset_follows_each_catalog_convention():
    # Planetary Computer: baseline property only
    assert s2_offset_dn(PC_ID, {"s2:processing_baseline": "04.00"}) == -1000
    assert s2_offset_dn(PC_ID, {"s2:processing_baseline": "02.14"}) == 0
    # Earth Search v1: raster:bands offset, unless the flag says it is applied
    band = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}
    assert s2_offset_dn(PC_ID, {"earthsearch:boa_offset_applied": False}, band) == -1000
    assert s2_offset_dn(PC_ID, {"earthsearch:boa_offset_applied": True}, band) == 0
    # CDSE: the baseline in the product name
    assert s2_offset_dn("S2A_MSIL2A_20230102T103421_N0509_R108_T32ULU_20230102T140000", {}) == -1000
    assert s2_offset_dn("S2A_MSIL2A_20200102T102421_N0213_R065_T32UNC_20200102T115419", {}) == 0
    with pytest.raises(ItemError, match="item x: no s2:processing_baseline"):
        s2_offset_dn("x", {})


def test_orbit_direction_is_read_from_sat_orbit_state():
    assert orbit_direction("a", {"sat:orbit_state": "Ascending"}) == "ascending"
    with pytest.raises(ItemError, match="item b: sat:orbit_state is None"):
        orbit_direction("b", {})
