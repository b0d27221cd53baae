"""Build recipes: where each modality comes from and how it is put on the tile grid (TOML, validated).

A recipe names, per modality, the catalog (a STAC API URL or a local item file), the collection,
the asset keys in output band order, the resolution, the resampling, and optional CQL2 filters.
`load_recipe` checks every field and raises `RecipeError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnisat_data.io.toml_file import TomlFileError, read_toml

RESAMPLINGS = ("nearest", "bilinear", "cubic", "average")
SIGNING = ("auto", "always", "never")
MASK_SOURCES = ("probability", "scl", "none")


def series_year(year: int, first_year: int = 2017) -> int:
    """TreeSatAI-TS rule: the series covers the VHR year, or `first_year` if earlier."""
    return max(int(year), first_year)


def time_window(year: int, first_year: int = 2017) -> str:
    """One calendar year (see `series_year`) as a STAC datetime interval."""
    y = series_year(year, first_year)
    return f"{y}-01-01T00:00:00Z/{y}-12-31T23:59:59Z"


class RecipeError(ValueError):
    """A recipe field is missing or wrong; the message names the file and the field."""


@dataclass(frozen=True)
class SourceRecipe:
    """One modality's source."""

    catalog: str  # STAC API URL (http/https) or item file (.ndjson, .json, .parquet), relative to the recipe
    collection: str
    assets: tuple[str, ...]  # output band order, in canonical keys (catalog aliases are resolved on read)
    resolution: float  # metres per output pixel of this modality
    resampling: str = "bilinear"
    filter: dict[str, Any] | None = None  # CQL2-JSON, e.g. {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 80]}
    sign: str = "auto"  # Planetary Computer SAS signing of hrefs: when the host needs it, always, never
    header_bytes: int = 16384  # bytes fetched when opening a COG: its header and tile index (>= 1024)
    timeout_s: float = 30.0  # the bound on every HTTP wait (connect, request; a stalled transfer: half of it)
    # assets of one scene read at once, each from its own thread: requests in flight per worker process
    # (object storage answers each after tens of ms; one at a time, a build waits on latency)
    concurrency: int = 8
    # Sentinel-2 only
    masks: tuple[str, ...] = ()  # snow and cloud probability assets, in that order
    mask_source: str = "probability"  # "scl": derive both from the scene classification (catalogs without them)
    mask_resampling: str = "bilinear"
    harmonize: bool = True  # subtract 1000 DN from baseline >= 04.00 scenes, unless the catalog already did
    # VHR only: the image's bands (1-based) in output order, e.g. NAIP's R, G, B, NIR as TreeSatAI's NIR, G, B, R:
    # [4, 2, 3, 1]; empty: every band as stored
    bands: tuple[int, ...] = ()


@dataclass(frozen=True)
class Recipe:
    format: str  # "treesatai-ts" | "pastis-hd"
    s2: SourceRecipe
    s1: SourceRecipe
    vhr: SourceRecipe | None = None
    first_year: int = 2017  # TreeSatAI-TS: the series covers the aerial year, or this year if earlier
    group_size_m: float = 5000.0  # tiles within one cell of this size share one search
    period: tuple[str, str] | None = None  # PASTIS-HD: first and last day (ISO) of the Sentinel series
    path: Path | None = field(default=None, compare=False)

    def time_window(self, year: int) -> str:
        return time_window(year, self.first_year)

    def period_window(self) -> str:
        """`period` as a STAC datetime interval (the PASTIS-HD series); RecipeError when it is missing."""
        if self.period is None:
            raise RecipeError(f"{self.path or 'recipe'}: period: missing: the Sentinel series are searched over it "
                              '(e.g. period = ["2018-09-01", "2019-11-30"])')
        return f"{self.period[0]}T00:00:00Z/{self.period[1]}T23:59:59Z"

    def with_catalog(self, catalog: str) -> Recipe:
        """Every modality from one catalog (the CLI's --catalog)."""
        replace = dataclasses.replace
        return replace(self, s2=replace(self.s2, catalog=catalog), s1=replace(self.s1, catalog=catalog),
                       vhr=self.vhr and replace(self.vhr, catalog=catalog))


