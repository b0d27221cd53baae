"""What the reads gave and the writers have not yet written, on disk: OUT/.staged-reads.

The engine reads each scene once for every tile of the build it covers (build/engine.py), so a scene's
values for thousands of tiles arrive long before those tiles' other dates: they wait here instead of in
memory, a part per read: `.npy` of the unit's values (rows in the order of its tiles), `.ids.npy` naming
the tiles (64-bit hashes of name and grid), and a `.json` that marks the part whole. Each file is written
under a temporary name and renamed, the `.json` last, so a read is staged whole or not at all. A part
is removed once every batch it serves is written, so the stage holds what is read and not yet written,
not the whole build. A killed build leaves its staged reads for the rerun, which reads only what is
missing; a build that ran to its end removes the folder (the build wrote it; nothing else is ever there).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnisat_data.io.atomic import replacing, write_json

STAGE = ".staged-reads"  # not ".omnisat-": that marks temporary files (io/atomic.py), which a build removes


@dataclass(frozen=True)
class Segment:
    """Consecutive tiles' values in one staged part: rows `rows` of the `.npy` file at `path`."""

    path: Path
    rows: np.ndarray  # int32


@dataclass(frozen=True)
class Staged:
    """Where a read's tiles are staged: tile k in row `row[k]` of part `parts[part[k]]` (one part when the
    read was just staged; several when a killed run staged it for other tile sets)."""

    parts: tuple[Path, ...]
    part: np.ndarray  # int32, per tile
    row: np.ndarray  # int32, per tile

    def segments(self, start: int, stop: int) -> list[Segment]:
        """Tiles [start, stop) of the read, as runs in one part each."""
        part, row = self.part[start:stop], self.row[start:stop]
        cuts = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist(), len(part)]
        return [Segment(self.parts[part[a]], row[a:b]) for a, b in zip(cuts, cuts[1:]) if b > a]


def tile_id(name: str, grid) -> int:
    """A tile as the stage knows it (a 64-bit hash): its name and grid (a changed source grid is another tile)."""
    key = f"{name} {json.dumps(grid.to_dict(), sort_keys=True)}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


class Stage:
    def __init__(self, out: Path):
        self.root = out / STAGE

    @staticmethod
    def read_key(source, spec, unit) -> str:
        """A read, whatever tiles it serves: the scene, what its values follow from (not how its bytes are
        fetched: header size, timeout, concurrency), and the function reading it."""
        values = dataclasses.replace(spec, header_bytes=0, timeout_s=0.0, concurrency=0)
        text = json.dumps([source.to_dict(), repr(values), f"{unit.__module__}.{unit.__qualname__}"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def put(self, read: str, tiles: np.ndarray, values: np.ndarray) -> Staged:
        """Stage a read's values, rows in the order of `tiles` (`tile_ids`)."""
        folder = self.root / read
        name = hashlib.sha256(tiles.tobytes()).hexdigest()[:16]
        path = folder / f"{name}.npy"
        for target, array in ((path, values), (folder / f"{name}.ids.npy", tiles)):
            with replacing(target) as tmp, open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
        write_json(folder / f"{name}.json", {"tiles": len(tiles)})  # last: the part is whole
        return Staged((path,), np.zeros(len(tiles), np.int32), np.arange(len(tiles), dtype=np.int32))

    def find(self, read: str, tiles: np.ndarray) -> Staged | None:
        """Where the stage holds each of `tiles` (`tile_ids`) for this read (a killed run's parts), or None
        when it lacks any of them."""
        folder = self.root / read
        if not folder.is_dir():
            return None
        parts: list[Path] = []
        ids: list[np.ndarray] = []
        for index in sorted(folder.glob("*.json")):
            path = index.with_suffix(".npy")
            try:
                ids.append(np.load(path.with_suffix(".ids.npy"), allow_pickle=False))
            except (OSError, ValueError):
                continue
            if path.is_file():
                parts.append(path)
            else:
                ids.pop()
        if not parts:
            return None
        staged = np.concatenate(ids)
        part = np.concatenate([np.full(len(a), k, np.int32) for k, a in enumerate(ids)])
        row = np.concatenate([np.arange(len(a), dtype=np.int32) for a in ids])
        known, first = np.unique(staged, return_index=True)
        at = np.minimum(np.searchsorted(known, tiles), len(known) - 1)
        if not np.array_equal(known[at], tiles):
            return None
        return Staged(tuple(parts), part[first[at]], row[first[at]])

    def drop(self, path: Path) -> None:
        """A staged part no batch of this build needs any more (its index first: never half a part)."""
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        path.with_suffix(".ids.npy").unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def load(segment: Segment) -> np.ndarray:
    """The segment's rows, copied out of its staged part."""
    return np.load(segment.path, mmap_mode="r", allow_pickle=False)[segment.rows]
