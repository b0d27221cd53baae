"""Where a build's units of work run: in this process, a local pool of processes, or a Dask cluster.

All three are `concurrent.futures` executors, so the build code is the same everywhere. On Dask
(`--scheduler tcp://HOST:PORT`, a scheduler and workers started by the user, e.g. with dask-jobqueue
or on Kubernetes) every unit is retried twice on another worker if its worker dies; units write
their own outputs (or return small arrays), so no raster is held on the client. GDAL settings travel
with each unit (`rasterio.Env` inside it), so workers need no configuration beyond the package.
Inside a worker, `thread_pool` gives the threads that keep its requests in flight together.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

DASK_RETRIES = 2


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops the build in one line (no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def max_local_workers() -> int:
    """The most worker processes a local pool starts: two per core (reads wait on I/O part of the time)."""
    return 2 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class SchedulerError(RuntimeError):
    """The Dask scheduler cannot be reached or used; the message names its address."""


@contextlib.contextmanager
def executor(workers: int, scheduler: str | None = None) -> Iterator[Executor]:
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise SchedulerError("--scheduler needs the distributed package (pip install distributed)") from None
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as error:
            raise SchedulerError(f"scheduler {scheduler}: cannot connect ({' '.join(str(error).split())})") from None
        try:
            with client.get_executor(retries=DASK_RETRIES, pure=False) as pool:
                yield pool
        finally:
            client.close()
        return
    if workers <= 0:
        with ThreadPoolExecutor(max_workers=1) as pool:  # in order, in this process (debugging, tests)
            yield pool
        return
    # spawn: the parent may run threads (servers, progress); forked GDAL state is not safe to share. More
    # processes than cores only add memory (each holds its own GDAL and numpy), so the pool is capped.
    with ProcessPoolExecutor(max_workers=min(workers, max_local_workers()), initializer=_ignore_interrupts,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


_THREADS: dict[tuple[str, int], ThreadPoolExecutor] = {}


def thread_pool(name: str, size: int) -> ThreadPoolExecutor:
    """This process's pool of `size` threads for `name`, made on first use and kept: the reader threads
    of a worker (build/engine.py, build/sentinel.py) serve unit after unit, so that GDAL's per-thread
    HTTP connections stay open (kept alive) instead of one per unit. Per process, never shared with
    the workers: each makes its own."""
    key = (name, size)
    if key not in _THREADS:
        _THREADS[key] = ThreadPoolExecutor(size, thread_name_prefix=name)
    return _THREADS[key]


def check_scheduler(address: str) -> None:
    """Fail early, in one line, when a Dask scheduler cannot be reached."""
    with executor(0, address):
        pass