def _source(where: str, table: Any, base: Path | None) -> SourceRecipe:
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: must be a table")
    names = {f.name for f in dataclasses.fields(SourceRecipe)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise RecipeError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(names))})")
    for required in ("catalog", "collection", "assets", "resolution"):
        if required not in table:
            raise RecipeError(f"{where}.{required}: missing")

    def text(key: str, choices: tuple[str, ...] | None = None) -> str:
        value = table[key]
        if not isinstance(value, str) or not value:
            raise RecipeError(f"{where}.{key}: expected a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise RecipeError(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    def keys(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise RecipeError(f"{where}.{key}: expected a list of asset keys, got {value!r}")
        if len(set(value)) != len(value):
            raise RecipeError(f"{where}.{key}: repeated asset keys {value}")
        return tuple(value)

    values: dict[str, Any] = {"collection": text("collection"), "assets": keys("assets")}
    if not values["assets"]:
        raise RecipeError(f"{where}.assets: empty")
    catalog = text("catalog")
    if not catalog.startswith(("http://", "https://")) and base is not None and not Path(catalog).is_absolute():
        catalog = str((base / catalog).resolve())
    values["catalog"] = catalog
    resolution = table["resolution"]
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or resolution <= 0:
        raise RecipeError(f"{where}.resolution: expected a positive number of metres, got {resolution!r}")
    values["resolution"] = float(resolution)
    for key, choices in (("resampling", RESAMPLINGS), ("mask_resampling", RESAMPLINGS), ("sign", SIGNING),
                         ("mask_source", MASK_SOURCES)):
        if key in table:
            values[key] = text(key, choices)
    if "masks" in table:
        values["masks"] = keys("masks")
    if "filter" in table:
        from omnisat_data.stac.cql2 import UnsupportedFilter, check

        try:
            check(table["filter"])
        except UnsupportedFilter as error:
            raise RecipeError(f"{where}.filter: {error}") from None
        values["filter"] = table["filter"]
    if "header_bytes" in table:
        value = table["header_bytes"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
            raise RecipeError(f"{where}.header_bytes: expected a whole number of bytes >= 1024, got {value!r}")
        values["header_bytes"] = value
    if "timeout_s" in table:
        value = table["timeout_s"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 3600:
            raise RecipeError(f"{where}.timeout_s: expected seconds from 1 to 3600, got {value!r}")
        values["timeout_s"] = float(value)
    if "concurrency" in table:
        value = table["concurrency"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise RecipeError(f"{where}.concurrency: expected assets read at once from 1 to 64, got {value!r}")
        values["concurrency"] = value
    if "bands" in table:
        value = table["bands"]
        if (not isinstance(value, list) or not value or len(set(value)) != len(value)
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise RecipeError(f"{where}.bands: expected distinct band numbers from 1 (e.g. [4, 2, 3, 1]), "
                              f"got {value!r}")
        values["bands"] = tuple(value)
    if "harmonize" in table:
        if not isinstance(table["harmonize"], bool):
            raise RecipeError(f"{where}.harmonize: expected true or false")
        values["harmonize"] = table["harmonize"]
    return SourceRecipe(**values)


def parse_recipe(data: dict[str, Any], where: str = "recipe", base: Path | None = None) -> Recipe:
    known = {"format", "first_year", "group_size_m", "period", "s2", "s1", "vhr"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    fmt = data.get("format")
    if fmt not in ("treesatai-ts", "pastis-hd"):
        raise RecipeError(f"{where}: format: {fmt!r} is not one of treesatai-ts, pastis-hd")
    for section in ("s2", "s1"):
        if section not in data:
            raise RecipeError(f"{where}: [{section}] missing")
        if isinstance(data[section], dict) and "bands" in data[section]:
            raise RecipeError(f"{where}: [{section}].bands: only [vhr] takes bands (Sentinel assets are one band "
                              "each: list them in assets)")
    first_year = data.get("first_year", 2017)
    if isinstance(first_year, bool) or not isinstance(first_year, int):
        raise RecipeError(f"{where}: first_year: expected a year, got {first_year!r}")
    group = data.get("group_size_m", 5000.0)
    if isinstance(group, bool) or not isinstance(group, (int, float)) or group <= 0:
        raise RecipeError(f"{where}: group_size_m: expected a positive number, got {group!r}")
    period = data.get("period")
    if period is not None:
        try:
            first, last = (dt.date.fromisoformat(d) for d in period)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: period: expected [first day, last day] as ISO dates, got {period!r}") from None
        if first > last:
            raise RecipeError(f"{where}: period: {period[0]} is after {period[1]}")
        period = (first.isoformat(), last.isoformat())
    s2 = _source(f"{where}: [s2]", data["s2"], base)
    s1 = _source(f"{where}: [s1]", data["s1"], base)
    vhr = _source(f"{where}: [vhr]", data["vhr"], base) if "vhr" in data else None
    if s2.mask_source == "probability" and len(s2.masks) not in (0, 2):
        raise RecipeError(
            f"{where}: [s2].masks: expected the snow and cloud probability assets (2), got {list(s2.masks)}"
        )
    return Recipe(format=fmt, s2=s2, s1=s1, vhr=vhr, first_year=first_year, group_size_m=float(group), period=period,
                  path=None)


def load_recipe(path: str | Path, catalog: str | None = None) -> Recipe:
    """The recipe in `path`; with `catalog` (the CLI's --catalog), every modality from that catalog."""
    path = Path(path)
    try:
        data = read_toml(path, "recipe", "recipes/*.toml")
    except TomlFileError as error:
        raise RecipeError(str(error)) from None
    recipe = dataclasses.replace(parse_recipe(data, str(path), path.parent.resolve()), path=path)
    return recipe.with_catalog(catalog) if catalog else recipe
