"""TreeSatAI-TS for training: samples as OmniSat's reference loader builds them, and a zero-padding collate.

A sample is a dict: "aerial" (4, 300, 300) float32 raw DN; per series "s2" (T, 10, 6, 6), "s1-asc",
"s1-des" (T, 2, 6, 6) float32 with "<series>_dates" (T,) int64 day of year (1..366, from the product
names); "label" (15,) float32 multi-hot (genus fraction > 0.07); "name". Tiles without any genus
above the threshold are dropped, in every split, as the reference does.

Values are raw, as the reference feeds them; `normalize=True` standardises each series channel with
the per-band mean and std the build wrote into the STAC manifest (the aerial image stays raw: a
BatchNorm follows its first convolution).

Evaluation is deterministic by default (centre 300 px crop, the first `max_dates` dates in time
order when a series is longer, evenly spaced); `reference=True` gives the reference behaviour
(random crop even at test time, a random unsorted subset of 50 dates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from omnisat_data.formats.treesatai import LABELS
from omnisat_data.formats.treesatai_ts import GENERA, H5_NAMES, LABEL_THRESHOLD, UNLABELLED, split_list

from .common import DataError, read_tile

CROP = 300
MODALITIES = ("aerial", "s2", "s1-asc", "s1-des")





def multi_hot(entries: list, threshold: float = LABEL_THRESHOLD) -> np.ndarray:
    out = np.zeros(len(GENERA), np.float32)
    for genus, fraction in entries:
        if genus == UNLABELLED:
            continue
        if genus not in GENERA:
            raise DataError(f"unknown genus {genus!r} (TreeSatAI has {', '.join(GENERA)})")
        if fraction > threshold:
            out[GENERA.index(genus)] = 1.0
    return out


@dataclass(frozen=True)
class TreeSatSample:
    name: str
    label: np.ndarray


def read_split(root: Path, split: str, unlabelled: bool = False) -> list[TreeSatSample]:
    """The tiles of a split with at least one genus above the threshold (and, with `unlabelled`, the tiles
    an own-area build marked unlabelled: pretraining samples); one clear error when a file is missing."""
    root = Path(root)
    lst = split_list(root, split)
    labels_path = root / LABELS
    for path in (lst, labels_path):
        if not path.is_file():
            raise DataError(f"{path}: not found (is {root} a TreeSatAI-TS tree?)")
    labels = json.loads(labels_path.read_text())
    out = []
    for line in lst.read_text().splitlines():
        file = line.strip()
        if not file:
            continue
        if file not in labels:
            raise DataError(f"{labels_path}: no labels for {file} (listed in {lst.name})")
        label = multi_hot(labels[file])
        if label.any() or (unlabelled and [entry[0] for entry in labels[file]] == [UNLABELLED]):
            out.append(TreeSatSample(file.rsplit(".", 1)[0], label))
    return out


def label_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a `fraction` of the rows kept by multi-label iterative stratification (Sechidis et al.,
    2011, what scikit-multilearn's iterative_train_test_split does): the rarest label is dealt out first,
    each example to the part that still wants that label most, so every genus keeps about `fraction` of
    its examples. Deterministic for a seed; returned sorted."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    positive = labels > 0.5
    want = np.array([fraction, 1 - fraction])[:, None] * positive.sum(axis=0)[None].astype(float)  # (2, C)
    want_total = np.array([fraction * n, (1 - fraction) * n])
    part = np.full(n, -1)
    remaining = np.ones(n, bool)
    while remaining.any():
        left = positive[remaining].sum(axis=0)
        if not left.any():  # examples without any label: to whichever part still wants more
            for i in rng.permutation(np.flatnonzero(remaining)):
                part[i] = int(np.argmax(want_total + rng.random(2) * 1e-9))
                want_total[part[i]] -= 1
            break
        rarest = np.flatnonzero(left == left[left > 0].min())
        label = int(rng.choice(rarest))
        for i in rng.permutation(np.flatnonzero(remaining & positive[:, label])):
            score = np.stack([want[:, label], want_total, rng.random(2)], axis=1)
            k = int(max(range(2), key=lambda j: tuple(score[j])))
            part[i] = k
            remaining[i] = False
            want[k] -= positive[i]
            want_total[k] -= 1
    return np.sort(np.flatnonzero(part == 0))


def check_modalities(root: Path, modalities: tuple[str, ...], samples: list[TreeSatSample]) -> None:
    """Fail before training when a modality's files are absent (checked on the first tile)."""
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise DataError(f"unknown modalities {sorted(unknown)}; TreeSatAI-TS has {', '.join(MODALITIES)}")
    if not samples:
        return
    name = samples[0].name
    if "aerial" in modalities and not (root / "aerial" / f"{name}.tif").is_file():
        raise DataError(f"{root / 'aerial' / (name + '.tif')}: missing (modality aerial)")
    series = [m for m in modalities if m != "aerial"]
    if series:
        h5 = root / "sentinel" / f"{name}.h5"
        if not h5.is_file():
            raise DataError(f"{h5}: missing (modalities {', '.join(series)})")
        with h5py.File(h5, "r") as f:
            for m in series:
                if f"{H5_NAMES[m]}-data" not in f:
                    raise DataError(f"{h5}: no {H5_NAMES[m]}-data (modality {m})")


