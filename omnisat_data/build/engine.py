"""The builds' engine: run a plan's units, one read per scene and batch of tiles, many in flight.

Every build (TreeSatAI-TS, PASTIS-HD, own areas) plans first (build/plan.py: groups, one search per
group and modality, OUT/plan.json), then runs the plan here:
  1. `split_group`: a group's tiles in batches (what is held in memory until written);
  2. `read_batches`: one unit of work per (acquisition, batch), run in a pool of worker processes or
     on a Dask cluster, a bounded window of batches in flight; each finished batch goes to the
     build's writer, which turns its frames into files.
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

IN_FLIGHT = 3  # batches whose units are queued at once
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

    A batch is what is held in memory until its tiles are written; each asset is opened once per batch
    (one search per group still serves them all)."""
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


def read_batches(batches: list[Batch], unit: Callable, specs: dict, workers: int, scheduler: str | None,
                 tally: ReadTally, finish: Callable[[Batch], None], progress: Progress | None = None,
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
        def submit(batch: Batch) -> list[tuple[Future, list[Unit]]]:
            tasks = []
            # local files wait on no one: one unit per task there (threads would only add their overhead)
            size = UNITS_PER_TASK if any(is_remote(h) for u in batch.units for _, h in u.source.assets) else 1
            for start in range(0, len(batch.units), size):
                chunk = batch.units[start : start + size]
                jobs = [(u.source, tuple(batch.tiles[i].sentinel for i in u.tiles), specs[u.source.series])
                        for u in chunk]
                tasks.append((pool.submit(run_together, unit, jobs), chunk))
            return tasks

        # A window of IN_FLIGHT batches: the pool stays busy while memory holds at most that many batches' frames.
        queue = iter(batches)
        window = [(b, submit(b)) for b in (next(queue, None) for _ in range(IN_FLIGHT)) if b is not None]
        while window:
            batch, tasks = window.pop(0)
            for future, chunk in tasks:  # in submission order
                try:
                    outcomes = future.result()
                except Exception as error:  # a worker that died: every unit of its task; the build goes on
                    outcomes = [(False, unit_error(u.source, error)) for u in chunk]
                for u, (ok, result) in zip(chunk, outcomes):
                    acq = u.source
                    if ok:
                        values, blocks = result
                        tally.blocks += blocks
                        for row, i in enumerate(u.tiles):
                            batch.frames.setdefault(i, []).append(
                                Frame(acq.sort_key, acq.product, acq.item_id, acq.series, values[row]))
                    else:
                        for i in u.tiles:
                            if strict:
                                batch.failed.setdefault(i, result)
                            else:
                                batch.lost.setdefault(i, []).append({"item": acq.item_id, "product": acq.product,
                                                                     "series": acq.series, "reason": result})
                    done += 1
                    if progress:
                        progress("read", done, total)
            finish(batch)
            batch.frames.clear()
            following = next(queue, None)
            if following is not None:
                window.append((following, submit(following)))
