"""ESA product names: the one parser of what their "_"-separated tokens say.

    S2A_MSIL2A_20190629T212531_N0212_R043_T06VVN_20201006T085140     (mission, level, sensing time, baseline,
                                                                     relative orbit, MGRS tile, discriminator)
    S1A_IW_GRDH_1SDV_20200103T170841_20200103T170906_030639_0382D5_360A   (mission, mode, product type, class,
                                                                     start, stop, absolute orbit, datatake, id)
"""

from __future__ import annotations

import datetime as dt


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
