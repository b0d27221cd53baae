"""How errors read on the console: one line that names the file and says what to do."""

from __future__ import annotations

import errno

RERUN = "run the same command again; it resumes where it stopped"


def error_text(error: BaseException, rerun: str = RERUN) -> str:
    """The one line for `error`. A full disk says which file could not be written and how to go on (every
    output is written under a temporary name first, so nothing half-written is left to mistrust)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = error.filename2 or error.filename
        return f"no space left on device{f' writing {where}' if where else ''}: free some space and {rerun}"
    return " ".join(str(error).split())
