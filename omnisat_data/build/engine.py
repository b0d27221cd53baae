"""The builds' engine: Sentinel time series for many tiles, one search per group, one read per scene.

Every build (TreeSatAI-TS, PASTIS-HD, own areas) runs the same steps here:
  1. `group_tiles`: tiles grouped by time window, CRS and a cell of `recipe.group_size_m`;
  2. `search_groups`: one search per group and modality; each usable acquisition keeps the tiles
     its footprint covers (TreeSatAI-TS: one Sentinel-2 granule per datatake and tile, more only
     where that one covers the tile in part);
  3. `split_group`: a group's tiles in batches (what is held in memory until written);
  4. `read_batches`: one unit of work per (acquisition, batch), run in a pool of worker processes or
     on a Dask cluster, a bounded window of batches in flight; each finished batch goes to the
     build's writer, which turns its frames into files.
A unit that fails fails the tiles it covers (reason recorded); the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import box, shape

from omnisat_data.geo.resample import transformer
from omnisat_data.geo.tile import Tile
from omnisat_data.io.paths import without_queries
from omnisat_data.io.workers import executor
from omnisat_data.recipe import Recipe
from omnisat_data.stac.acquisitions import Acquisition, s1_acquisition, s2_acquisition
from omnisat_data.stac.items import ItemError
from omnisat_data.stac.products import s2_datatake
from omnisat_data.stac.search import Catalog, CatalogError, Search, cached_catalog

IN_FLIGHT = 3  # batches whose units are queued at once


@dataclass(frozen=True)
class Frame:
    """What a read unit gives one tile: one acquisition's values over the tile's grid."""

    sort_key: tuple  # the acquisition's (time, ...) order
    product: str  # ESA product name
    item_id: str
    series: str  # "s2", "s1-asc" or "s1-des"
    values: np.ndarray  # (bands, H, W); NaN (or the series' missing marker) where the scene has no data


@dataclass
class Group:
    window: str  # STAC datetime interval searched for these tiles
    tiles: list[Tile]
    year: int | None = None  # TreeSatAI-TS: the series year the window stands for
    units: list[tuple[Acquisition, list[int]]] = field(default_factory=list)  # acquisition, tile indices
    frames: dict[int, list[Frame]] = field(default_factory=dict)  # tile index -> its frames, in unit order
    failed: dict[int, str] = field(default_factory=dict)
    lost: dict[int, list[dict]] = field(default_factory=dict)  # tile index -> acquisitions not read, and why


@dataclass
class ReadTally:
    """What the searches and reads did, for the build report."""

    searches: int = 0
    units: int = 0
    bytes_read: int = 0  # compressed bytes of the COG blocks read
    refused_items: dict[str, str] = field(default_factory=dict)  # item id -> reason


Progress = Callable[[str, int, int], None]


def lonlat(tile: Tile):
    """The tile's footprint in longitude, latitude."""
    to_wgs84 = transformer(tile.vhr.crs, "EPSG:4326").transform  # cached: one per CRS pair, not per tile
    return shapely.transform(tile.vhr.footprint, lambda x, y: to_wgs84(x, y), interleaved=False)


