"""Read one acquisition for many tiles: each asset opened once, each COG block fetched once.

`read_acquisition` is the build's unit of work (a pure function of its arguments apart from
reading the assets): for one scene and the tiles it covers, it opens every asset once, works out
which source pixels each tile needs, merges the needs of neighbouring tiles into a few windows that
cost no extra blocks, reads those, and resamples every tile from memory (geo/resample.py).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
import rasterio
import rasterio.windows

from omnisat_data.geo.grid import Grid, crs_string
from omnisat_data.geo.resample import Window, centres_in, sample, support
from omnisat_data.io.paths import without_queries
from omnisat_data.io.workers import thread_pool
from omnisat_data.stac.acquisitions import Acquisition, is_remote, signed
from omnisat_data.stac.gdal import gdal_http_env
from omnisat_data.stac.items import ItemError

# Scene classification codes that mean cloud (medium, high, thin cirrus) and snow (ESA L2A SCL).
SCL_CLOUD = (8, 9, 10)
SCL_SNOW = (11,)
# Tile windows are merged into one read only when it touches no block the tiles do not need: at production
# layout a block is ~1 MB (1024 px DEFLATE), so an extra block is an extra MB (it was 20 % more blocks; on
# the demo world both rules read the same blocks and make the same requests: benchmarks/README.md)
AMPLIFICATION_LIMIT = 1.0


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


def _block_rect(w: Window, block: tuple[int, int]) -> tuple[int, int, int, int]:
    bh, bw = block
    return w.row // bh, w.col // bw, (w.row + w.height - 1) // bh, (w.col + w.width - 1) // bw


def _blocks(rect: tuple[int, int, int, int]) -> set[tuple[int, int]]:
    r0, c0, r1, c1 = rect
    return {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}


def tile_windows(cols: np.ndarray, rows: np.ndarray, method: str, shape: tuple[int, int]) -> list[Window | None]:
    """Per tile, the source pixels `method` needs at its pixel centres (`tile_pixels`); None: outside."""
    return [support(c, r, method, shape) for c, r in zip(cols, rows)]


def footprint_blocks(windows: list[Window | None], block: tuple[int, int]) -> set[tuple[int, int]]:
    """The blocks (row, col) the tiles' own windows intersect: the least any read of them can touch."""
    return {b for w in windows if w is not None for b in _blocks(_block_rect(w, block))}


def plan_reads(windows: list[Window | None], block: tuple[int, int]) -> list[tuple[Window, list[int]]]:
    """Group tile windows into reads: (window to read, indices of the tiles it serves).

    Tiles whose windows share COG blocks form one group; a group is read as one window when its
    bounding box needs no block the tiles do not (AMPLIFICATION_LIMIT), else tile by tile (GDAL's
    block cache then still fetches a shared block once): the blocks read are the footprint minimum.
    """
    owner: dict[tuple[int, int], int] = {}
    parent = list(range(len(windows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, w in enumerate(windows):
        if w is None:
            continue
        for b in _blocks(_block_rect(w, block)):
            if b in owner:
                parent[find(i)] = find(owner[b])
            else:
                owner[b] = i
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        if w is not None:
            groups.setdefault(find(i), []).append(i)
    reads = []
    for members in groups.values():
        merged = windows[members[0]]
        needed: set = set()
        for i in members:
            merged = merged.union(windows[i])
            needed |= _blocks(_block_rect(windows[i], block))
        if len(_blocks(_block_rect(merged, block))) <= AMPLIFICATION_LIMIT * len(needed):
            reads.append((merged, members))
        else:
            reads.extend((windows[i], [i]) for i in members)
    return reads


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
    coordinates, and the blocks read. `nodata`: when the file declares none."""
    shape = source.shape
    block = tuple(src.block_shapes[0])
    windows = tile_windows(cols, rows, method, shape)
    out = np.full(cols.shape, np.nan)
    nodata = src.nodata if src.nodata is not None else nodata
    touched: set[tuple[int, int]] = set()
    minimum = footprint_blocks(windows, block)
    for window, members in plan_reads(windows, block):
        touched |= _blocks(_block_rect(window, block))
        data = src.read(1, window=rasterio.windows.Window(window.col, window.row, window.width, window.height))
        data = data.astype(np.float64)
        if nodata is not None:
            data[data == nodata] = np.nan
        for i in members:
            out[i] = sample(data[None], cols[i] - window.col, rows[i] - window.row, method)[0]
    return out, BlockCount(len(touched), len(minimum), block_bytes(src, touched), block_bytes(src, minimum))


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
        xy = [centres_in(g, source.crs) for g in grids]
        centres[source.crs] = (np.stack([p[0] for p in xy]), np.stack([p[1] for p in xy]))
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
    with rasterio.Env(**gdal_http_env(spec.header_bytes, spec.timeout_s)):
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
    with rasterio.Env(**gdal_http_env(spec.header_bytes, spec.timeout_s)):
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
