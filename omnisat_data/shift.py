"""Sub-pixel shift between a very-high-resolution band and a coarse (Sentinel) band on the same grid.

Gradient least squares (Lucas-Kanade) with gain and offset: the coarse image M is modelled as
g * R_d + o, where R_d is the VHR image box-averaged over each coarse pixel's footprint displaced by
d = (dx, dy) metres. The box averages come from the VHR image's summed-area table, so they are exact
for any fractional displacement (no interpolation of the coarse image, which has no margin on a 6 x 6
tile), and so are the derivatives dR/dd (differences of box averages 1/10 pixel apart). Each step
solves the linear fit M = g R_d + o + a . dR/dd for (g, o, a) and moves d by a / g.

Convention: d is the geolocation error of the coarse image, as the world generator records it: the
coarse pixel at (x, y) shows the ground at (x - dx, y - dy); metres, x east, y north.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PIXELS = 12  # four unknowns: at least three times as many equations
MIN_R2 = 0.6
MAX_CONDITION = 200.0
MAX_SHIFT_PX = 2.0  # a step beyond this has diverged (or the tile is not the image's)


@dataclass(frozen=True)
class ShiftEstimate:
    dx: float  # metres
    dy: float
    gain: float
    offset: float
    r2: float  # fit quality: 1 - residual variance / target variance
    condition: float  # of the standardised normal matrix: low gradient energy makes it large
    pixels: int
    ok: bool
    reason: str = ""


def summed_area(image: np.ndarray) -> np.ndarray:
    """S[i, j] = sum of image[:i, :j] (float64, shape (H+1, W+1))."""
    s = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    s[1:, 1:] = np.cumsum(np.cumsum(image.astype(np.float64), axis=0), axis=1)
    return s


def _sat_at(s: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the summed-area table: exact for the piecewise-constant image."""
    h, w = s.shape[0] - 1, s.shape[1] - 1
    inside = (r >= 0) & (r <= h) & (c >= 0) & (c <= w)
    r, c = np.clip(r, 0, h), np.clip(c, 0, w)
    r0, c0 = np.minimum(np.floor(r).astype(int), h - 1), np.minimum(np.floor(c).astype(int), w - 1)
    fr, fc = r - r0, c - c0
    v = (s[r0, c0] * (1 - fr) * (1 - fc) + s[r0 + 1, c0] * fr * (1 - fc)
         + s[r0, c0 + 1] * (1 - fr) * fc + s[r0 + 1, c0 + 1] * fr * fc)
    return np.where(inside, v, np.nan)


def box_means(s: np.ndarray, origin: tuple[float, float], block: float, shape: tuple[int, int],
              shift_px: tuple = (0.0, 0.0)) -> np.ndarray:
    """Mean of the VHR image over each coarse pixel's footprint, displaced by shift_px (rows, cols) in
    VHR pixels (scalars, or arrays of shape (T, 1, 1) for T displacements at once); NaN where the
    footprint leaves the image."""
    rows = origin[0] + np.asarray(shift_px[0]) + block * np.arange(shape[0])[:, None] + np.zeros(shape)
    cols = origin[1] + np.asarray(shift_px[1]) + block * np.arange(shape[1])[None, :] + np.zeros(shape)
    total = (_sat_at(s, rows + block, cols + block) - _sat_at(s, rows, cols + block)
             - _sat_at(s, rows + block, cols) + _sat_at(s, rows, cols))
    return total / (block * block)


