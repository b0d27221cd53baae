"""From catalog items to acquisitions: what a build reads, independent of the catalog it came from.

An `Acquisition` is a small picklable value (it travels to worker processes): the ESA product name
the dataset stores, the sensing time, the series it belongs to, the hrefs of the assets in output
band order and the DN offset that harmonises Sentinel-2 values. Items that cannot become one raise
`ItemError` naming the item and the field.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlparse

import pystac

from omnisat_data.recipe import SourceRecipe

from .items import ItemError, canonical_assets, orbit_direction, s2_offset_dn
from .products import esa_product_name

# The dataset reads dates from the product name (token 2 for Sentinel-2, token 4 for Sentinel-1), so an
# item without a whole ESA name is refused; so is a Sentinel-1 item without VV and VH, or in radar geometry.
PROJECTION_FIELDS = ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson")


@dataclass(frozen=True)
class Acquisition:
    item_id: str
    product: str  # ESA product name, as written to the *-products datasets
    series: str  # "s2", "s1-asc" or "s1-des"
    datetime: dt.datetime
    assets: tuple[tuple[str, str], ...]  # (canonical key, href) in output order: bands, then masks
    offset_dn: int = 0  # added to Sentinel-2 band DN (-1000 for baseline >= 04.00 not yet harmonised)
    sign: str = "never"  # Planetary Computer signing of hrefs at read time

    @property
    def sort_key(self) -> tuple:
        return (self.datetime, self.product, self.item_id)

    def to_dict(self) -> dict:
        """As stored in a build's plan.json (`from_dict` reads it back equal)."""
        return {"item_id": self.item_id, "product": self.product, "series": self.series,
                "datetime": self.datetime.isoformat(), "assets": [list(pair) for pair in self.assets],
                "offset_dn": self.offset_dn, "sign": self.sign}

    @classmethod
    def from_dict(cls, d: dict) -> Acquisition:
        return cls(d["item_id"], d["product"], d["series"], dt.datetime.fromisoformat(d["datetime"]),
                   tuple((key, href) for key, href in d["assets"]), int(d["offset_dn"]), d["sign"])


def _sensing_time(item: pystac.Item) -> dt.datetime:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise ItemError(f"item {item.id}: no datetime or start_datetime")
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _hrefs(item: pystac.Item, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    aliases = canonical_assets(item.assets)
    out = []
    for key in keys:
        if key not in aliases:
            raise ItemError(f"item {item.id}: no asset {key!r} (has {', '.join(sorted(item.assets))})")
        href = item.assets[aliases[key]].href
        if urlparse(href).scheme not in ("", "file", "http", "https", "s3", "gs") and not href.startswith("/"):
            raise ItemError(f"item {item.id}: asset {key!r} href {href!r} is not a URL or path")
        out.append((key, href))
    return tuple(out)


def _product(sensor: str, item: pystac.Item) -> str:
    hrefs = [a.href for a in item.assets.values()]
    product = esa_product_name(sensor, item.id, item.properties, hrefs)
    if product is None:
        field = "s2:product_uri" if sensor == "s2" else "s1:product_identifier"
        kind = "Sentinel-2 L2A" if sensor == "s2" else "Sentinel-1"
        raise ItemError(f"item {item.id!r}: no ESA {kind} product name in {field}, the id or an asset href "
                        f"(the dataset reads the date from it)")
    return product


def s2_acquisition(item: pystac.Item, source: SourceRecipe) -> Acquisition:
    product = _product("s2", item)
    keys = source.assets + (("SCL",) if source.mask_source == "scl" else source.masks)
    hrefs = _hrefs(item, keys)
    offset = 0
    if source.harmonize:
        first = item.assets[canonical_assets(item.assets)[source.assets[0]]]
        offset = s2_offset_dn(item.id, item.properties, first.to_dict())
    return Acquisition(item.id, product, "s2", _sensing_time(item), hrefs, offset, source.sign)


def s1_acquisition(item: pystac.Item, source: SourceRecipe) -> Acquisition:
    props = item.properties
    polarizations = [str(p).upper() for p in props.get("sar:polarizations") or ()]
    if polarizations and not {"VV", "VH"} <= set(polarizations):
        raise ItemError(f"item {item.id!r}: sar:polarizations is {polarizations}: the dataset holds VV and VH")
    projected = any(props.get(f) for f in PROJECTION_FIELDS) or any(
        a.extra_fields.get(f) for a in item.assets.values() for f in PROJECTION_FIELDS)
    if not projected:
        raise ItemError(f"item {item.id!r}: no proj:code or proj:epsg: a Sentinel-1 "
                        f"{props.get('sar:product_type', '')} in radar geometry; use a terrain-corrected "
                        "collection (Planetary Computer's sentinel-1-rtc)")
    product = _product("s1", item)
    series = "s1-asc" if orbit_direction(item.id, props) == "ascending" else "s1-des"
    return Acquisition(item.id, product, series, _sensing_time(item), _hrefs(item, source.assets), 0, source.sign)


def is_remote(href: str) -> bool:
    """An href read over the network (HTTP, S3, GDAL's /vsicurl/ and kin), where a request waits on latency."""
    return href.startswith(("http://", "https://", "s3://", "gs://", "/vsicurl", "/vsis3", "/vsigs", "/vsiaz"))


def signed(href: str, mode: str) -> str:
    """Planetary Computer blob hrefs need a SAS token ("auto": only those; "always"; "never")."""
    if mode == "never":
        return href
    host = urlparse(href).hostname or ""
    if mode == "always" or host.endswith(".blob.core.windows.net"):
        import planetary_computer

        return planetary_computer.sign(href)
    return href
