"""Read a TOML file a user names (a recipe, a training config), with one-line errors that name it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class TomlFileError(ValueError):
    """The file cannot be read as TOML; the message names it and says why."""


def read_toml(path: str | Path, kind: str, example: str) -> dict[str, Any]:
    """The document at `path`; `kind` ("recipe", "config") and `example` ("recipes/*.toml") word the errors."""
    path = Path(path)
    if path.is_dir():
        raise TomlFileError(f"{path}: a folder, not a {kind} file ({example})")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TomlFileError(f"{path}: no such {kind}") from None
    except UnicodeDecodeError as error:
        raise TomlFileError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise TomlFileError(f"{path}: not valid TOML ({error})") from None
