"""ESA product names: the one parser of what their "_"-separated tokens say.

    S2A_MSIL2A_20190629T212531_N0212_R043_T06VVN_20201006T085140     (mission, level, sensing time, baseline,
                                                                     relative orbit, MGRS tile, discriminator)
    S1A_IW_GRDH_1SDV_20200103T170841_20200103T170906_030639_0382D5_360A   (mission, mode, product type, class,
                                                                     start, stop, absolute orbit, datatake, id)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

# The ESA patterns, whole: Sentinel-2 L2A ends in the product discriminator (a time), Sentinel-1 in the
# 6-digit absolute orbit, the 6-hex mission datatake id and the 4-hex product unique id. A name missing a
# token (Planetary Computer's GRD ids) or carrying a catalog's suffix (`_rtc`, `_COG`) does not match.
S2_L2A_NAME = re.compile(r"^S2[A-D]_MSIL2A_\d{8}T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}_\d{8}T\d{6}$")
S1_NAME = re.compile(r"^S1[A-D]_(IW|EW|SM|WV|S[1-6])_(GRD[FHM]|SLC_|OCN_|RAW_)_[0-4][SA][SDHV][HV]_"
                     r"\d{8}T\d{6}_\d{8}T\d{6}_\d{6}_[0-9A-F]{6}_[0-9A-F]{4}$")
CATALOG_SUFFIXES = ("_COG", "_rtc", ".SAFE")  # what Copernicus Data Space and Planetary Computer append


def _path_segments(hrefs: Iterable[str]) -> list[str]:
    out = []
    for href in hrefs:
        out.extend(segment for segment in urlparse(href).path.split("/") if segment)
    return out


def esa_product_name(sensor: str, item_id: str, properties: Mapping[str, Any], hrefs: Iterable[str]) -> str | None:
    """The ESA product name of a Sentinel-2 L2A (`sensor` "s2") or Sentinel-1 ("s1") item, wherever its
    catalog keeps it: the product property (s2:product_uri: Planetary Computer, Earth Search;
    s1:product_identifier: Earth Search), the item id less a catalog suffix (Copernicus Data Space:
    `_COG`), or a path segment of an asset href (Planetary Computer's Sentinel-1 blobs sit under the
    full ESA name: `.../S1A_IW_GRDH_1SDV_..._067DF2_DCEC/measurement/iw-vv.rtc.tiff`). None when no
    candidate matches the whole ESA pattern."""
    pattern, prop = (S2_L2A_NAME, "s2:product_uri") if sensor == "s2" else (S1_NAME, "s1:product_identifier")
    candidates = [str(properties.get(prop) or ""), item_id, *_path_segments(hrefs)]
    for text in candidates:
        for suffix in CATALOG_SUFFIXES:
            text = text.removesuffix(suffix)
        if pattern.match(text):
            return text
    return None


def s2_datatake(product: str) -> tuple[str, str, str]:
    """Mission, sensing time and relative orbit of an ESA Sentinel-2 product name: what the granules of
    one datatake share (neighbouring MGRS tiles overlap by about 10 km and hold the same pixels there)."""
    parts = product.split("_")
    return parts[0], parts[2], parts[4]


def s1_pass(product: str) -> tuple[str, str, str]:
    """Mission, absolute orbit and datatake id of an ESA Sentinel-1 product name: what the slices of one
    pass share (consecutive slices overlap slightly and hold the same values there)."""
    parts = product.split("_") + ["", ""]
    return parts[0], parts[6], parts[7]


def same_take(product: str) -> tuple[str, str, str]:
    """What the frames of one Sentinel-2 datatake or one Sentinel-1 pass have in common."""
    return s2_datatake(product) if product.startswith("S2") else s1_pass(product)


def s2_tile(product: str) -> str:
    """MGRS tile of a Sentinel-2 product name (token 5, e.g. T32ULU -> 32ULU); "" if absent."""
    tokens = product.split("_")
    return tokens[5][1:] if len(tokens) > 5 and tokens[5].startswith("T") else ""


def token_time(product: str, token: int) -> dt.datetime | None:
    """The sensing time at `token` (YYYYMMDDTHHMMSS), or None when that token is not one."""
    try:
        return dt.datetime.strptime(product.split("_")[token][:15], "%Y%m%dT%H%M%S")
    except (IndexError, ValueError):
        return None


def day_of_year(product: str, token: int) -> int:
    """Day of the year (1..366) of the date at `token`; ValueError when there is none."""
    stamp = product.split("_")[token][:8]
    return dt.datetime.strptime(stamp, "%Y%m%d").timetuple().tm_yday
