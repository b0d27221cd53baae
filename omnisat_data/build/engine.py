"""The builds' engine: run a plan's units, one read per scene and wave of tiles, many in flight.

Every build (TreeSatAI-TS, PASTIS-HD, own areas) plans first (build/plan.py: groups, one search per
group and modality, OUT/plan.json), then runs the plan here:
  1. `split_group`: a group's tiles in batches (what is held in memory until written);
  2. `read_batches`: the batches in waves; one read per scene and wave (the scene opened once for every
     tile of the wave it covers), run in a pool of worker processes or on a Dask cluster, two waves in
     flight; each finished batch goes to the build's writer, which turns its frames into files.
A unit that fails fails the tiles it covers (reason recorded); the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnisat_data.geo.tile import Tile
from omnisat_data.io.paths import without_queries
from omnisat_data.io.workers import executor, thread_pool
from omnisat_data.stac.acquisitions import Acquisition, is_remote
from omnisat_data.stac.items import ItemError

from .plan import Group, Progress, ReadTally, Unit

# Tiles read together: a scene is opened once for all of a wave's tiles it covers, so each block the
# wave's cells share is fetched and inflated once (5 km cells in 10.24 km blocks: read three times when
# each cell had its own read; benchmarks/build_cloud.py). Two waves are in flight: their frames are what
# the build holds in memory (6 x 6 values per band and date: ~1 KB per tile-date).
WAVE_TILES = 512
# Units a worker runs at once, each in a thread of its own: while one waits on object storage (tens of ms
# per request) the others' requests are in flight. The threads share the worker's reader threads
# (build/sentinel.py), so the requests in flight per worker stay bounded by the recipe's concurrency.
UNITS_PER_TASK = 4


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

    A batch is what is written together; its units are read with those of the other batches of its wave
    (`read_batches`); one search per group still serves them all."""
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
    """One read: a scene opened once for the tiles of every batch of a wave that it covers. `members`: the
    (batch position in the wave, unit) pairs it serves, in the wave's order; its rows are their tiles'."""

    source: Acquisition
    members: tuple[tuple[int, Unit], ...]


def waves(batches: list[Batch], tiles: int) -> list[list[Batch]]:
    """Consecutive batches of at most `tiles` tiles together (at least one batch each)."""
    out: list[list[Batch]] = []
    held = 0
    for batch in batches:
        if not out or held + len(batch.tiles) > tiles:
            out.append([])
            held = 0
        out[-1].append(batch)
        held += len(batch.tiles)
    return out


def scene_reads(wave: list[Batch]) -> list[Read]:
    """The wave's units, one read per scene: units of different batches (neighbouring cells) that need the
    same acquisition become one read, so a block the cells share is fetched and inflated once."""
    members: dict[Acquisition, list[tuple[int, Unit]]] = {}
    for position, batch in enumerate(wave):
        for unit in batch.units:
            members.setdefault(unit.source, []).append((position, unit))
    return [Read(source, tuple(m)) for source, m in members.items()]


def read_batches(batches: list[Batch], unit: Callable, specs: dict, workers: int, scheduler: str | None,
                 tally: ReadTally, finish: Callable[[Batch], None], progress: Progress | None = None,
                 strict: bool = True) -> None:
    """Run `unit(acquisition, grids, specs[series])` -> (values per tile, blocks) for every scene over the
    tiles of every batch; append each tile's frames to `batch.frames`, then call `finish(batch)` in batch
    order.

    Batches are read in waves of at most WAVE_TILES tiles, one read per scene and wave (`scene_reads`),
    two waves in flight: the pool stays busy while memory holds at most two waves' frames.
    A read that fails (after GDAL's retries) fails the tiles it covers when `strict`; otherwise its
    acquisition is recorded as lost for them (`batch.lost`) and the tiles go on without that date.

    `unit` must be a module-level function (it is pickled to worker processes)."""
    total = sum(len(b.units) for b in batches)
    tally.units += total
    done = 0
    with executor(workers, scheduler) as pool:
        def submit(wave: list[Batch]) -> list[tuple[Future, list[Read]]]:
            reads = scene_reads(wave)
            tasks = []
            # local files wait on no one: one read per task there (threads would only add their overhead);
            # a wave of few scenes is spread over every worker
            remote = any(is_remote(h) for r in reads for _, h in r.source.assets)
            size = min(UNITS_PER_TASK, -(-len(reads) // max(workers, 1))) if remote else 1
            for start in range(0, len(reads), size):
                chunk = reads[start : start + size]
                jobs = [(r.source, tuple(wave[b].tiles[i].sentinel for b, u in r.members for i in u.tiles),
                         specs[r.source.series]) for r in chunk]
                tasks.append((pool.submit(run_together, unit, jobs), chunk))
            return tasks

        def record(wave: list[Batch], read: Read, ok: bool, result: Any) -> None:
            nonlocal done
            acq = read.source
            if ok:
                values, blocks = result
                tally.blocks += blocks
            row = 0
            for position, u in read.members:
                batch = wave[position]
                for i in u.tiles:
                    if ok:
                        batch.frames.setdefault(i, []).append(
                            Frame(acq.sort_key, acq.product, acq.item_id, acq.series, values[row]))
                    elif strict:
                        batch.failed.setdefault(i, result)
                    else:
                        batch.lost.setdefault(i, []).append({"item": acq.item_id, "product": acq.product,
                                                             "series": acq.series, "reason": result})
                    row += 1
                done += 1
                if progress:
                    progress("read", done, total)

        queue = iter(waves(batches, WAVE_TILES))
        window = [(w, submit(w)) for w in (next(queue, None) for _ in range(2)) if w is not None]
        while window:
            wave, tasks = window.pop(0)
            for future, chunk in tasks:  # in submission order
                try:
                    outcomes = future.result()
                except Exception as error:  # a worker that died: every read of its task; the build goes on
                    outcomes = [(False, unit_error(r.source, error)) for r in chunk]
                for read, (ok, result) in zip(chunk, outcomes):
                    record(wave, read, ok, result)
            for batch in wave:
                finish(batch)
                batch.frames.clear()
            following = next(queue, None)
            if following is not None:
                window.append((following, submit(following)))
