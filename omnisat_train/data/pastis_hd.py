"""PASTIS-HD for training: samples as OmniSat's reference loader builds them (datasets spec sections 3-4).

A sample: "aerial" (3, 1280, 1280) float32 SPOT R, G, B (no crop: the reference uses the identity
transform); "s2" (T, 10, 128, 128) float32 reflectance x 10000; "s1-asc", "s1-des" (T, 3, 128, 128)
float32 dB (VV, VH, VV - VH); "<series>_dates" days since 2018-09-01 (0-based) from metadata.geojson;
"label" (18,) float32: the classes present in TARGET channel 0 without background (0) and void (19).
Splits are folds: train 1-3, val 4, test 5 (the reference's), or any mapping given. Values are raw,
as the reference feeds them; `normalize=True` standardises each series channel with the
`NORM_<SAT>_patch.json` statistics averaged over the training folds (as the PASTIS loaders do).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import rasterio
import torch

from omnisat_data.formats.pastis import CLASS_NAMES, CROP_IDS

from .common import DataError
from .treesatai_ts import channel_statistics, standardise

CLASSES = tuple(CLASS_NAMES[i] for i in CROP_IDS)  # the classification's classes: the crops, ids 1..18
REFERENCE_DAY = dt.date(2018, 9, 1)
FOLDS = {"train": (1, 2, 3), "val": (4,), "test": (5,)}
SERIES = {"s2": ("DATA_S2", "S2", "dates-S2"), "s1-asc": ("DATA_S1A", "S1A", "dates-S1A"),
          "s1-des": ("DATA_S1D", "S1D", "dates-S1D")}
SPOT = Path("DATA_SPOT") / "PASTIS_SPOT6_RVB_1M00_2019"
MODALITIES = ("aerial", "s2", "s1-asc", "s1-des")


def days_since_reference(yyyymmdd: int) -> int:
    return (dt.datetime.strptime(str(yyyymmdd), "%Y%m%d").date() - REFERENCE_DAY).days


def presence(target: np.ndarray) -> np.ndarray:
    """18-dim multi-hot of the classes in a TARGET channel 0 (ids 1..18; 0 background and 19 void dropped)."""
    out = np.zeros(len(CLASSES), np.float32)
    ids = np.unique(target)
    ids = ids[(ids >= 1) & (ids <= len(CLASSES))]
    out[ids - 1] = 1.0
    return out


NORM_FILES = {"s2": "NORM_S2_patch.json", "s1-asc": "NORM_S1A_patch.json", "s1-des": "NORM_S1D_patch.json"}


def norm_statistics(root: Path, modalities: tuple[str, ...], folds: tuple[int, ...]) -> dict:
    """Per-channel (mean, std) of each series: the NORM files' per-fold values averaged over `folds`."""
    out = {}
    for m in modalities:
        if m == "aerial":
            continue
        path = Path(root) / NORM_FILES[m]
        if not path.is_file():
            raise DataError(f"{path}: not found (normalize needs the NORM files of a PASTIS tree)")
        table = json.loads(path.read_text())
        missing = [f"Fold_{k}" for k in folds if f"Fold_{k}" not in table]
        if missing:
            raise DataError(f"{path}: no statistics for {', '.join(missing)}")
        out[m] = channel_statistics(np.mean([table[f"Fold_{k}"]["mean"] for k in folds], axis=0),
                                    np.mean([table[f"Fold_{k}"]["std"] for k in folds], axis=0))
    return out


def _dates(value) -> list[int]:
    if isinstance(value, str):
        value = json.loads(value)
    return [int(v) for v in value.values()]


class PastisHD(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, split: str, modalities: tuple[str, ...], train: bool = False,
                 max_dates: int = 50, reference: bool = False, seed: int = 0, folds: dict | None = None,
                 normalize: bool = False):
        self.root = Path(root)
        meta = self.root / "metadata.geojson"
        if not meta.is_file():
            raise DataError(f"{meta}: not found (is {root} a PASTIS-HD tree?)")
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise DataError(f"unknown modalities {sorted(unknown)}; PASTIS-HD has {', '.join(MODALITIES)}")
        wanted = (folds or FOLDS)[split]
        self.features = [f["properties"] for f in json.loads(meta.read_text())["features"]
                         if int(f["properties"].get("Fold", 0)) in wanted]
        self.modalities = tuple(modalities)
        self.statistics = norm_statistics(self.root, self.modalities, (folds or FOLDS)["train"]) if normalize else {}
        for props in self.features[:1]:  # missing modality files fail before training
            pid = props["ID_PATCH"]
            for m in self.modalities:
                path = (self.root / SPOT / f"SPOT6_RVB_1M00_2019_{pid}.tif" if m == "aerial"
                        else self.root / SERIES[m][0] / f"{SERIES[m][1]}_{pid}.npy")
                if not path.is_file():
                    raise DataError(f"{path}: missing (modality {m})")
        self.train, self.max_dates, self.reference, self.seed = train, max_dates, reference, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.features)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _keep(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if n <= self.max_dates:
            return np.arange(n)
        if self.train or self.reference:
            chosen = rng.permutation(n)[: self.max_dates]
            return chosen if self.reference else np.sort(chosen)
        return np.linspace(0, n - 1, self.max_dates).round().astype(int)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)  # see TreeSatTS.set_epoch
        props = self.features[index]
        pid = props["ID_PATCH"]
        rng = np.random.default_rng((self.seed, epoch, index))
        target = np.load(self.root / "ANNOTATIONS" / f"TARGET_{pid}.npy")
        out: dict = {"name": str(pid), "label": torch.from_numpy(presence(target[0]))}
        if "aerial" in self.modalities:
            with rasterio.open(self.root / SPOT / f"SPOT6_RVB_1M00_2019_{pid}.tif") as src:
                out["aerial"] = torch.from_numpy(src.read().astype(np.float32))
        for m in self.modalities:
            if m == "aerial":
                continue
            folder, prefix, prop = SERIES[m]
            data = np.load(self.root / folder / f"{prefix}_{pid}.npy")
            dates = np.array([days_since_reference(d) for d in _dates(props[prop])], np.int64)
            if len(dates) != len(data):
                raise DataError(
                    f"{self.root / folder / f'{prefix}_{pid}.npy'}: {len(data)} frames, {prop} lists {len(dates)}"
                )
            keep = self._keep(len(data), rng)
            out[m] = torch.from_numpy(standardise(data[keep].astype(np.float32), self.statistics.get(m)))
            out[f"{m}_dates"] = torch.from_numpy(dates[keep])
        return out