def channel_statistics(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(C,) mean and std as (C, 1, 1) float32 arrays that broadcast over (T, C, H, W); std floored."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return mean.reshape(-1, 1, 1), np.maximum(std, 1e-6).reshape(-1, 1, 1)


def standardise(values: np.ndarray, statistics: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """(T, C, H, W) float32 values minus the channel means, over the channel stds (unchanged when None)."""
    if statistics is None:
        return values
    mean, std = statistics
    return ((values - mean) / std).astype(np.float32)


def manifest_statistics(root: Path, modalities: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (mean, std) of each series from `stac/collection.json` (written by `omnisat-data build`)."""
    path = Path(root) / "stac" / "collection.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; normalize needs the STAC manifest an omnisat-data build writes")
    stats = json.loads(path.read_text()).get("summaries", {}).get("omnisat:band_statistics", {})
    out = {}
    for m in modalities:
        if m == "aerial":
            continue
        entry = stats.get(f"{H5_NAMES[m]}-data")
        if entry is None:
            raise DataError(f"{path}: no band statistics for {H5_NAMES[m]}-data (modality {m})")
        out[m] = channel_statistics(entry["mean"], entry["std"])
    return out


def _fill_nan(data: np.ndarray) -> np.ndarray:
    """NaN -> the frame's per-channel spatial mean (OmniSat's preprocessing), 0 if a channel is all NaN."""
    if not np.isnan(data).any():
        return data
    with np.errstate(invalid="ignore"):
        count = (~np.isnan(data)).sum(axis=(2, 3), keepdims=True)
        means = np.where(count > 0, np.nansum(data, axis=(2, 3), keepdims=True) / np.maximum(count, 1), 0.0)
    return np.where(np.isnan(data), means, data).astype(np.float32)


class TreeSatTS(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, split: str, modalities: tuple[str, ...], train: bool = False,
                 max_dates: int = 50, reference: bool = False, seed: int = 0, label_fraction: float = 1.0,
                 cache: str | Path | None = None, normalize: bool = False, unlabelled: bool = False):
        self.root = Path(root)
        self.samples = read_split(self.root, split, unlabelled)
        check_modalities(self.root, modalities, self.samples)
        # the packed cache holds the whole split; a label fraction selects from it
        self.packed = None
        if cache is not None:
            from .packed import open_packed

            self.packed = open_packed(self.root, split, [s.name for s in self.samples], tuple(modalities), Path(cache))
        if label_fraction < 1.0:
            keep = label_subset(np.stack([s.label for s in self.samples]), label_fraction, seed)
            self.samples = [self.samples[i] for i in keep]
        self.modalities = tuple(modalities)
        self.statistics = manifest_statistics(self.root, self.modalities) if normalize else {}
        self.train = train
        self.max_dates = max_dates
        self.reference = reference
        self.seed = seed
        self.epoch = 0  # random choices depend on (seed, epoch, index): reproducible, and resumable

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of plain integer indices; a sampler that yields (epoch, index) keys overrides it, which is
        what reaches persistent DataLoader workers (their copy of the dataset never sees this call)."""
        self.epoch = epoch

    def _dates(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if n <= self.max_dates:
            return np.arange(n)
        if self.train or self.reference:
            return (
                rng.permutation(n)[: self.max_dates]
                if self.reference
                else np.sort(rng.permutation(n)[: self.max_dates])
            )
        return np.linspace(0, n - 1, self.max_dates).round().astype(int)  # deterministic, spread over the year

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.samples[index]
        rng = np.random.default_rng((self.seed, epoch, index))
        if self.packed is not None:
            image, series = self.packed.tile(sample.name, self.modalities)
        else:
            image, series = read_tile(self.root, sample.name, self.modalities)
        out: dict = {"name": sample.name, "label": torch.from_numpy(sample.label)}
        if image is not None:
            h, w = image.shape[1:]
            if self.train or self.reference:
                r, c = int(rng.integers(0, h - CROP + 1)), int(rng.integers(0, w - CROP + 1))
            else:
                r, c = (h - CROP) // 2, (w - CROP) // 2
            out["aerial"] = torch.from_numpy(image[:, r : r + CROP, c : c + CROP].astype(np.float32))
        for m, (data, dates) in series.items():
            keep = self._dates(len(dates), rng)
            out[m] = torch.from_numpy(standardise(_fill_nan(data[keep]), self.statistics.get(m)))
            out[f"{m}_dates"] = torch.from_numpy(dates[keep].astype(np.int64))
        return out


def collate(samples: list[dict]) -> dict:
    """Stack; right-pad every series (and its dates, with 0 = padding) to the batch's longest."""
    batch: dict = {"name": [s["name"] for s in samples], "label": torch.stack([s["label"] for s in samples])}
    if "aerial" in samples[0]:
        batch["aerial"] = torch.stack([s["aerial"] for s in samples])
    for m in ("s2", "s1-asc", "s1-des"):
        if m not in samples[0]:
            continue
        t = max(max(len(s[f"{m}_dates"]) for s in samples), 1)
        first = samples[0][m]
        data = torch.zeros((len(samples), t) + tuple(first.shape[1:]), dtype=first.dtype)
        dates = torch.zeros((len(samples), t), dtype=torch.long)
        for b, s in enumerate(samples):
            n = len(s[f"{m}_dates"])
            data[b, :n], dates[b, :n] = s[m], s[f"{m}_dates"]
        batch[m], batch[f"{m}_dates"] = data, dates
    return batch
