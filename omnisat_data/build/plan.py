"""The build's plan: tiles in groups, one search per group and modality, the units each search gives.

Every build plans before it reads:
  1. `group_tiles`: tiles grouped by time window, CRS and a cell of `recipe.group_size_m`;
  2. `search_group` / `search_groups`: one search per group and modality; each usable acquisition keeps
     the tiles its footprint covers (TreeSatAI-TS: one Sentinel-2 granule per datatake and tile, more
     only where that one covers the tile in part);
  3. `planned`: the groups and their units, written to OUT/plan.json before any pixel is read, with a key
     made of the recipe, the source and the catalog files. A rerun whose key matches reuses the plan
     instead of searching again (only groups whose search failed, and tiles the plan does not hold, are
     searched); a changed recipe, source or item file makes a new plan.
The plan is what `--dry-run` prints; the engine (build/engine.py) runs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import box, shape

from omnisat_data.geo.tile import Tile
from omnisat_data.io.atomic import write_json
from omnisat_data.recipe import Recipe
from omnisat_data.stac.acquisitions import Acquisition, s1_acquisition, s2_acquisition
from omnisat_data.stac.items import ItemError
from omnisat_data.stac.products import s2_datatake
from omnisat_data.stac.search import Catalog, CatalogError, Search, cached_catalog

from .sentinel import BlockCount

PLAN = "plan.json"
PLAN_FORMAT = "omnisat-data build plan 1"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VhrItem:
    """A VHR unit's source: the item and the href of the image it reads."""

    item_id: str
    href: str

    @property
    def series(self) -> str:
        return "vhr"

    @property
    def assets(self) -> tuple[tuple[str, str], ...]:
        return (("image", self.href),)

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "href": self.href}

    @classmethod
    def from_dict(cls, d: dict) -> VhrItem:
        return cls(d["item_id"], d["href"])


@dataclass(frozen=True)
class Unit:
    """One unit of work: a scene to open once, and the tiles (indices into its group or batch) it serves."""

    source: Any  # an Acquisition (Sentinel series) or a VhrItem
    tiles: tuple[int, ...]

    def keep(self, local: dict[int, int]) -> Unit | None:
        """The unit renumbered to the tiles `local` keeps (old index -> new); None when it keeps none."""
        tiles = tuple(local[i] for i in self.tiles if i in local)
        return Unit(self.source, tiles) if tiles else None


@dataclass
class Group:
    """Tiles searched together, and what the search found: the units."""

    window: str  # STAC datetime interval searched for these tiles
    tiles: list[Tile]
    year: int | None = None  # TreeSatAI-TS: the series year the window stands for
    units: list[Unit] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # tile index -> why (a failed search fails them all)


@dataclass
class ReadTally:
    """What the searches and reads did, for the build report."""

    searches: int = 0
    units: int = 0
    blocks: BlockCount = BlockCount()  # blocks read, and the footprint minimum
    refused_items: dict[str, str] = field(default_factory=dict)  # item id -> reason


def group_bbox(footprints: list) -> tuple[float, float, float, float]:
    """The lon/lat box a group's search asks for: around its tiles' lon/lat footprints."""
    west, south, east, north = np.array([f.bounds for f in footprints]).T
    return float(west.min()), float(south.min()), float(east.max()), float(north.max())


# -- 1. groups ----------------------------------------------------------------------------------------

