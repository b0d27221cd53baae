"""Files that appear under their final name only once complete: write to a temporary name, then rename.

A killed process leaves at most a `.<name>.omnisat-<pid>.tmp` file behind, never a truncated file under
the real name (builds remove such leftovers, and only those, when they start again).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_TAG = "omnisat-"  # in every temporary name we make: what marks a leftover as ours to remove


def temporary_path(path: Path) -> Path:
    """Where to write `path` before renaming it (same folder, so the rename is atomic); makes the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{TEMPORARY_TAG}{os.getpid()}.tmp")


FULL_BYTES = 1 << 20  # less free space than this when a write fails: the disk is full, whatever the writer said


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Write to the yielded temporary path: renamed to `path` when the block ends, removed when it raises
    (a full disk, a failed encoder), so that no failure leaves a temporary file behind.

    A full disk is raised as OSError(ENOSPC) naming `path`, whichever way the writer reported it (numpy,
    torch and h5py each have their own)."""
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as error:
        if _disk_full(error, path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _disk_full(error: Exception, path: Path) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(path.parent).free < FULL_BYTES  # measured before the temporary file goes
    except OSError:
        return False


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, obj, sort_keys: bool = False) -> None:
    """Indented JSON. Key order is kept unless asked: PASTIS `dates-*` objects must stay in array order."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")


def place_copy(src: Path, dst: Path) -> None:
    """`dst` with the bytes of `src`: a hard link where possible (no second copy on disk), else a copy."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    src = Path(os.path.realpath(src))  # a symlink in the source: its target's bytes, never a link pointing out
    with replacing(dst) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def remove_stale_temporaries(out: Path) -> None:
    """Our temporary files left by a killed run (".<name>.omnisat-<pid>.tmp"): never valid, always safe to
    drop. Anyone else's ".*.tmp" is left alone."""
    for tmp in out.rglob(f".*.{TEMPORARY_TAG}*.tmp"):
        tmp.unlink(missing_ok=True)
