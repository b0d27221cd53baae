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
CONVERGED_PX = 1e-3  # a step smaller than this (0.01 m at 10 m) ends the iterations of a date


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
    """S[..., i, j] = sum of image[..., :i, :j] (float64, shape (..., H+1, W+1))."""
    s = np.zeros(image.shape[:-2] + (image.shape[-2] + 1, image.shape[-1] + 1))
    s[..., 1:, 1:] = np.cumsum(np.cumsum(image.astype(np.float64), axis=-2), axis=-1)
    return s


def _sat_at(s: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the summed-area table: exact for the piecewise-constant image."""
    h, w = s.shape[-2] - 1, s.shape[-1] - 1
    inside = (r >= 0) & (r <= h) & (c >= 0) & (c <= w)
    r, c = np.clip(r, 0, h), np.clip(c, 0, w)
    r0, c0 = np.minimum(np.floor(r).astype(int), h - 1), np.minimum(np.floor(c).astype(int), w - 1)
    fr, fc = r - r0, c - c0
    flat = s.reshape(s.shape[:-2] + (-1,))
    i = r0 * (w + 1) + c0  # flat indices: one gather per corner, cheaper than 2-D fancy indexing
    v = ((flat[..., i] * (1 - fc) + flat[..., i + 1] * fc) * (1 - fr)
         + (flat[..., i + w + 1] * (1 - fc) + flat[..., i + w + 2] * fc) * fr)
    return np.where(inside, v, np.nan)


def box_means(s: np.ndarray, origin: tuple[float, float], block: float, shape: tuple[int, int],
              shift_px: tuple = (0.0, 0.0)) -> np.ndarray:
    """Mean of the VHR image over each coarse pixel's footprint, displaced by shift_px (rows, cols) in
    VHR pixels (scalars, or arrays of shape (T, 1, 1) for T displacements at once); NaN where the
    footprint leaves the image."""
    # Neighbouring boxes share corners: sample the table once on the (h+1) x (w+1) lattice of corners.
    rows = origin[0] + np.asarray(shift_px[0]) + block * np.arange(shape[0] + 1)[:, None]
    cols = origin[1] + np.asarray(shift_px[1]) + block * np.arange(shape[1] + 1)[None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    corners = _sat_at(s, rows, cols)
    total = corners[..., 1:, 1:] - corners[..., :-1, 1:] - corners[..., 1:, :-1] + corners[..., :-1, :-1]
    return total / (block * block)


def model_means(s: np.ndarray, origin: tuple[float, float], block: float, shape: tuple[int, int],
                shift_px: tuple = (0.0, 0.0), lattice: tuple[float, float] | None = None) -> np.ndarray:
    """What the coarse image should hold: box means on the coarse grid itself (`lattice` None), or box
    means on the sensor's own pixel lattice, bilinearly interpolated onto the coarse grid (how a build
    resamples a scene onto a tile grid). `lattice` = (fy, fx): the grid's fractional offset from the
    lattice in coarse pixels (the lattice pixel holding a grid pixel's centre starts fy, fx pixels
    above / left of it)."""
    if lattice is None:
        return box_means(s, origin, block, shape, shift_px)
    fy, fx = lattice
    big = box_means(s, (origin[0] - fy * block, origin[1] - fx * block), block, (shape[0] + 1, shape[1] + 1),
                    shift_px)
    top = big[..., :-1, :-1] * (1 - fx) + big[..., :-1, 1:] * fx
    bottom = big[..., 1:, :-1] * (1 - fx) + big[..., 1:, 1:] * fx
    return top * (1 - fy) + bottom * fy


def with_classes(vhr: np.ndarray, classes: np.ndarray, block: int, min_pixels: int = 20) -> np.ndarray:
    """VHR bands (K, H, W) split by a land-cover map on the coarse grid (h, w), as estimator channels:
    band k times the indicator of class c, for every k and c, then the indicators themselves.

    Fitting the target as a linear map of these channels gives each class its own gains and offset
    (crops change apart between the VHR date and a Sentinel-2 date: one map for the whole patch turned
    that into a 0.3-0.8 m bias per PASTIS patch), while the class map moves with the shift like the
    image does, so the class edges cannot pin the estimate to the map's grid. Classes under
    `min_pixels` coarse pixels are pooled into one."""
    ids, counts = np.unique(classes, return_counts=True)
    small = ids[counts < min_pixels]
    classes = np.where(np.isin(classes, small), -1, classes)
    bands = vhr[None] if vhr.ndim == 2 else vhr
    fine = fine_classes(bands, classes, block)
    masks = [(fine == c).astype(np.float32) for c in np.unique(classes)]
    return np.stack([b * m for m in masks for b in bands] + masks)


def fine_classes(bands: np.ndarray, classes: np.ndarray, block: int) -> np.ndarray:
    """The coarse class map (h, w) brought to the VHR grid (H, W), its edges moved to where the VHR image
    shows them: each VHR pixel takes, among the classes of its coarse pixel and the 8 around it, the one
    whose mean spectrum (over pixels well inside that class) is nearest to its own. A rasterised
    annotation puts edges on the coarse lattice, up to half a coarse pixel from the parcel's real edge."""
    h, w = classes.shape
    H, W = bands.shape[-2:]

    def up(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, block, axis=0), block, axis=1)[:H, :W]

    padded = np.pad(classes, 1, mode="edge")
    around = np.stack([padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    interior = up((around == classes).all(axis=0))
    fine = up(classes)
    ids = np.unique(classes)
    means = np.zeros((len(ids), bands.shape[0]))
    for k, c in enumerate(ids):
        inside = interior & (fine == c)
        pick = inside if inside.any() else fine == c
        means[k] = bands[:, pick].mean(axis=1)
    index = np.searchsorted(ids, around)  # (9, h, w) candidate classes as rows of `means`
    best, best_d = fine.copy(), np.full((H, W), np.inf)
    for cand in index:
        c_up = up(cand)
        d = ((bands - means[c_up].transpose(2, 0, 1)) ** 2).sum(axis=0)
        better = d < best_d
        best = np.where(better, ids[c_up], best)
        best_d = np.where(better, d, best_d)
    return best


def _solve(a: np.ndarray, m: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Batched weighted least squares: a (T, N, K), m (T, N), w (T, N) in {0, 1} -> (T, K)."""
    a = a * w[..., None]
    scale = np.sqrt((a * a).sum(axis=1))  # column norms: solve in standardised units
    scale[scale == 0] = 1.0
    a = a / scale[:, None, :]
    ata = np.einsum("tnk,tnl->tkl", a, a)
    atb = np.einsum("tnk,tn->tk", a, m * w)
    # pseudo-inverse: nearly collinear regressors (VHR bands) get the minimum-norm solution, not a failure
    out = np.einsum("tkl,tl->tk", np.linalg.pinv(ata, rcond=1e-10, hermitian=True), atb)
    return out / scale


def _gauss_newton_step(sats, targets, d, origin, block, vhr_res, lattice):
    """Design matrix (T, N, 4), pixel weights (T, N) and fit (T, 4) = (gain, offset, a_x, a_y) at shifts d
    (T, 2): target ~ gain * P + offset + a . dP/dd, P the VHR bands mapped linearly onto the target."""
    t, k = len(targets), len(sats)
    step = 0.1 * block  # VHR pixels: derivatives over +-1/10 coarse pixel
    # ground at (x - dx, y - dy): columns move by -dx, rows (southward) by +dy
    rows, cols = d[:, 1, None, None] / vhr_res, -d[:, 0, None, None] / vhr_res
    # the model and its four neighbours for the derivatives, in one evaluation: (K, 5, T, h, w)
    offsets = np.array([(0, 0), (0, -step), (0, step), (step, 0), (-step, 0)])[:, :, None, None, None]
    five = model_means(sats, origin, block, targets.shape[1:], (rows + offsets[:, 0], cols + offsets[:, 1]), lattice)
    r = five[:, 0]
    jx = (five[:, 1] - five[:, 2]) / (2 * step * vhr_res)
    jy = (five[:, 3] - five[:, 4]) / (2 * step * vhr_res)
    valid = np.isfinite(targets) & np.isfinite(five).all(axis=(0, 1))
    w = valid.reshape(t, -1).astype(float)

    def flat(x: np.ndarray) -> np.ndarray:  # (T, N, K)
        return np.nan_to_num(x.reshape(k, t, -1).transpose(1, 2, 0))

    m = np.nan_to_num(targets.reshape(t, -1))
    if k > 1:  # the spectral map: target ~ sum_k g_k R_k + o
        g = np.nan_to_num(_solve(np.concatenate([flat(r), np.ones((t, w.shape[1], 1))], axis=2), m, w)[:, :-1])
        def comp(x: np.ndarray) -> np.ndarray:
            return np.einsum("tnk,tk->tn", flat(x), g)
    else:
        def comp(x: np.ndarray) -> np.ndarray:
            return flat(x)[..., 0]
    a = np.stack([comp(r), np.ones((t, w.shape[1])), comp(jx), comp(jy)], axis=-1)
    return a, w, _solve(a, m, w)


def estimate_shifts(
    vhr: np.ndarray,
    targets: np.ndarray,
    vhr_res: float,
    origin: tuple[float, float],
    block: float,
    iterations: int = 8,
    lattice: tuple[float, float] | None = None,
) -> list[ShiftEstimate]:
    """Shift of each coarse image in `targets` (T, h, w; NaN = masked) relative to `vhr` ((H, W) or (K, H, W)).

    With K VHR bands, each step first maps them linearly onto the target (per date: K gains and an
    offset), which absorbs differences of spectral response and of phenology between land-cover
    classes that a single gain cannot, then fits the shift on that composite. `origin`: VHR pixel
    (row, col) of the coarse grid's top-left corner; `block`: VHR pixels per coarse pixel; `lattice`:
    see `model_means`. All T estimates are iterated together (vectorised); each comes with its quality
    figures, and `ok` False with a reason when it is unreliable.
    """
    sats = summed_area(vhr[None] if vhr.ndim == 2 else vhr)  # (K, H+1, W+1): all bands in one array
    targets = np.asarray(targets, dtype=np.float64)
    t, shape = targets.shape[0], targets.shape[1:]
    n_pix = shape[0] * shape[1]
    coarse = block * vhr_res
    d = np.zeros((t, 2))  # dx, dy in metres
    a, w, coef = np.zeros((t, n_pix, 4)), np.zeros((t, n_pix)), np.full((t, 4), np.nan)
    diverged = np.zeros(t, bool)
    m = targets.reshape(t, -1)
    # frames still moving: converged ones leave the loop; masked ones (too few pixels) never enter it
    active = np.isfinite(m).sum(axis=1) >= MIN_PIXELS + len(sats) - 1
    w[~active] = np.isfinite(m[~active])
    for _ in range(iterations):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        a[idx], w[idx], coef[idx] = _gauss_newton_step(sats, targets[idx], d[idx], origin, block, vhr_res, lattice)
        gain = coef[idx, 0]
        step_d = coef[idx, 2:4] / np.where(np.abs(gain) > 1e-9, gain, np.nan)[:, None]
        step_d = np.where(np.isfinite(step_d), step_d, 0.0)
        d[idx] += step_d
        diverged[idx] |= np.hypot(d[idx, 0], d[idx, 1]) > MAX_SHIFT_PX * coarse
        active[idx] = ~diverged[idx] & (np.hypot(step_d[:, 0], step_d[:, 1]) >= CONVERGED_PX * coarse)
    out = []
    for k in range(t):
        n = int(w[k].sum())
        dx, dy = float(d[k, 0]), float(d[k, 1])
        if n < MIN_PIXELS + len(sats) - 1:
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
