"""Pixel-wise mosaics of frames that image the same ground at the same time: the first valid value wins.

Both dataset formats store series without nodata: PASTIS one frame per day, TreeSatAI-TS one frame
per Sentinel-2 datatake (or Sentinel-1 pass). A frame that lacks pixels (a swath edge, the edge of a
granule or slice) is completed here from the other frames of its day or datatake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Missing = Callable[[np.ndarray], np.ndarray]  # (C, H, W) frame -> (H, W) True where any channel lacks data


def nan_missing(frame: np.ndarray) -> np.ndarray:
    return ~np.isfinite(frame).all(axis=0)


def first_valid(frames: Sequence[np.ndarray], missing: Missing = nan_missing) -> tuple[np.ndarray, list[int]]:
    """The mosaic of `frames` in the order given (each pixel from the first frame that has it, all its
    channels together) and the indices of the frames that gave pixels to it."""
    mosaic = frames[0].copy()
    used = [0]
    for k, frame in enumerate(frames[1:], start=1):
        hole = missing(mosaic)
        if not hole.any():
            break
        fill = hole & ~missing(frame)
        if fill.any():
            mosaic[:, fill] = frame[:, fill]
            used.append(k)
    return mosaic, used
