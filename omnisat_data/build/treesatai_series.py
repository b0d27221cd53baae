"""One tile's TreeSatAI-TS series from the frames read for it: one frame per datatake or pass, no NaN."""

from __future__ import annotations

import dataclasses

import numpy as np

from omnisat_data.formats.treesatai_ts import MASK_CHANNELS, Series
from omnisat_data.geo.mosaic import first_valid
from omnisat_data.stac.products import same_take

from .engine import Frame


def _valid(values: np.ndarray) -> int:
    return int(np.isfinite(values).all(axis=0).sum())


def assemble(frames: list[Frame], n_bands: int, sentinel2: bool, shape: tuple[int, int] = (6, 6)) -> Series:
    """The frames of one sensor over one tile -> a Series sorted in time, no NaN.

    `values` holds the data bands and, for Sentinel-2, the snow and cloud layers after them (if read).
    The frames of one Sentinel-2 datatake or one Sentinel-1 pass image the same ground at the same
    time (`same_take`). Sentinel-2 keeps one frame per datatake: its first complete granule in time
    order, else the mosaic of its granules, the one with the most valid pixels first (its product name
    is stored). Sentinel-1 keeps every complete slice (the released files hold both slices of a pass
    where they overlap, with equal values); a pass with no complete slice gives the mosaic of its
    slices. A take whose mosaic still lacks pixels is not written: the released series hold no NaN.
    """
    takes: dict[tuple, list] = {}
    empty = 0
    for frame in sorted(frames, key=lambda f: f.sort_key):
        if not np.isfinite(frame.values).any():
            empty += 1
        else:
            takes.setdefault(same_take(frame.product), []).append(frame)
    kept, mosaicked, dropped = [], 0, 0
    full = shape[0] * shape[1]
    for members in takes.values():
        complete = [f for f in members if _valid(f.values) == full]
        if complete:
            kept.extend(complete[:1] if sentinel2 else complete)
            continue
        ranked = sorted(members, key=lambda f: -_valid(f.values))  # stable: the first in time on a tie
        values, used = first_valid([f.values for f in ranked])
        if _valid(values) == full:
            kept.append(dataclasses.replace(ranked[0], values=values))
            mosaicked += len(used) > 1
        else:
            dropped += 1
    kept.sort(key=lambda f: f.sort_key)
    data = np.zeros((len(kept), n_bands) + shape, np.float32)
    masks = np.zeros((len(kept), MASK_CHANNELS) + shape, np.float32) if sentinel2 else None
    for k, frame in enumerate(kept):
        data[k] = frame.values[:n_bands]
        if sentinel2:
            masks[k, : frame.values.shape[0] - n_bands] = frame.values[n_bands:]
    return Series(tuple(f.product for f in kept), tuple(f.item_id for f in kept), data, masks, mosaicked, dropped,
                  empty)