def _solve(a: np.ndarray, m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Batched weighted least squares: a (T, N, K), m (T, N), w (T, N) in {0, 1} -> (T, K); NaN if singular."""
    a = a * w[..., None]
    scale = np.sqrt((a * a).sum(axis=1))  # column norms: solve in standardised units
    scale[scale == 0] = 1.0
    a = a / scale[:, None, :]
    ata = np.einsum("tnk,tnl->tkl", a, a)
    atb = np.einsum("tnk,tn->tk", a, m * w)
    out = np.full(atb.shape, np.nan)
    ok = np.abs(np.linalg.det(ata)) > 1e-12
    out[ok] = np.linalg.solve(ata[ok], atb[ok][..., None])[..., 0]
    return out / scale


def estimate_shifts(vhr: np.ndarray, targets: np.ndarray, vhr_res: float, origin: tuple[float, float],
                    block: float, iterations: int = 8, sat: np.ndarray | None = None) -> list[ShiftEstimate]:
    """Shift of each coarse image in `targets` (T, h, w; NaN = masked) relative to `vhr` (one band, fine).

    `origin`: VHR pixel (row, col) of the coarse grid's top-left corner; `block`: VHR pixels per coarse
    pixel. All T estimates are iterated together (vectorised). Each comes with its quality figures;
    `ok` is False, with a reason, when it is unreliable.
    """
    s = summed_area(vhr) if sat is None else sat
    targets = np.asarray(targets, dtype=np.float64)
    t, shape = targets.shape[0], targets.shape[1:]
    coarse = block * vhr_res
    step = 0.1 * block  # VHR pixels: derivatives over +-1/10 coarse pixel
    d = np.zeros((2, t, 1, 1))  # dx, dy in metres
    diverged = np.zeros(t, bool)
    for _ in range(iterations):
        # ground at (x - dx, y - dy): columns move by -dx, rows (southward) by +dy
        rows, cols = d[1] / vhr_res, -d[0] / vhr_res
        r = box_means(s, origin, block, shape, (rows, cols))
        jx = (box_means(s, origin, block, shape, (rows, cols - step))
              - box_means(s, origin, block, shape, (rows, cols + step))) / (2 * step * vhr_res)
        jy = (box_means(s, origin, block, shape, (rows + step, cols))
              - box_means(s, origin, block, shape, (rows - step, cols))) / (2 * step * vhr_res)
        valid = np.isfinite(targets) & np.isfinite(r) & np.isfinite(jx) & np.isfinite(jy)
        a = np.stack([r, np.ones_like(r), jx, jy], axis=-1).reshape(t, -1, 4)
        w = valid.reshape(t, -1).astype(float)
        a = np.nan_to_num(a)
        m = np.nan_to_num(targets.reshape(t, -1))
        coef = _solve(a, m, w)
        gain = coef[:, 0]
        step_d = coef[:, 2:4] / np.where(np.abs(gain) > 1e-9, gain, np.nan)[:, None]
        step_d = np.where(np.isfinite(step_d) & ~diverged[:, None], step_d, 0.0)
        d = d + step_d.T[:, :, None, None]
        diverged |= np.hypot(d[0, :, 0, 0], d[1, :, 0, 0]) > MAX_SHIFT_PX * coarse
        if np.all(np.hypot(step_d[:, 0], step_d[:, 1]) < 1e-4 * coarse):
            break
    out = []
    for k in range(t):
        n = int(w[k].sum())
        dx, dy = float(d[0, k, 0, 0]), float(d[1, k, 0, 0])
        if n < MIN_PIXELS:
            out.append(ShiftEstimate(dx, dy, np.nan, np.nan, np.nan, np.inf, n, False, f"{n} usable pixels"))
            continue
        if diverged[k] or not np.isfinite(coef[k]).all():
            out.append(ShiftEstimate(dx, dy, np.nan, np.nan, np.nan, np.inf, n, False, "diverged"))
            continue
        keep = w[k] > 0
        ak, mk = a[k][keep], m[k][keep]
        residual = mk - ak @ coef[k]
        r2 = float(1 - residual.var() / mk.var()) if mk.var() > 0 else 0.0
        standard = ak[:, [0, 2, 3]] - ak[:, [0, 2, 3]].mean(axis=0)
        norms = np.linalg.norm(standard, axis=0)
        if (norms == 0).any():
            out.append(ShiftEstimate(dx, dy, float(coef[k, 0]), float(coef[k, 1]), r2, np.inf, n, False, "flat image"))
            continue
        sv = np.linalg.svd(standard / norms, compute_uv=False)
        condition = float(sv[0] / sv[-1]) if sv[-1] > 0 else np.inf
        reason = ""
        if r2 < MIN_R2:
            reason = f"poor fit (R2 {r2:.2f})"
        elif condition > MAX_CONDITION:
            reason = f"too little texture (condition {condition:.0f})"
        out.append(ShiftEstimate(dx, dy, float(coef[k, 0]), float(coef[k, 1]), r2, condition, n, not reason, reason))
    return out
