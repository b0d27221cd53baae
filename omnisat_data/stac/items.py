"""Items from different catalogs, seen the same way: canonical asset keys, the Sentinel-2 DN offset
to reach pre-2022 (baseline < 04.00) values, and the Sentinel-1 orbit direction.

Pure functions of an item's `properties` and `assets` (pystac or plain dicts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Earth Search v1 common names -> Sentinel-2 band names (Planetary Computer's keys are the band names);
# its sentinel-2-c1-l2a collection also serves the cloud and snow probability masks (CLD_20m, SNW_20m).
EARTH_SEARCH_S2 = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
                   "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
                   "swir16": "B11", "swir22": "B12", "scl": "SCL", "cloud": "CLD", "snow": "SNW"}
_RESOLUTION_SUFFIX = re.compile(r"^(?P<key>.+)_(?P<res>\d+)m$")  # Copernicus Data Space: B02_10m, SCL_20m
HARMONISATION_DN = 1000  # ESA BOA_ADD_OFFSET from processing baseline 04.00 (25 Jan 2022)


class ItemError(ValueError):
    """An item lacks what the build needs; the message names the item and the field."""


def canonical_assets(assets: Mapping[str, Any]) -> dict[str, str]:
    """canonical key -> the item's own key. CDSE keys with several resolutions keep the finest one."""
    out: dict[str, tuple[int, str]] = {}
    for key in assets:
        res, name = 0, key
        if m := _RESOLUTION_SUFFIX.match(key):
            name, res = m["key"], int(m["res"])
        name = EARTH_SEARCH_S2.get(name, name)
        name = name.lower() if name.lower() in ("vv", "vh", "hh", "hv") else name
        if name not in out or res < out[name][0]:
            out[name] = (res, key)
    return {name: key for name, (_, key) in out.items()}


def processing_baseline(item_id: str, properties: Mapping[str, Any]) -> float | None:
    """`s2:processing_baseline` ("04.00"; Planetary Computer, Earth Search) or `processing:version`
    ("05.00"; Copernicus Data Space, STAC 1.1), else the `_Nxxyy_` token of the product name or id."""
    for key in ("s2:processing_baseline", "processing:version"):
        value = properties.get(key)
        if value is not None:
            return float(value)
    for text in (properties.get("s2:product_uri", ""), item_id):
        if m := re.search(r"_N(\d{2})(\d{2})_", str(text)):
            return float(f"{m[1]}.{m[2]}")
    return None


def s2_offset_dn(item_id: str, properties: Mapping[str, Any], asset: Mapping[str, Any] | None = None) -> int:
    """DN to add to a Sentinel-2 L2A band so that it matches pre-04.00 values (0 or -1000).

    `earthsearch:boa_offset_applied` true: the COG is already harmonised. Else the asset's offset
    (reflectance units, with its scale) says it: `raster:offset` / `raster:scale` on the asset (STAC 1.1:
    Copernicus Data Space) or in its `raster:bands` (STAC 1.0: Earth Search); else the processing
    baseline does (Planetary Computer).
    """
    if properties.get("earthsearch:boa_offset_applied") is True:
        return 0
    asset = asset or {}
    bands = asset.get("raster:bands") or [{}]
    offset = asset.get("raster:offset", bands[0].get("offset"))
    if offset not in (None, 0, 0.0):
        scale = asset.get("raster:scale", bands[0].get("scale")) or 1e-4
        return int(round(offset / scale))
    baseline = processing_baseline(item_id, properties)
    if baseline is None:
        raise ItemError(f"item {item_id}: no s2:processing_baseline and no _Nxxyy_ token in its name")
    return -HARMONISATION_DN if baseline >= 4.0 else 0


def orbit_direction(item_id: str, properties: Mapping[str, Any]) -> str:
    state = str(properties.get("sat:orbit_state", "")).lower()
    if state not in ("ascending", "descending"):
        raise ItemError(f"item {item_id}: sat:orbit_state is {properties.get('sat:orbit_state')!r}, "
                        "not ascending or descending")
    return state
