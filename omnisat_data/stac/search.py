"""One search, two back ends: a STAC API through pystac-client, or an embedded catalog over an item file.

Both take the same `Search` value and yield `pystac.Item`s with absolute asset hrefs, so code that
talks to Planetary Computer or Earth Search is the code the tests drive against the local pgstac
API and the embedded catalog.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import pystac
from shapely.geometry import box, shape

from .cql2 import evaluate


class CatalogError(RuntimeError):
    """A catalog that cannot answer a search correctly (missing conformance, unreadable file, ...)."""


@dataclass(frozen=True)
class Search:
    """What to search: collections, WGS84 bbox, 'start/end' datetime, CQL2-JSON filter, sort keys.

    `sortby` entries are '+field' or '-field' with STAC API field names ('properties.datetime').
    """

    collections: tuple[str, ...]
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    filter: dict | None = None
    sortby: tuple[str, ...] = ()
    ids: tuple[str, ...] | None = None
    page_size: int = 100

    @classmethod
    def from_filters(cls, collections: tuple[str, ...], bbox: str | None = None, datetime: str | None = None,
                     max_cloud: float | None = None, orbit_state: str | None = None) -> Search:
        """The search `omnisat-data stac search` asks for: a "W,S,E,N" bbox, eo:cloud_cover below
        `max_cloud`, sat:orbit_state equal to `orbit_state`, as one CQL2-JSON filter."""
        clauses = []
        if max_cloud is not None:
            clauses.append({"op": "<", "args": [{"property": "eo:cloud_cover"}, max_cloud]})
        if orbit_state:
            clauses.append({"op": "=", "args": [{"property": "sat:orbit_state"}, orbit_state]})
        try:
            box = tuple(float(v) for v in bbox.split(",")) if bbox else None
        except ValueError:
            box = ()
        if box is not None and len(box) != 4:
            raise ValueError("--bbox needs four numbers: west,south,east,north")
        return cls(collections=tuple(collections), bbox=box, datetime=datetime,
                   filter={"op": "and", "args": clauses} if clauses else None)


class Catalog(Protocol):
    def search(self, search: Search) -> Iterator[pystac.Item]: ...


# -- embedded ---------------------------------------------------------------------------------------

def read_items(path: Path) -> list[pystac.Item]:
    """Items from ndjson, a FeatureCollection/ItemCollection JSON, or stac-geoparquet; hrefs made absolute."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: item file not found")
    try:
        if path.suffix in (".parquet", ".geoparquet"):
            import pyarrow.parquet as pq
            from stac_geoparquet.arrow import stac_table_to_items

            dicts = list(stac_table_to_items(pq.read_table(path)))
            where = [f"row {k + 1}" for k in range(len(dicts))]
        elif path.suffix == ".ndjson":
            dicts, where = [], []
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if line.strip():
                    try:
                        dicts.append(json.loads(line))
                    except ValueError as exc:
                        raise CatalogError(f"{path}: line {number} is not JSON ({exc})") from None
                    where.append(f"line {number}")
        else:
            doc = json.loads(path.read_text())
            dicts = doc["features"] if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else [doc]
            where = [f"feature {k}" for k in range(len(dicts))]
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, ValueError, KeyError) as exc:
        raise CatalogError(f"{path}: cannot read items ({exc})") from exc
    items = []
    for d, at in zip(dicts, where):
        if not isinstance(d, dict) or d.get("type") != "Feature":
            raise CatalogError(f"{path}: {at} is not a STAC item (no \"type\": \"Feature\")")
        try:
            item = pystac.Item.from_dict(d, preserve_dict=False)
        except Exception as exc:  # pystac raises many types for a malformed item
            raise CatalogError(f"{path}: {at} (item {d.get('id')!r}) is not a valid STAC item "
                               f"({' '.join(str(exc).split())[:200]})") from None
        for asset in item.assets.values():
            asset.href = resolve_href(asset.href, path.parent)
        items.append(item)
    return items


def resolve_href(href: str, base: Path | str) -> str:
    """Absolute form of an asset href relative to `base` (a folder or a URL); absolute hrefs unchanged."""
    if urlparse(href).scheme in ("http", "https", "s3", "gs", "file") or href.startswith("/"):
        return href
    base = str(base)
    if urlparse(base).scheme in ("http", "https"):
        parts = base.rstrip("/").split("/")
        for piece in href.split("/"):
            if piece == "..":
                parts.pop()
            elif piece not in (".", ""):
                parts.append(piece)
        return "/".join(parts)
    return str((Path(base) / href).resolve())


def _parse_interval(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    def one(s: str) -> dt.datetime | None:
        if s in ("", ".."):
            return None
        if len(s) == 10:
            s += "T00:00:00Z"
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))

    if "/" in text:
        a, b = text.split("/")
        start, end = one(a), one(b)
        if end is not None and len(b) == 10:  # a bare end date includes that whole day
            end += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        return start, end
    t = one(text)
    return t, t


