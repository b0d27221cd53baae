"""`omnisat-data verify-alignment`: check a built dataset's format and measure how well its modalities
line up; write a JSON report and pictures.

Flow: list tiles (optionally a deterministic sample), check each one in a pool of processes
(verify/treesatai_ts.py: check_tile), pool the shift estimates per scene and per tile (summarise), write
`report.json` atomically, then the pictures (verify/plots.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnisat_data.io.atomic import write_json
from omnisat_data.io.workers import executor

from .treesatai_ts import Layout, TileCheck, check_tile, summarise, tile_names

FORMATS = ("treesatai-ts", "pastis-hd")


@dataclass(frozen=True)
class VerifyConfig:
    dataset: Path
    format: str = "treesatai-ts"
    report: Path | None = None  # default: DATASET/alignment/report.json
    png: Path | None = None  # default: beside the report (DATASET/alignment/ when neither is given)
    max_shift_px: float = 0.5  # spec: over 0.5 px is suspect
    good_px: float = 0.2  # spec: under 0.2 px is good
    sample: int | None = None  # check this many tiles (a deterministic sample)
    workers: int = 2
    pair: str = "both"  # Sentinel-2 band the aerial bands are mapped onto: nir (B08), red (B04) or both
    worst: int = 4  # quick-looks of this many worst tiles
    # The Sentinel pixel lattice (metres, in the tile CRS) the dataset was resampled from, bilinearly:
    # "auto" = 10 for our builds (they say so in stac/collection.json), else none (the grid is the lattice).
    lattice: str = "auto"

    def __post_init__(self) -> None:
        import math

        for name in ("max_shift_px", "good_px"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected a positive number of pixels")
        if self.pair not in ("nir", "red", "both"):
            raise ValueError(f"--pair {self.pair!r}: choose nir, red or both")
        if self.sample is not None and self.sample < 1:
            raise ValueError("--sample must be at least 1")
        if self.workers < 0:
            raise ValueError("--workers must be 0 or more")

    @property
    def lattice_m(self) -> float | None:
        if self.lattice == "auto":
            return 10.0 if (Path(self.dataset) / "stac" / "collection.json").is_file() else None
        return None if self.lattice == "none" else float(self.lattice)

    @property
    def report_path(self) -> Path:
        return self.report or self.dataset / "alignment" / "report.json"

    @property
    def png_dir(self) -> Path:
        return self.png or self.report_path.parent


def unit_name(unit) -> str:
    return unit if isinstance(unit, str) else str(unit[0].id)


def sample_names(units: list, n: int | None) -> list:
    """`n` units ranked by the sha256 of their name: the same sample every run, spread over the dataset."""
    if n is None or n >= len(units):
        return units
    rank = lambda u: hashlib.sha256(unit_name(u).encode()).hexdigest()  # noqa: E731
    chosen = set(map(unit_name, sorted(units, key=rank)[:n]))
    return [u for u in units if unit_name(u) in chosen]


def _check_chunk(root: str, units: list, pair: str, lattice_m: float | None, fmt: str) -> list[TileCheck]:
    """TreeSatAI-TS: units are tile names; PASTIS-HD: (patch, its metadata feature), read once by `plan`."""
    if fmt == "pastis-hd":
        from .pastis_hd import check_patch

        return [
            check_patch(Path(root), patch, feature, "both" if pair == "both" else "red") for patch, feature in units
        ]
    layout = Layout.of(Path(root))
    return [check_tile(layout, name, pair, lattice_m) for name in units]


def check_tiles(cfg: VerifyConfig, names: list, progress: Callable[[int, int], None] | None) -> list[TileCheck]:
    size = 1 if cfg.format == "pastis-hd" else 25  # a PASTIS patch is 450 TreeSatAI tiles of pixels
    chunks = [names[i : i + size] for i in range(0, len(names), size)]
    out: list[TileCheck] = []
    with executor(cfg.workers) as pool:  # the builds' pools: spawn, capped, Ctrl-C left to this process
        n = len(chunks)
        for result in pool.map(_check_chunk, [str(cfg.dataset)] * n, chunks, [cfg.pair] * n, [cfg.lattice_m] * n,
                               [cfg.format] * n):
            out += result
            if progress:
                progress(len(out), len(names))
    return out


def quicklooks(cfg: VerifyConfig, report: dict, layout: Layout) -> list[Path]:
    import h5py
    import rasterio

    from .plots import plot_tile

    shifted = sorted(((t["shift_m"], name) for name, t in report["tiles"].items() if "shift_m" in t), reverse=True)
    paths = []
    for shift_m, name in shifted[: cfg.worst]:
        with rasterio.open(layout.aerial / f"{name}.tif") as src:
            aerial, res = src.read(), abs(src.transform.a)
        with h5py.File(layout.sentinel / f"{name}.h5", "r") as f:
            s2 = f["sen-2-data"][()]
            masks = f["sen-2-masks"][()]
        cloud = np.nanmax(masks[:, :2].reshape(len(masks), -1), axis=1, initial=0)
        frame = int(np.argmin(np.where(np.isnan(s2[:, 6]).any(axis=(1, 2)), np.inf, cloud)))
        tile = report["tiles"][name]
        paths.append(
            plot_tile(
                aerial,
                res,
                s2[frame, 6],
                (tile["dx"], tile["dy"]),
                f"{name}: {shift_m:.1f} m off once scene shifts are taken out ({tile['accepted']} estimates)",
                cfg.png_dir / f"tile_{name}.png",
            )
        )
    return paths


def plan(cfg: VerifyConfig) -> tuple[Layout | None, list]:
    """The dataset's layout and its units: TreeSatAI-TS tile names, or PASTIS-HD (patch, feature) pairs;
    one clear error when it is not a dataset."""
    if cfg.lattice not in ("auto", "none"):
        try:
            float(cfg.lattice)
        except ValueError:
            raise ValueError(f"--sentinel-lattice {cfg.lattice!r}: auto, none or metres") from None
    if cfg.format not in FORMATS:
        raise ValueError(f"--format {cfg.format}: verification of this format lands with its build "
                         f"(supported: {', '.join(FORMATS)})")
    if not Path(cfg.dataset).is_dir():
        raise FileNotFoundError(f"{cfg.dataset}: dataset folder not found")
    if cfg.format == "pastis-hd":
        from .pastis_hd import patches

        found, features, _ = patches(Path(cfg.dataset))
        return None, [(found[n], features[n]) for n in sorted(found, key=int)]
    layout = Layout.of(cfg.dataset)
    names = tile_names(layout)
    if not names:
        raise FileNotFoundError(f"{cfg.dataset}: no TreeSatAI-TS h5 files (sentinel/*.h5 or *.h5)")
    return layout, names


def verify(cfg: VerifyConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    layout, names = plan(cfg)
    chosen = sample_names(names, cfg.sample)
    checks = check_tiles(cfg, chosen, progress)
    report = summarise(checks, cfg.max_shift_px, cfg.good_px)
    if cfg.format == "pastis-hd":  # what belongs to the dataset, not to one patch
        from .pastis_hd import check_norm_files, patches

        _, _, problems = patches(Path(cfg.dataset))
        folds = {int(feature["properties"].get("Fold", 0)) for _, feature in names}
        dataset_problems = [f"patch {p}: {reason}" for p, reason in problems] + check_norm_files(
            Path(cfg.dataset), folds
        )
        report["summary"]["dataset_problems"] = dataset_problems
        report["summary"]["problems"] += len(dataset_problems)
        report["summary"]["passed"] = report["summary"]["passed"] and not dataset_problems
    report["summary"].update(dataset=str(cfg.dataset), format=cfg.format, pair=cfg.pair,
                             sentinel_lattice_m=cfg.lattice_m, tiles_in_dataset=len(names))
    report["per_tile_estimates"] = {c.name: c.shifts for c in checks}
    write_json(cfg.report_path, report)
    from .plots import plot_shifts

    pictures = [plot_shifts(report, cfg.png_dir / "shifts.png")] if report["scenes"] or report["tiles"] else []
    if layout is not None:  # quick-looks: TreeSatAI-TS tiles
        pictures += quicklooks(cfg, report, layout)
    report["pictures"] = [str(p) for p in pictures]
    return report
