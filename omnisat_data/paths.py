"""Names from the outside world (tile names, item ids) made safe to use as one path component."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_component(name: str, what: str = "name") -> str:
    """`name` with every character outside [A-Za-z0-9._+-] replaced by "_"; never "", "." or "..".

    An id such as "../../x" becomes ".._.._x": it stays inside the folder it is joined to.
    """
    cleaned = _UNSAFE.sub("_", str(name))
    if cleaned.strip(".") == "":
        raise ValueError(f"{what} {name!r} cannot name a file")
    return cleaned