def _item_interval(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    props = item.properties
    if item.datetime is not None:
        return item.datetime, item.datetime
    return (dt.datetime.fromisoformat(props["start_datetime"].replace("Z", "+00:00")),
            dt.datetime.fromisoformat(props["end_datetime"].replace("Z", "+00:00")))


def _field(item: pystac.Item, name: str):
    if name in ("id", "collection"):
        return item.id if name == "id" else item.collection_id
    if name.startswith("properties."):
        name = name[len("properties."):]
    if name == "datetime":
        return item.datetime.isoformat() if item.datetime else item.properties.get("start_datetime")
    return item.properties.get(name)


class EmbeddedCatalog:
    """In-process catalog over a local item file, with the search semantics of a STAC API."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.items = read_items(self.path)

    def __repr__(self) -> str:
        return f"EmbeddedCatalog({str(self.path)!r}, {len(self.items)} items)"

    def search(self, search: Search) -> Iterator[pystac.Item]:
        area = box(*search.bbox) if search.bbox else None
        start, end = _parse_interval(search.datetime) if search.datetime else (None, None)
        hits = []
        for item in self.items:
            if search.collections and item.collection_id not in search.collections:
                continue
            if search.ids is not None and item.id not in search.ids:
                continue
            if area is not None and (item.geometry is None or not shape(item.geometry).intersects(area)):
                continue  # an item without geometry matches no bbox, as in a STAC API
            if start or end:
                t0, t1 = _item_interval(item)
                if (start and t1 < start) or (end and t0 > end):
                    continue
            if search.filter and not evaluate(search.filter, item):
                continue
            hits.append(item)
        # Default order as pgstac: newest first, ties by id descending.
        for key in reversed(search.sortby or ("-properties.datetime", "-id")):
            name, reverse = key.lstrip("+-"), key.startswith("-")
            hits.sort(key=lambda i: (_field(i, name) is None, _field(i, name)), reverse=reverse)
        yield from (item.clone() for item in hits)


# -- STAC API -----------------------------------------------------------------------------------------

FILTER_CLASSES = ("http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
                  "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
                  "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter")


def planetary_computer_modifier(url: str):
    """Planetary Computer hrefs need a SAS token; other hosts need nothing."""
    if urlparse(url).hostname and urlparse(url).hostname.endswith("planetarycomputer.microsoft.com"):
        import planetary_computer

        return planetary_computer.sign_inplace
    return None


@dataclass
class ApiCatalog:
    """A STAC API searched through pystac-client; refuses searches the server cannot answer correctly."""

    url: str
    max_retries: int = 5
    timeout: float = 60.0
    _client: object = field(default=None, init=False, repr=False)

    def client(self):
        if self._client is None:
            from pystac_client import Client
            from pystac_client.stac_api_io import StacApiIO

            try:
                io = StacApiIO(max_retries=self.max_retries, timeout=self.timeout)
                self._client = Client.open(self.url, modifier=planetary_computer_modifier(self.url), stac_io=io)
            except Exception as exc:  # pystac-client raises several types for an unreachable API
                raise CatalogError(f"{self.url}: cannot open STAC API ({exc.__class__.__name__}: {exc})") from exc
        return self._client

    def conforms(self) -> list[str]:
        return list(self.client().to_dict().get("conformsTo", []))

    def check_conformance(self, search: Search) -> None:
        """pystac-client only warns when a server lacks a class; a silent wrong answer is worse than an error."""
        classes = self.conforms()
        needs = {"item-search": any(c.endswith("item-search") for c in classes)}
        if search.filter:
            needs["filter (CQL2-JSON)"] = any(c.endswith("/filter") or c.endswith("#filter") for c in classes) and \
                any(c.endswith("cql2-json") for c in classes)
        if search.sortby:
            needs["sort"] = any(c.endswith("#sort") for c in classes)
        missing = [name for name, ok in needs.items() if not ok]
        if missing:
            raise CatalogError(f"{self.url}: the STAC API does not conform to {', '.join(missing)}; "
                               "its answers to this search would be wrong")

    def search(self, search: Search) -> Iterator[pystac.Item]:
        self.check_conformance(search)
        kwargs: dict = dict(collections=list(search.collections), max_items=None, limit=search.page_size,
                            method="POST")
        if search.bbox:
            kwargs["bbox"] = list(search.bbox)
        if search.datetime:
            kwargs["datetime"] = search.datetime
        if search.filter:
            kwargs["filter"] = search.filter
            kwargs["filter_lang"] = "cql2-json"
        if search.sortby:
            kwargs["sortby"] = list(search.sortby)
        if search.ids is not None:
            kwargs["ids"] = list(search.ids)
        try:
            yield from self.client().search(**kwargs).items()
        except CatalogError:
            raise
        except Exception as exc:
            raise CatalogError(f"{self.url}: search failed ({exc.__class__.__name__}: {exc})") from exc


def cached_catalog(catalogs: dict[str, Catalog], location: str | Path) -> Catalog:
    """The catalog at `location`, opened once per `catalogs` (an item file is read once, not per search)."""
    key = str(location)
    if key not in catalogs:
        catalogs[key] = open_catalog(key)
    return catalogs[key]


def first_items(location: str | Path, search: Search, limit: int) -> tuple[list[pystac.Item], int]:
    """The first `limit` items a search of the catalog at `location` finds, and how many it finds in all."""
    first, count = [], 0
    for item in open_catalog(location).search(search):
        if count < limit:
            first.append(item)
        count += 1
    return first, count


def open_catalog(location: str | Path) -> Catalog:
    """An http(s) URL opens a STAC API; anything else is an item file for the embedded catalog."""
    text = str(location)
    if urlparse(text).scheme in ("http", "https"):
        return ApiCatalog(text)
    return EmbeddedCatalog(Path(text))
