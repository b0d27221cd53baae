"""The builds' engine: run a plan's units, one read per scene for the whole build, many in flight.

Every build (TreeSatAI-TS, PASTIS-HD, own areas) plans first (build/plan.py: groups, one search per
group and modality, OUT/plan.json), then runs the plan here:
  1. `split_group`: a group's tiles in batches (what is written together);
  2. `scene_reads`: one read per scene over every tile of the build it covers (the scene opened once,
     each block it holds fetched and inflated once, however the tiles are grouped);
  3. `read_batches`: the reads run in a pool of worker processes or on a Dask cluster, a bounded number
     in flight; each read's values go to the stage (build/stage.py: on disk, not in memory), and a batch
     whose reads are all back is assembled from the stage and goes to the build's writer.
A unit that fails fails the tiles it covers (reason recorded); the others go on. A killed build keeps
its staged reads: the rerun reads only the scenes it lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnisat_data.geo.tile import Tile
from omnisat_data.io.paths import without_queries
from omnisat_data.io.workers import executor, thread_pool
from omnisat_data.stac.acquisitions import Acquisition, is_remote
from omnisat_data.stac.items import ItemError

from .plan import Group, Progress, ReadTally, Unit
from .sentinel import BlockCount
from .stage import Segment, Stage, load, tile_id

# Values one read may give (float32 estimate): a scene's read for small tiles covers the whole build (6 x 6 px
# TreeSatAI-TS tiles: 1.7 KB per tile and scene, so a whole Sentinel-1 scene's ~35,000 tiles are ~10 MB);
# 128 x 128 px PASTIS patches (655 KB) are read in parts of ~400, each a compact patch of the area.
READ_BYTES = 256 * 2**20
# Units a worker runs at once, each in a thread of its own: while one waits on object storage (tens of ms
# per request) the others' requests are in flight. The threads share the worker's reader threads
# (build/sentinel.py), so the requests in flight per worker stay bounded by the recipe's concurrency.
UNITS_PER_TASK = 4
# Tasks submitted and not yet back, per worker (at least 4 in all): the pool never waits for work, and
# the reads waiting to run hold no pixels.
TASKS_PER_WORKER = 2


@dataclass(frozen=True)
class Frame:
    """What a read unit gives one tile: one acquisition's values over the tile's grid."""

    sort_key: tuple  # the acquisition's (time, ...) order
    product: str  # ESA product name
    item_id: str
    series: str  # "s2", "s1-asc" or "s1-des"
    values: np.ndarray  # (bands, H, W); NaN (or the series' missing marker) where the scene has no data


@dataclass
class Batch:
    """Tiles of one group held in memory together, the units that cover them, and what reading gave."""

    window: str
    tiles: list[Tile]
    year: int | None
    units: list[Unit]  # acquisitions and the indices into `tiles` each serves
    failed: dict[int, str] = field(default_factory=dict)  # tile index -> why it fails
    frames: dict[int, list[Frame]] = field(default_factory=dict)  # tile index -> its frames, in unit order
    lost: dict[int, list[dict]] = field(default_factory=dict)  # tile index -> acquisitions not read, and why


def split_group(group: Group, size: int) -> list[Batch]:
    """The group's tiles in batches of at most `size`, each with the units (acquisition, its tiles) it needs.

    A batch is what is written together; its units are read with those of every other batch that needs
    the same scene (`scene_reads`); one search per group still serves them all."""
    out = []
    for start in range(0, max(len(group.tiles), 1), size):
        local = {i: i - start for i in range(start, min(start + size, len(group.tiles)))}
        units = [u.keep(local) for u in group.units]
        failed = {local[i]: reason for i, reason in group.failed.items() if i in local}
        out.append(Batch(group.window, group.tiles[start : start + size], group.year,
                         [u for u in units if u is not None], failed))  # (lost dates are found while reading)
    return out


def unit_error(acq: Acquisition, error: Exception) -> str:
    """Why a unit failed, in one line naming its item (no signed URL's query)."""
    if isinstance(error, ItemError):
        return without_queries(error)
    return without_queries(f"item {acq.item_id}: {error.__class__.__name__}: {' '.join(str(error).split())}")


def run_together(unit: Callable, jobs: list[tuple]) -> list[tuple[bool, Any]]:
    """`unit(*job)` for each job, at once in threads of this worker: (True, its result) or (False, why it
    failed) per job, in order; one failure costs only its own job."""
    def one(job: tuple) -> tuple[bool, Any]:
        try:
            return True, unit(*job)
        except Exception as error:  # an unreadable asset: this unit only
            return False, unit_error(job[0], error)

    if len(jobs) == 1:
        return [one(jobs[0])]
    # not the reader threads' pool: a unit waiting on its readers must not hold one of their threads
    return list(thread_pool("unit", UNITS_PER_TASK).map(one, jobs))


@dataclass(frozen=True)
class Read:
    """One read: a scene opened once for the tiles of every batch that it covers (or a part of them, when
    their values would be too large for one). `members`: the (batch index, unit) pairs it serves, in batch
    order; its rows are their tiles'."""

    source: Acquisition
    members: tuple[tuple[int, Unit], ...]

    def tiles(self, batches: list[Batch]) -> list[Tile]:
        return [batches[b].tiles[i] for b, u in self.members for i in u.tiles]


def _tile_bytes(tile: Tile, spec) -> int:
    masks = 0 if spec.mask_source == "none" else 2
    return 4 * (len(spec.bands) + masks) * tile.sentinel.shape[0] * tile.sentinel.shape[1]


def scene_reads(batches: list[Batch], specs: dict, limit: int = READ_BYTES) -> list[Read]:
    """One read per scene for all the batches' units that need it, so a block that tiles anywhere in the
    build share is fetched and inflated once; a read whose values would pass `limit` bytes (float32, by
    `specs[series]`) is cut, in batch order, into parts under it. Reads come in the order of the first
    batch they serve, so batches complete (and are written) from the first on."""
    members: dict[Acquisition, list[tuple[int, Unit]]] = {}
    for position, batch in enumerate(batches):
        for unit in batch.units:
            members.setdefault(unit.source, []).append((position, unit))
    reads = []
    for source, served in members.items():
        part: list[tuple[int, Unit]] = []
        held = 0
        for b, unit in served:
            size = len(unit.tiles) * _tile_bytes(batches[b].tiles[unit.tiles[0]], specs[source.series])
            if part and held + size > limit:
                reads.append(Read(source, tuple(part)))
                part, held = [], 0
            part.append((b, unit))
            held += size
        reads.append(Read(source, tuple(part)))
    return sorted(reads, key=lambda r: (r.members[0][0], r.source.sort_key))


def tasks(reads: list[Read], todo: list[int], workers: int) -> list[list[int]]:
    """The reads `todo` (indices into `reads`) in tasks: several at once for remote scenes (their requests
    wait together), one for local files (threads would only add their overhead); few reads are spread
    over every worker. Each round of `workers` tasks is dealt in turn from the next reads, so that the
    tasks of a round mix scenes (11 Sentinel-2 assets, 2 Sentinel-1) rather than stack the heavy ones."""
    remote = any(is_remote(h) for k in todo for _, h in reads[k].source.assets)
    workers = max(workers, 1)
    size = min(UNITS_PER_TASK, max(1, -(-len(todo) // workers))) if remote else 1
    out = []
    for start in range(0, len(todo), size * workers):
        round_ = todo[start : start + size * workers]
        count = -(-len(round_) // size)
        out.extend(round_[i::count] for i in range(count))
    return out


def read_batches(batches: list[Batch], unit: Callable, specs: dict, workers: int, scheduler: str | None,
                 tally: ReadTally, finish: Callable[[Batch], None], stage: Path,
                 progress: Progress | None = None, strict: bool = True) -> None:
    """Run `unit(acquisition, grids, specs[series])` -> (values per tile, blocks) once per scene over every
    tile of `batches` it covers (`scene_reads`); put each tile's frames in `batch.frames`, then call
    `finish(batch)`, in batch order, as soon as a batch's reads are all back.

    Values wait in the stage under `stage` (the build's output folder) until their batch is finished:
    memory holds one batch's frames and the reads in flight, whatever the build's size. Reads already
    staged by a killed run of the same build are not read again; the stage is removed when every batch
    is finished.
    A read that fails (after GDAL's retries) fails the tiles it covers when `strict`; otherwise its
    acquisition is recorded as lost for them (`batch.lost`) and the tiles go on without that date.

    `unit` must be a module-level function (it is pickled to worker processes)."""
    tally.units += sum(len(b.units) for b in batches)
    store = Stage(stage)
    reads = scene_reads(batches, specs)
    keys = [Stage.read_key(r.source, specs[r.source.series], unit) for r in reads]
    known: dict[int, int] = {}  # each tile's stage id, made once (a tile is in hundreds of reads)

    def ids(k: int) -> np.ndarray:
        tiles = reads[k].tiles(batches)
        for t in tiles:
            if id(t) not in known:
                known[id(t)] = tile_id(t.name, t.sentinel)
        return np.array([known[id(t)] for t in tiles], np.uint64)

    waiting = [0] * len(batches)  # reads not yet back, per batch
    for read in reads:
        for b in {b for b, _ in read.members}:
            waiting[b] += 1
    placed: dict[tuple[int, Acquisition], list[Segment]] = {}  # (batch, scene) -> where its unit's tiles are
    users: dict[Path, int] = {}  # staged part -> units of unfinished batches it holds rows of
    total, done, finished = sum(len(r.members) for r in reads), 0, 0

    def record(k: int, ok: bool, result: Any) -> None:
        nonlocal done
        read, acq = reads[k], reads[k].source
        if ok:
            staged, blocks = result
            tally.blocks += blocks
        start = 0
        for b, u in read.members:
            batch = batches[b]
            if ok:
                placed[(b, acq)] = staged.segments(start, start + len(u.tiles))
                for path in {s.path for s in placed[(b, acq)]}:
                    users[path] = users.get(path, 0) + 1
            elif strict:
                for i in u.tiles:
                    batch.failed.setdefault(i, result)
            else:
                for i in u.tiles:
                    batch.lost.setdefault(i, []).append({"item": acq.item_id, "product": acq.product,
                                                         "series": acq.series, "reason": result})
            start += len(u.tiles)
            waiting[b] -= 1
            done += 1
            if progress:
                progress("read", done, total)

    def finish_ready() -> None:
        nonlocal finished
        while finished < len(batches) and waiting[finished] == 0:
            batch, used = batches[finished], []
            for u in batch.units:  # frames in unit order, whatever order the reads came back in
                acq = u.source
                here = placed.pop((finished, acq), [])
                if not here:  # its read failed
                    continue
                used.extend({s.path for s in here})
                values = np.concatenate([load(s) for s in here])
                for i, v in zip(u.tiles, values):
                    batch.frames.setdefault(i, []).append(Frame(acq.sort_key, acq.product, acq.item_id, acq.series, v))
            finish(batch)
            batch.frames.clear()
            for path in used:
                users[path] -= 1
                if users[path] == 0:
                    store.drop(path)
            finished += 1

    todo = []
    for k in range(len(reads)):
        staged = store.find(keys[k], ids(k))
        if staged is None:
            todo.append(k)
        else:  # read by a killed run of this build
            record(k, True, (staged, BlockCount()))
    finish_ready()
    with executor(workers, scheduler) as pool:
        chunks = tasks(reads, todo, workers)
        in_flight: dict[Future, list[int]] = {}
        queue = iter(chunks)
        limit = max(4, TASKS_PER_WORKER * max(workers, 1))

        def submit() -> None:
            for chunk in queue:
                jobs = [(reads[k].source, tuple(t.sentinel for t in reads[k].tiles(batches)),
                         specs[reads[k].source.series]) for k in chunk]
                in_flight[pool.submit(run_together, unit, jobs)] = chunk
                if len(in_flight) >= limit:
                    return

        submit()
        while in_flight:
            ready, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in sorted(ready, key=lambda f: in_flight[f][0]):
                chunk = in_flight.pop(future)
                try:
                    outcomes = future.result()
                except Exception as error:  # a worker that died: every read of its task; the build goes on
                    outcomes = [(False, unit_error(reads[k].source, error)) for k in chunk]
                for k, (ok, result) in zip(chunk, outcomes):
                    if ok:
                        values, blocks = result
                        result = (store.put(keys[k], ids(k), values), blocks)
                    record(k, ok, result)
            finish_ready()
            submit()
    store.clear()
