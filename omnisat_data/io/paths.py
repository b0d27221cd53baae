"""Paths from the outside world: names (tile names, item ids) made safe as one path component, and outputs
kept apart from inputs."""

from __future__ import annotations

import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_component(name: str, what: str = "name") -> str:
    """`name` with every character outside [A-Za-z0-9._+-] replaced by "_"; never "", "." or "..".

    An id such as "../../x" becomes ".._.._x": it stays inside the folder it is joined to.
    """
    cleaned = _UNSAFE.sub("_", str(name))
    if cleaned.strip(".") == "":
        raise ValueError(f"{what} {name!r} cannot name a file")
    return cleaned


def check_apart(out: Path, source: Path, option: str = "--source") -> None:
    """A build never writes into what it reads: `out` must be neither `source`, nor inside it, nor hold it."""
    o, s = Path(out).resolve(), Path(source).resolve()
    if o == s or s in o.parents:
        raise ValueError(f"--out {out} is {'' if o == s else 'inside '}{option} {source}: a build never writes into "
                         "what it reads; choose another --out")
    if o in s.parents:
        raise ValueError(f"{option} {source} is inside --out {out}: choose an --out outside it")


_QUERY = re.compile(r"(\b(?:https?|s3|gs)://[^\s?'\")]+)\?[^\s'\")]*")


def without_queries(text: str) -> str:
    """`text` with the query string of every URL in it cut (a signed URL's token is a secret): what any
    message, report or log line that may quote an href goes through."""
    return _QUERY.sub(r"\1?…", str(text))
