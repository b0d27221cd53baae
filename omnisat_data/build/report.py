"""What a build did, for OUT/build-report.json and the console: one report type for every build.

TreeSatAI-TS counts tiles (named by file stem), PASTIS-HD patches (named by integer ID_PATCH); both
say what was built, skipped, failed (and why), what the searches refused, which dates a read error
cost, how the plan was come by and what was read. The parts only one format has (TreeSatAI-TS dates
per tile and frame completion, PASTIS-HD series and NORM files) are written for that format only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .plan import PlanUse
from .sentinel import BlockCount

REPORT = "build-report.json"


@dataclass
class BuildReport:
    format: str  # "treesatai-ts" or "pastis-hd"
    total: int = 0  # tiles (patches) the build covers
    done: list[str | int] = field(default_factory=list)  # built by this run
    skipped: list[str | int] = field(default_factory=list)  # already complete
    failed: dict[str, str] = field(default_factory=dict)  # tile -> reason
    refused_items: dict[str, str] = field(default_factory=dict)  # item id -> reason
    source_problems: dict[str, str] = field(default_factory=dict)  # file or tile -> what is wrong with it
    searches: int = 0
    units: int = 0
    # tile -> acquisitions a permanent read error took from its series ({item, product, series, reason});
    # such a tile is written without them and not marked complete, so a rerun tries them again
    lost: dict[str, list[dict]] = field(default_factory=dict)
    blocks: BlockCount = BlockCount()  # COG (JPEG 2000) blocks read, and the footprint minimum
    plan: dict[str, PlanUse] = field(default_factory=dict)  # per plan section: searched, or read from plan.json
    seconds: float = 0.0
    # TreeSatAI-TS
    tile_dates: int = 0
    dates: dict[str, dict[str, int]] = field(default_factory=dict)  # tile -> series -> dates written
    # tile -> series -> {"mosaicked": frames completed from another granule or slice of their take,
    # "dropped": takes left incomplete even mosaicked (not written)}; only tiles with either
    completion: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)  # split -> files its list holds
    # PASTIS-HD
    series_done: list[int] = field(default_factory=list)  # patches whose Sentinel series this run wrote
    norm_written: list[str] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        """Compressed bytes of the COG blocks read."""
        return self.blocks.read_bytes

    @property
    def empty_splits(self) -> list[str]:
        """Split lists written without a file: the OmniSat and AnySat loaders cannot read them."""
        return [name for name, count in self.splits.items() if count == 0]

    @property
    def unit_name(self) -> str:
        return "patches" if self.format == "pastis-hd" else "tiles"

    def to_dict(self) -> dict:
        out = {"format": self.format, "plan": {k: v.to_dict() for k, v in sorted(self.plan.items())},
               self.unit_name: {"total": self.total, "done": len(self.done), "skipped": len(self.skipped),
                                "failed": len(self.failed)},
               "failed": self.failed, "refused_items": self.refused_items, "source_problems": self.source_problems,
               "searches": self.searches, "units": self.units, "lost": dict(sorted(self.lost.items())),
               "bytes_read": self.blocks.read_bytes, "seconds": round(self.seconds, 2),
               # the footprint minimum: the blocks the tiles' sampling windows intersect (bytes: COG only)
               "blocks": {"read": self.blocks.read, "minimum": self.blocks.minimum,
                          "bytes_minimum": self.blocks.minimum_bytes}}
        if self.format == "treesatai-ts":
            out.update({"tile_dates": self.tile_dates, "dates": dict(sorted(self.dates.items())),
                        "frames": {key: sum(c[key] for tile in self.completion.values() for c in tile.values())
                                   for key in ("mosaicked", "dropped")},
                        "completion": dict(sorted(self.completion.items())), "splits": self.splits})
        else:
            out.update({"series_done": len(self.series_done), "norm_written": self.norm_written})
        return out