def group_tiles(
    tiles: list[Tile], group_size_m: float, window: Callable[[Tile], tuple[str, int | None]]
) -> list[Group]:
    """Tiles grouped by (time window, CRS, cell of `group_size_m`); `window(tile)` -> (interval, year)."""
    cells: dict[tuple, list[Tile]] = {}
    for t in tiles:
        left, bottom, _, _ = t.vhr.bounds
        key = window(t) + (t.vhr.crs, int(left // group_size_m), int(bottom // group_size_m))
        cells.setdefault(key, []).append(t)
    return [Group(key[0], members, key[1]) for key, members in sorted(cells.items())]


def search_group(group: Group, recipe: Recipe, catalogs: dict[str, Catalog], tally: ReadTally,
                 accept: Callable[[Acquisition, Tile], bool] | None = None, one_granule: bool = False) -> None:
    """Fill `group.units`: each usable acquisition with the group's tiles its footprint covers (and
    `accept(acquisition, tile)` allows, when given; `one_granule`: see `one_granule_per_datatake`)."""
    footprints = [lonlat(t) for t in group.tiles]
    west, south, east, north = np.array([f.bounds for f in footprints]).T
    bbox = (float(west.min()), float(south.min()), float(east.max()), float(north.max()))
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
    group.units = one_granule_per_datatake(found) if one_granule else [(acq, members) for acq, members, _ in found]


FULL = 1 - 1e-9  # a footprint share at least this covers the tile


def one_granule_per_datatake(
    found: list[tuple[Acquisition, list[int], list[float]]],
) -> list[tuple[Acquisition, list[int]]]:
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
            out.append((acq, members))
    return out


def search_groups(groups: list[Group], recipe: Recipe, tally: ReadTally, progress: Progress | None = None,
                  accept: Callable[[Acquisition, Tile], bool] | None = None, one_granule: bool = False) -> None:
    """`search_group` for every group; a group whose search fails fails its tiles, the others go on."""
    catalogs: dict[str, Catalog] = {}
    for k, group in enumerate(groups):
        try:
            search_group(group, recipe, catalogs, tally, accept, one_granule)
        except CatalogError as error:
            group.failed = {i: f"search failed: {error}" for i in range(len(group.tiles))}
        if progress:
            progress("search", k + 1, len(groups))


def split_group(group: Group, size: int) -> list[Group]:
    """The group's tiles in batches of at most `size`, each with the units (acquisition, its tiles) it needs.

    A batch is what is held in memory until its tiles are written; each asset is opened once per batch
    (one search per group still serves them all)."""
    out = []
    for start in range(0, max(len(group.tiles), 1), size):
        local = {i: i - start for i in range(start, min(start + size, len(group.tiles)))}
        units = [(acq, [local[i] for i in members if i in local]) for acq, members in group.units]
        failed = {local[i]: reason for i, reason in group.failed.items() if i in local}
        out.append(Group(group.window, group.tiles[start : start + size], group.year, [u for u in units if u[1]],
                         failed=failed))  # (lost dates are found while reading)
    return out


def read_batches(batches: list[Group], unit: Callable, specs: dict, workers: int, scheduler: str | None,
                 tally: ReadTally, finish: Callable[[Group], None], progress: Progress | None = None,
                 strict: bool = True) -> None:
    """Run `unit(acquisition, grids, specs[series])` -> (values per tile, bytes) for every unit of every
    batch; append each tile's frames to `batch.frames`, then call `finish(batch)` in batch order.

    A unit that fails (after GDAL's retries) fails the tiles it covers when `strict`; otherwise its
    acquisition is recorded as lost for them (`batch.lost`) and the tiles go on without that date.

    `unit` must be a module-level function (it is pickled to worker processes)."""
    total = sum(len(b.units) for b in batches)
    tally.units += total
    done = 0
    with executor(workers, scheduler) as pool:
        def submit(batch: Group) -> list[tuple[Future, Acquisition, list[int]]]:
            return [(pool.submit(unit, acq, tuple(batch.tiles[i].sentinel for i in members), specs[acq.series]),
                     acq, members) for acq, members in batch.units]

        # A window of IN_FLIGHT batches: the pool stays busy while memory holds at most that many batches' frames.
        queue = iter(batches)
        window = [(b, submit(b)) for b in (next(queue, None) for _ in range(IN_FLIGHT)) if b is not None]
        while window:
            batch, futures = window.pop(0)
            for future, acq, members in futures:  # in submission order
                try:
                    values, nbytes = future.result()
                    tally.bytes_read += nbytes
                    for row, i in enumerate(members):
                        batch.frames.setdefault(i, []).append(
                            Frame(acq.sort_key, acq.product, acq.item_id, acq.series, values[row]))
                except Exception as error:  # an unreadable asset, a worker that died: the build goes on
                    reason = without_queries(error) if isinstance(error, ItemError) else without_queries(
                        f"item {acq.item_id}: {error.__class__.__name__}: {' '.join(str(error).split())}")
                    for i in members:
                        if strict:
                            batch.failed.setdefault(i, reason)
                        else:
                            batch.lost.setdefault(i, []).append({"item": acq.item_id, "product": acq.product,
                                                                 "series": acq.series, "reason": reason})
                done += 1
                if progress:
                    progress("read", done, total)
            finish(batch)
            batch.frames.clear()
            following = next(queue, None)
            if following is not None:
                window.append((following, submit(following)))