def group_tiles(
    tiles: list[Tile], group_size_m: float, window: Callable[[Tile], tuple[str, int | None]]
) -> list[Group]:
    """Tiles grouped by (time window, CRS, cell of `group_size_m`); `window(tile)` -> (interval, year).
    Cells in Z-order: the engine writes batches in group order as their scenes come back, and in Z-order
    consecutive groups form compact patches, which share their scenes (so they complete together) more
    than a strip of cells would."""
    cells: dict[tuple, list[Tile]] = {}
    for t in tiles:
        left, bottom, _, _ = t.vhr.bounds
        key = window(t) + (t.vhr.crs, z_order(int(left // group_size_m), int(bottom // group_size_m)))
        cells.setdefault(key, []).append(t)
    return [Group(key[0], members, key[1]) for key, members in sorted(cells.items())]


def z_order(col: int, row: int) -> int:
    """The cell's place on the Z-order curve: the bits of col and row interleaved (offset to be >= 0)."""
    col, row, key = col + 2**31, row + 2**31, 0
    for bit in range(32):
        key |= ((col >> bit) & 1) << (2 * bit) | ((row >> bit) & 1) << (2 * bit + 1)
    return key


# -- 2. searches --------------------------------------------------------------------------------------

def search_group(group: Group, recipe: Recipe, catalogs: dict[str, Catalog], tally: ReadTally,
                 accept: Callable[[Acquisition, Tile], bool] | None = None, one_granule: bool = False) -> None:
    """Fill `group.units`: each usable acquisition with the group's tiles its footprint covers (and
    `accept(acquisition, tile)` allows, when given; `one_granule`: see `one_granule_per_datatake`)."""
    footprints = [t.vhr.lonlat_footprint() for t in group.tiles]
    bbox = group_bbox(footprints)
    found = []
    for source, make in ((recipe.s2, s2_acquisition), (recipe.s1, s1_acquisition)):
        catalog = cached_catalog(catalogs, source.catalog)
        search = Search(collections=(source.collection,), bbox=bbox, datetime=group.window, filter=source.filter)
        tally.searches += 1
        seen: set[str] = set()
        for item in catalog.search(search):
            if item.id in seen:  # a catalog that lists an item twice must not double a series
                continue
            seen.add(item.id)
            try:
                acq = make(item, source)
            except ItemError as error:
                tally.refused_items[item.id] = str(error)
                continue
            covered = shape(item.geometry) if item.geometry else box(*bbox)
            members = [i for i, f in enumerate(footprints)
                       if covered.intersects(f) and (accept is None or accept(acq, group.tiles[i]))]
            if members:
                shares = [covered.intersection(footprints[i]).area / footprints[i].area for i in members] \
                    if one_granule and acq.series == "s2" else []
                found.append((acq, members, shares))
    group.units = one_granule_per_datatake(found) if one_granule else [Unit(a, tuple(m)) for a, m, _ in found]


FULL = 1 - 1e-9  # a footprint share at least this covers the tile


def one_granule_per_datatake(found: list[tuple[Acquisition, list[int], list[float]]]) -> list[Unit]:
    """Units (acquisition, tiles, share of each tile its footprint covers) -> units in which each tile
    keeps, of the Sentinel-2 granules of one datatake, the one covering most of it (the first in time
    order on a tie), so that no date is read or stored twice; the released TreeSatAI-TS holds one
    granule per date. Where that granule covers only part of the tile (a granule edge), the datatake's
    other granules over the tile are kept too, so that the frame can be completed from them
    (`treesatai_series.assemble`). Sentinel-1 units pass unchanged: the released files keep both slices
    of a pass."""
    best: dict[tuple, tuple[float, int]] = {}  # (datatake, tile) -> (share, position in `found`)
    for k in sorted(range(len(found)), key=lambda k: found[k][0].sort_key):
        acq, members, shares = found[k]
        if acq.series != "s2":
            continue
        for i, share in zip(members, shares):
            key = (s2_datatake(acq.product), i)
            if key not in best or round(share, 9) > round(best[key][0], 9):
                best[key] = (share, k)
    out = []
    for k, (acq, members, _) in enumerate(found):
        if acq.series == "s2":
            chosen = [best[(s2_datatake(acq.product), i)] for i in members]
            members = [i for i, (share, at) in zip(members, chosen) if at == k or share < FULL]
        if members:
            out.append(Unit(acq, tuple(members)))
    return out


def search_groups(groups: list[Group], search: Callable[[Group, dict[str, Catalog]], None],
                  progress: Progress | None = None) -> None:
    """`search(group, catalogs)` for every group; a group whose search fails fails its tiles, the others go on."""
    catalogs: dict[str, Catalog] = {}
    for k, group in enumerate(groups):
        try:
            search(group, catalogs)
        except CatalogError as error:
            group.units = []
            group.failed = {i: f"search failed: {error}" for i in range(len(group.tiles))}
        if progress:
            progress("search", k + 1, len(groups))


def sentinel_search(recipe: Recipe, tally: ReadTally, accept: Callable[[Acquisition, Tile], bool] | None = None,
                    one_granule: bool = False) -> Callable[[Group, dict[str, Catalog]], None]:
    """The Sentinel-2 and Sentinel-1 search of a group, as `search_groups` and `planned` take it."""
    return lambda group, catalogs: search_group(group, recipe, catalogs, tally, accept, one_granule)


# -- 3. the plan on disk ------------------------------------------------------------------------------

def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_key(recipe: Recipe, build: str) -> str:
    """What a plan follows from, besides each tile (see `planned`): the build, the whole recipe and the bytes
    of every catalog that is a local item file (a STAC API is taken as it is: `--replan` searches it again)."""
    catalogs = sorted({s.catalog for s in (recipe.s2, recipe.s1, recipe.vhr) if s is not None})
    text = json.dumps({"build": build, "recipe": recipe, "catalog_files": {c: _file_digest(c) for c in catalogs}},
                      sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def tile_fingerprint(tile: Tile, *extra: Any) -> str:
    """A tile's part of a plan's key: its name, grids and year (and `extra`, e.g. the source file's digest)."""
    text = json.dumps([tile.name, tile.vhr.to_dict(), tile.sentinel.to_dict(), tile.year, *extra], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def _group_to_dict(group: Group) -> dict:
    return {"window": group.window, "year": group.year, "tiles": [t.name for t in group.tiles],
            "units": [{"source": unit.source.to_dict(), "tiles": list(unit.tiles)} for unit in group.units],
            "failed": {str(i): reason for i, reason in sorted(group.failed.items())}}


def _group_from_dict(d: dict, tiles: dict[str, Tile], unit_type: type) -> Group:
    """The stored group with only the tiles of `tiles` (the others are gone from the source, or changed)."""
    local = _local([name in tiles for name in d["tiles"]])
    units = [Unit(unit_type.from_dict(u["source"]), tuple(u["tiles"])).keep(local) for u in d["units"]]
    return Group(d["window"], [tiles[name] for name in d["tiles"] if name in tiles], d["year"],
                 [u for u in units if u is not None],
                 {local[int(i)]: reason for i, reason in d["failed"].items() if int(i) in local})


def _local(keep: list[bool]) -> dict[int, int]:
    """Old index -> new index of the kept positions."""
    kept = [i for i, k in enumerate(keep) if k]
    return {i: n for n, i in enumerate(kept)}


def read_plan(out: Path) -> dict | None:
    """OUT/plan.json, or None when there is none or it cannot be read (it is only ever a saved search)."""
    try:
        doc = json.loads((out / PLAN).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == PLAN_FORMAT else None


def restrict(group: Group, names: set[str]) -> Group:
    """The group with only the tiles named (their units and failures renumbered)."""
    local = _local([t.name in names for t in group.tiles])
    units = [u.keep(local) for u in group.units]
    return Group(group.window, [t for t in group.tiles if t.name in names], group.year,
                 [u for u in units if u is not None],
                 {local[i]: reason for i, reason in group.failed.items() if i in local})


@dataclass(frozen=True)
class PlanUse:
    """How a build came by its plan, for its report: searched anew, or read from OUT/plan.json."""

    path: str
    reused: bool
    groups_searched: int  # groups searched by this run (all of them unless the plan was reused)
    groups_reused: int
    why_new: str = ""  # why an existing plan.json was not reused

    def to_dict(self) -> dict:
        return {"path": self.path, "reused": self.reused, "groups_searched": self.groups_searched,
                "groups_reused": self.groups_reused, **({"why_new": self.why_new} if self.why_new else {})}


@dataclass(frozen=True)
class PlanFile:
    """Where a build keeps its plan and whether to trust it: OUT/plan.json under `key` (`plan_key`)."""

    out: Path | None  # None: no plan file (every group is searched)
    key: str = ""
    replan: bool = False  # search again even if the plan holds these tiles
    write: bool = True  # False: the dry run (nothing written)


def planned(where: PlanFile, section: str, fingerprints: dict[str, str], every_tile: list[Tile],
            pending: list[Tile], make_groups: Callable[[list[Tile]], list[Group]],
            search: Callable[[Group, dict[str, Catalog]], None], unit_type: type, tally: ReadTally,
            progress: Progress | None = None) -> tuple[list[Group], PlanUse]:
    """The groups of the `pending` tiles with their units.

    From OUT/plan.json when its key matches: each stored tile whose fingerprint (`fingerprints`) is
    unchanged keeps its group and units; only groups whose search failed and tiles the plan does not hold
    are searched. Otherwise (no plan, another key, `replan`) every pending tile is grouped and searched.
    The plan of every tile planned so far is written back (section `section`) before anything is read,
    unless the dry run asks not to."""
    out, key, replan = where.out, where.key, where.replan
    stored = read_plan(out) if out is not None else None
    doc = stored if stored is not None and stored.get("key") == key else None
    kept = None if replan or doc is None else doc.get("sections", {}).get(section)
    why_new = ("--replan" if replan and stored is not None else
               "its recipe or an item file changed" if stored is not None and doc is None else "")
    names = {t.name for t in pending}
    groups: list[Group] = []
    to_search: list[Group] = []
    if kept is not None:
        same = {t.name: t for t in every_tile
                if kept.get("fingerprints", {}).get(t.name) == fingerprints.get(t.name)}
        groups = [g for g in (_group_from_dict(d, same, unit_type) for d in kept["groups"]) if g.tiles]
        for item_id, reason in kept.get("refused_items", {}).items():
            tally.refused_items.setdefault(item_id, reason)
        for g in groups:
            if g.failed and any(t.name in names for t in g.tiles):  # its search failed: try it again
                g.units, g.failed = [], {}
                to_search.append(g)
    held = {t.name for g in groups for t in g.tiles}
    fresh = make_groups([t for t in pending if t.name not in held])
    to_search += fresh
    search_groups(to_search, search, progress)
    groups += fresh
    searched = {id(g) for g in to_search}
    reused = sum(1 for g in groups if id(g) not in searched and any(t.name in names for t in g.tiles))
    use = PlanUse(str(out / PLAN) if out is not None else "", reused > 0, len(to_search), reused, why_new)
    if where.write and out is not None:
        sections = dict(doc.get("sections", {})) if doc is not None else {}
        planned_names = {t.name for g in groups for t in g.tiles}
        sections[section] = {"groups": [_group_to_dict(g) for g in groups],
                             "fingerprints": {n: fingerprints[n] for n in sorted(planned_names)},
                             "refused_items": dict(sorted(tally.refused_items.items()))}
        write_json(out / PLAN, {"format": PLAN_FORMAT, "key": key, "sections": sections}, sort_keys=True)
    return [r for r in (restrict(g, names) for g in groups) if r.tiles], use


# -- what a plan touches (the dry run) ------------------------------------------------------------------

def asset_size(href: str) -> int:
    """Bytes of an asset: stat for a path, Content-Length of a HEAD request for a URL (0 if unknown)."""
    from urllib.parse import urlparse
    from urllib.request import Request, urlopen

    if urlparse(href).scheme in ("http", "https"):
        try:
            with urlopen(Request(href, method="HEAD"), timeout=10) as answer:
                return int(answer.headers.get("Content-Length") or 0)
        except (OSError, ValueError):
            return 0
    path = Path(urlparse(href).path if href.startswith("file:") else href)
    return path.stat().st_size if path.is_file() else 0


@dataclass(frozen=True)
class PlanRow:
    """One group of a plan, as the dry run prints it."""

    section: str  # "sentinel" or "vhr"
    year: int | None  # None: a period (PASTIS-HD series), not a year
    tiles: int
    found: dict[str, int]  # series ("s2", "s1-asc", "s1-des", "vhr") -> items its search found
    units: int
    asset_bytes: int  # size of the assets its units touch: an upper bound of what the build reads


def plan_rows(section: str, groups: list[Group], sizes: dict[str, int] | None = None) -> list[PlanRow]:
    """The dry run's rows of one plan section; a group whose search failed stops it, as the build would
    fail those tiles. `sizes` (href -> bytes) is shared between sections so that no asset is asked twice."""
    sizes = {} if sizes is None else sizes
    rows = []
    for group in groups:
        if group.failed:
            raise CatalogError(next(iter(group.failed.values())))
        hrefs = {href for u in group.units for _, href in u.source.assets}
        for href in sorted(hrefs - sizes.keys()):
            sizes[href] = asset_size(href)
        found: dict[str, int] = {}
        for u in group.units:
            found[u.source.series] = found.get(u.source.series, 0) + 1
        rows.append(PlanRow(section, group.year, len(group.tiles), found, len(group.units),
                            sum(sizes[h] for h in hrefs)))
    return rows
