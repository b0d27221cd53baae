"""Read one acquisition for many tiles: each asset opened once, each COG block fetched once.

`read_acquisition` is the build's unit of work (a pure function of its arguments apart from
reading the assets): for one scene and the tiles it covers, it opens every asset once, works out
which source pixels each tile needs, reads the blocks they intersect top to bottom in strips (each
needed block once, no other), and resamples every tile from the strip in memory (geo/resample.py).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
import rasterio
import rasterio.windows

from omnisat_data.geo.grid import Grid, crs_string
from omnisat_data.geo.resample import centres_of, sample, support
from omnisat_data.io.paths import without_queries
from omnisat_data.io.workers import thread_pool
from omnisat_data.stac.acquisitions import Acquisition, is_remote, signed
from omnisat_data.stac.gdal import gdal_http_env
from omnisat_data.stac.items import ItemError

# Scene classification codes that mean cloud (medium, high, thin cirrus) and snow (ESA L2A SCL).
SCL_CLOUD = (8, 9, 10)
SCL_SNOW = (11,)
# Rows an asset is read in at least (whole block rows): 1024 px blocks are read a block row at a time; files of
# short blocks (strip TIFFs, small tiles) in fewer, larger reads.
STRIP_ROWS = 256
# GDAL's block cache, per process: the strips read each block once, so a cached block is never asked for
# again; GDAL's default (5 % of the machine's memory) let every block of a scene's open assets stay, up to
# 1.2 GB per worker on 24 GB. (Bytes: rasterio sets it with GDALSetCacheMax64.)
BLOCK_CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ReadSpec:
    """How to put one modality on the tile grids (from the recipe)."""

    bands: tuple[str, ...]  # canonical keys of the data bands, in output order
    resampling: str = "bilinear"
    mask_resampling: str = "bilinear"
    mask_source: str = "none"  # "probability": assets after `bands` are snow, cloud; "scl": one SCL asset
    round_values: bool = False  # Sentinel-2: whole-number DN and percentages, as the released files
    header_bytes: int = 16384  # fetched when opening each asset (recipe field of the same name)
    timeout_s: float = 30.0  # bound of every HTTP wait (recipe field of the same name)
    # nodata of the bands (and SCL) when the file declares none: ESA's Sentinel-2 L2A JPEG 2000 (Copernicus
    # Data Space) carry no nodata flag; the product says 0 is no data. Probability masks: 0 is a value.
    band_nodata: float | None = None
    concurrency: int = 8  # assets read at once, each from its own thread (recipe field of the same name)


@dataclass(frozen=True)
class BlockCount:
    """The blocks (COG tiles; JPEG 2000 tiles) reads touched, against the footprint minimum: the blocks the
    tiles' own sampling windows intersect. Bytes: compressed sizes from the TIFF's tile byte counts (0 where
    the format keeps none in its header, as JPEG 2000)."""

    read: int = 0
    minimum: int = 0
    read_bytes: int = 0
    minimum_bytes: int = 0

    def __add__(self, other: BlockCount) -> BlockCount:
        return BlockCount(*(a + b for a, b in zip(astuple(self), astuple(other))))


def _block_rects(windows: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """(n, 4) [block row0, block col0, block row1, block col1] (inclusive) of non-empty windows."""
    bh, bw = block
    w = windows[windows[:, 2] > windows[:, 0]]
    return np.stack([w[:, 0] // bh, w[:, 1] // bw, (w[:, 2] - 1) // bh, (w[:, 3] - 1) // bw], axis=1)


def footprint_blocks(windows: np.ndarray, block: tuple[int, int]) -> set[tuple[int, int]]:
    """The blocks (row, col) the tiles' own windows intersect: the least any read of them can touch."""
    out: set[tuple[int, int]] = set()
    for r0, c0, r1, c1 in np.unique(_block_rects(windows, block), axis=0).tolist():
        out.update((r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
    return out


@dataclass(frozen=True)
class Strip:
    """One step of reading an asset top to bottom: the rectangles of needed blocks in rows [top, bottom)
    (row0, row1, col0, col1: each one GDAL read, every block in it needed), then the tiles whose windows
    end in these rows are sampled, then rows above `keep` are dropped (no later tile needs them)."""

    top: int
    bottom: int
    rects: tuple[tuple[int, int, int, int], ...]
    tiles: tuple[int, ...]
    keep: int


def plan_strips(windows: np.ndarray, needed: set[tuple[int, int]], block: tuple[int, int],
                shape: tuple[int, int]) -> list[Strip]:
    """How to read an asset for these tile windows (`geo.resample.support`) and the blocks they need
    (`footprint_blocks`) so that each needed block is read once and no other: strips of whole block rows
    (at least STRIP_ROWS rows), top to bottom, each holding the tiles whose window ends in it; the rows a
    tile shares with the strip above are kept from it, not read again."""
    bh, bw = block
    step = bh * max(1, -(-STRIP_ROWS // bh))
    by_strip: dict[int, dict[int, list[int]]] = {}  # strip -> block row -> needed block columns
    for r, c in needed:
        by_strip.setdefault(r * bh // step, {}).setdefault(r, []).append(c)
    inside = np.flatnonzero(windows[:, 2] > windows[:, 0])
    last = (windows[inside, 2] - 1) // step
    strips = []
    for s in sorted(by_strip):
        rects: list[tuple[int, int, int, int]] = []
        for r in sorted(by_strip[s]):
            for c0, c1 in _runs(sorted(by_strip[s][r])):
                top, bottom = r * bh, min((r + 1) * bh, shape[0])
                left, right = c0 * bw, min((c1 + 1) * bw, shape[1])
                same = [i for i, x in enumerate(rects) if x[1] == top and x[2:] == (left, right)]
                if same:  # the same columns as in the block row above: one taller read
                    rects[same[0]] = (rects[same[0]][0], bottom, left, right)
                else:
                    rects.append((top, bottom, left, right))
        tiles = tuple(inside[last == s].tolist())
        later = inside[last > s]
        keep = int(windows[later, 0].min()) if len(later) else shape[0]
        strips.append(Strip(s * step, min((s + 1) * step, shape[0]), tuple(rects), tiles, keep))
    return strips


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted integers as inclusive runs of consecutive values: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def block_bytes(src, blocks: set[tuple[int, int]]) -> int:
    """Compressed size of these blocks of band 1, from the TIFF's tile byte counts (0 if unknown)."""
    total = 0
    for r, c in blocks:
        size = src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)
        total += int(size) if size else 0
    return total


def _read_asset(src, source: Grid, method: str, cols: np.ndarray, rows: np.ndarray,
                nodata: float | None = None) -> tuple[np.ndarray, BlockCount]:
    """(n_tiles, H, W) float64 values of a one-band asset (`source`: its grid) at the tiles' fractional pixel
    coordinates, and the blocks read. `nodata`: when the file declares none.

    The asset is read top to bottom in strips (`plan_strips`): each needed block once, no other; a strip
    is held in the file's own type, and every tile ending in it is sampled at once."""
    shape = source.shape
    block = tuple(src.block_shapes[0])
    windows = support(cols, rows, method, shape)
    out = np.full(cols.shape, np.nan)
    nodata = src.nodata if src.nodata is not None else nodata
    needed = footprint_blocks(windows, block)
    strips = plan_strips(windows, needed, block, shape)
    rects = [rect for strip in strips for rect in strip.rects]
    if rects:
        left, right = min(r[2] for r in rects), max(r[3] for r in rects)
        held, top = np.zeros((0, right - left), src.dtypes[0]), 0  # rows [top, top + len(held)) of the asset
        for strip in strips:
            if top + len(held) != strip.top:  # nothing kept reaches this strip (no tile spans the gap)
                held, top = held[:0], strip.top
            # Uninitialised where no rect is read: those are blocks no tile needs, so no tile samples them.
            buffer = np.empty((len(held) + strip.bottom - strip.top, right - left), src.dtypes[0])
            buffer[: len(held)] = held
            for r0, r1, c0, c1 in strip.rects:  # read straight into the strip (no copy)
                src.read(1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0),
                         out=buffer[r0 - top : r1 - top, c0 - left : c1 - left])
            if strip.tiles:
                idx = np.array(strip.tiles)
                out[idx] = sample(buffer[None], cols[idx] - left, rows[idx] - top, method, nodata)[0]
            drop = min(max(strip.keep - top, 0), len(buffer))
            held, top = buffer[drop:], top + drop
    nbytes = block_bytes(src, needed)
    return out, BlockCount(len(needed), len(needed), nbytes, nbytes)


def asset_method(spec: ReadSpec, k: int) -> str:
    """The resampling of asset `k` of a unit: the bands', the probability masks', nearest for SCL classes."""
    if k < len(spec.bands):
        return spec.resampling
    return "nearest" if spec.mask_source == "scl" else spec.mask_resampling


def tile_pixels(source: Grid, grids: tuple[Grid, ...], centres: dict | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(cols, rows), each (n_tiles, H, W): the tiles' pixel centres as fractional pixels of `source`.
    `centres` caches the centres per CRS across the assets of a unit (they share one, mostly)."""
    centres = {} if centres is None else centres
    if source.crs not in centres:
        centres[source.crs] = centres_of(grids, source.crs)
    return source.fractional_pixels(*centres[source.crs])


def _asset_values(acq: Acquisition, k: int, key: str, href: str, grids: tuple[Grid, ...], spec: ReadSpec,
                  centres: dict) -> tuple[np.ndarray, BlockCount]:
    """Asset `k` of `acq` at the tiles' pixel centres, and the blocks read; ItemError naming the item and
    asset when it cannot be read. Inside the GDAL settings of `read_acquisition`."""
    fallback = spec.band_nodata if k < len(spec.bands) or spec.mask_source == "scl" else None
    try:
        with rasterio.open(signed(href, acq.sign)) as src:
            crs = crs_string(src.crs) or None
            if crs is None:
                raise ValueError("no CRS")
            source = Grid(crs, src.transform, (src.height, src.width))
            cols, rows = tile_pixels(source, grids, centres)
            return _read_asset(src, source, asset_method(spec, k), cols, rows, fallback)
    except (rasterio.errors.RasterioError, ValueError, OSError) as error:
        reason = " ".join(str(error).split())
        # GDAL quotes the URL it opened, signed (a token in its query): the message keeps none of it
        raise ItemError(without_queries(f"item {acq.item_id}: asset {key} ({href}): {reason}")) from None


def _in_reader_thread(acq: Acquisition, k: int, key: str, href: str, grids: tuple[Grid, ...], spec: ReadSpec,
                      centres: dict) -> tuple[np.ndarray, BlockCount]:
    """`_asset_values` from a reader thread, with GDAL's settings set for it (rasterio keeps them per thread
    outside the main one)."""
    with rasterio.Env(**gdal_http_env(spec.header_bytes, spec.timeout_s), GDAL_CACHEMAX=BLOCK_CACHE_BYTES):
        return _asset_values(acq, k, key, href, grids, spec, centres)


def read_acquisition(acq: Acquisition, grids: tuple[Grid, ...], spec: ReadSpec) -> tuple[np.ndarray, BlockCount]:
    """(n_tiles, bands [+ 2 masks], H, W) float32 values of `acq` on each grid (NaN where no data),
    and the blocks read.

    Sentinel-2 bands get the acquisition's harmonisation offset; masks are (snow, cloud) in percent.
    Remote assets are read `spec.concurrency` at a time, each from a thread of its own (GDAL reads and
    inflates without the GIL): against object storage a unit waits about one asset's round trips, not
    the sum.
    Raises ItemError naming the item and asset when an asset cannot be read.
    """
    n_masks = 0 if spec.mask_source == "none" else 2
    out = np.full((len(grids), len(spec.bands) + n_masks) + grids[0].shape, np.nan, dtype=np.float32)
    blocks = BlockCount()
    centres: dict = {}  # shared by the reader threads: a race only computes one CRS's centres twice
    jobs = [(acq, k, key, href, grids, spec, centres) for k, (key, href) in enumerate(acq.assets)]
    # the settings for this thread too: in a main thread they are GDAL's global ones, which the threads
    # GDAL starts itself (JPEG 2000 decoding) read
    with rasterio.Env(**gdal_http_env(spec.header_bytes, spec.timeout_s), GDAL_CACHEMAX=BLOCK_CACHE_BYTES):
        if any(is_remote(href) for _, href in acq.assets):
            # through this process's pool even at concurrency 1: the units a worker runs at once share it,
            # so that it bounds the requests in flight per worker and modality
            results = list(thread_pool("asset", spec.concurrency).map(lambda job: _in_reader_thread(*job), jobs))
        else:  # local files wait on no one: threads would only add their overhead
            results = [_asset_values(*job) for job in jobs]
    for k, (values, count) in enumerate(results):
        blocks += count
        if k < len(spec.bands):
            values = values + acq.offset_dn
            out[:, k] = np.rint(values) if spec.round_values else values
        elif spec.mask_source == "scl":
            snow = np.where(np.isin(values, SCL_SNOW), 100.0, 0.0)
            cloud = np.where(np.isin(values, SCL_CLOUD), 100.0, 0.0)
            invalid = np.isnan(values) | (values == 0)
            out[:, -2] = np.where(invalid, np.nan, snow)
            out[:, -1] = np.where(invalid, np.nan, cloud)
        else:
            out[:, k] = np.rint(values) if spec.round_values else values
    return out, blocks
