"""The analytic ground truth: a continuous field over FIELD_CRS metres that every sensor renders.

The world is a land-cover map (a jittered Voronoi partition: small forest stands in the western
strip, larger crop parcels east of it) times a multi-scale texture, seen on a day of the year
through each class's phenology. Every function here is pure and vectorised: give it coordinates
(in FIELD_CRS), the pixel size of the sensor and a date, get values. A sensor of pixel size `res`
sees the field through a box PSF of that size: exactly for the texture (each sinusoid is
attenuated by its sinc response) and for land-cover edges (each class holds its share of the box:
a closed form across one straight edge, the box clipped by the stands' cells at corners); only the
straight line between the forest strip and the crop area stays a hard step. Sensors finer than
1 m see edges through a 1 m box (an anti-aliased edge).
Tests compare rendered pixels with these functions at pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .config import WorldConfig
from .legend import CLOUD, LEGEND, SNOW, backscatter_at, class_indices, spectra_at, vegetation_cover_at

FOREST_CELL = 60.0  # metres between forest-stand seeds (stands a little larger than a 60 m tile)
CROP_CELL = 170.0  # metres between parcel seeds
_N_CLASSES = len(LEGEND)


_M1, _M2, _M3 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9


@njit(cache=True)
def _hash01(i: int, j: int, salt: int) -> float:
    """Deterministic uniform [0, 1) number from integer lattice coordinates (splitmix64 finaliser)."""
    h = np.uint64(i) * np.uint64(_M1) ^ np.uint64(j) * np.uint64(_M2) ^ np.uint64(salt) * np.uint64(_M3)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return float(h >> np.uint64(11)) / 9007199254740992.0


@njit(cache=True)
def _box_beyond(e: float, box: float, nx: float, ny: float) -> float:
    """Share of a box x box square, centred at distance e >= 0 from a straight edge of unit normal
    (nx, ny), lying beyond the edge: P(S > e) for S the projection of a uniform point of the square
    onto the normal, a sum of two uniforms (a trapezoid density)."""
    a = 0.5 * box * abs(nx)
    b = 0.5 * box * abs(ny)
    if a < b:
        a, b = b, a
    if e >= a + b:
        return 0.0
    if e <= a - b:
        return 0.5 * (a - e) / a
    return (a + b - e) ** 2 / (8.0 * a * b)


@njit(cache=True)
def _voronoi(x, y, x0, y0, forest_right, salt, forest_classes, forest_cdf, crop_classes, crop_cdf, box, n_classes,
             weights, hard, cell_id):
    """Box-averaged and hard nearest-seed classification of points on two jittered lattices (forest
    west, crops east).

    weights: (n_classes, n) share of the box x box square around each point held by each class (within
    one straight edge: a closed form; across a corner: the square clipped by each seed's cell); hard:
    class of the nearest seed; cell_id: unique id of that seed's cell. box <= 0 skips the weights.
    """
    d = np.empty(9)
    su = np.empty(9)
    sv = np.empty(9)
    c = np.empty(9, dtype=np.int64)
    ids = np.empty(9, dtype=np.int64)
    share = np.empty(9)
    qu = np.empty(9)
    qv = np.empty(9)
    pu = np.empty(16)
    pv = np.empty(16)
    tu = np.empty(16)
    tv = np.empty(16)
    for p in range(x.size):
        forest = x[p] < forest_right
        cell = FOREST_CELL if forest else CROP_CELL
        s = salt + (11 if forest else 23)
        u = (x[p] - x0) / cell
        v = (y0 - y[p]) / cell
        ci = int(np.floor(u))
        cj = int(np.floor(v))
        k = 0
        for di in range(-1, 2):
            for dj in range(-1, 2):
                i = ci + di
                j = cj + dj
                su[k] = i + 0.1 + 0.8 * _hash01(i, j, s + 1)
                sv[k] = j + 0.1 + 0.8 * _hash01(i, j, s + 2)
                d[k] = np.hypot(u - su[k], v - sv[k]) * cell
                draw = _hash01(i, j, s + 3)
                if forest:
                    m = min(np.searchsorted(forest_cdf, draw, side="right"), forest_classes.size - 1)
                    c[k] = forest_classes[m]
                else:
                    m = min(np.searchsorted(crop_cdf, draw, side="right"), crop_classes.size - 1)
                    c[k] = crop_classes[m]
                ids[k] = (1 if forest else 2) * 10**9 + (i + 10**4) * 10**4 + (j + 10**4) % 10**4
                k += 1
        best = np.argmin(d)
        hard[p] = c[best]
        cell_id[p] = ids[best]
        if box > 0:
            reach = 0  # neighbours whose bisector with the nearest seed crosses the box
            last = -1
            for k in range(9):
                share[k] = 0.0
                if k == best:
                    continue
                du = (su[k] - su[best]) * cell
                dv = (sv[k] - sv[best]) * cell
                gap = np.hypot(du, dv)
                e = (d[k] * d[k] - d[best] * d[best]) / (2.0 * gap)  # distance to that bisector
                share[k] = _box_beyond(e, box, du / gap, dv / gap)
                if share[k] > 0:
                    reach += 1
                    last = k
            if reach == 0:
                weights[c[best], p] += 1.0
            elif reach == 1:  # one straight edge: the trapezoid share is exact
                weights[c[best], p] += 1.0 - share[last]
                weights[c[last], p] += share[last]
            else:  # a corner: clip the box by each involved seed's Voronoi cell
                for k in range(9):
                    qu[k] = (su[k] - u) * cell
                    qv[k] = (sv[k] - v) * cell
                for k in range(9):
                    if k == best or share[k] > 0:
                        weights[c[k], p] += _cell_share(k, qu, qv, 0.5 * box, pu, pv, tu, tv)


@njit(cache=True)
def _cell_share(k, qu, qv, h, pu, pv, tu, tv):
    """Share of the square [-h, h]^2 nearer to seed k than to the 8 other seeds (qu, qv: seeds relative
    to the square's centre): the square clipped by one half-plane per seed (Sutherland-Hodgman), then
    its area. pu, pv, tu, tv: work arrays of at least 16 vertices."""
    pu[0], pv[0], pu[1], pv[1], pu[2], pv[2], pu[3], pv[3] = -h, -h, h, -h, h, h, -h, h
    n = 4
    for j in range(9):
        if j == k or n == 0:
            continue
        # nearer to k than to j:  2 p . (q_j - q_k) <= |q_j|^2 - |q_k|^2
        au = 2.0 * (qu[j] - qu[k])
        av = 2.0 * (qv[j] - qv[k])
        b = qu[j] * qu[j] + qv[j] * qv[j] - qu[k] * qu[k] - qv[k] * qv[k]
        m = 0
        for i in range(n):
            i2 = (i + 1) % n
            f1 = au * pu[i] + av * pv[i] - b
            f2 = au * pu[i2] + av * pv[i2] - b
            if f1 <= 0:
                tu[m] = pu[i]
                tv[m] = pv[i]
                m += 1
            if (f1 < 0 < f2) or (f2 < 0 < f1):
                t = f1 / (f1 - f2)
                tu[m] = pu[i] + t * (pu[i2] - pu[i])
                tv[m] = pv[i] + t * (pv[i2] - pv[i])
                m += 1
        n = m
        for i in range(n):
            pu[i] = tu[i]
            pv[i] = tv[i]
    area = 0.0
    for i in range(n):
        i2 = (i + 1) % n
        area += pu[i] * pv[i2] - pu[i2] * pv[i]
    return abs(area) / 2.0 / (4.0 * h * h)


@dataclass(frozen=True)
class Waves:
    """A sum of plane sinusoids with unit total variance: k (n,2) rad/m, phase (n,), amplitude (n,)."""

    k: np.ndarray
    phase: np.ndarray
    amplitude: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, n: int, min_wavelength: float, max_wavelength: float,
               slope: float = 0.4) -> Waves:
        wavelength = np.exp(rng.uniform(np.log(min_wavelength), np.log(max_wavelength), n))
        theta = rng.uniform(0, np.pi, n)
        k = (2 * np.pi / wavelength)[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
        amplitude = wavelength**slope
        amplitude *= np.sqrt(2.0 / np.sum(amplitude**2))  # unit variance
        return cls(k=k, phase=rng.uniform(0, 2 * np.pi, n), amplitude=amplitude)

    def __call__(self, x: np.ndarray, y: np.ndarray, res: float = 0.0) -> np.ndarray:
        """Value at (x, y) seen through a res x res box PSF (res=0: the point value)."""
        # Box PSF of a sinusoid = the sinusoid times sinc(kx res/2) sinc(ky res/2).
        gain = self.amplitude * np.sinc(self.k[:, 0] * res / (2 * np.pi)) * np.sinc(self.k[:, 1] * res / (2 * np.pi))
        out = np.zeros(np.shape(x), dtype=np.float64)
        for (kx, ky), ph, g in zip(self.k, self.phase, gain):
            if abs(g) > 1e-4:
                out += g * np.sin(kx * x + ky * y + ph)
        return out


class Field:
    """The world's ground truth, built from a WorldConfig (coordinates relative to the AOI's top-left)."""

    def __init__(self, cfg: WorldConfig):
        self.cfg = cfg
        self.x0, self.y0 = cfg.aoi_left, cfg.aoi_top
        self.forest_right = cfg.aoi_left + cfg.forest_width
        rng = np.random.default_rng(cfg.seed)
        self.texture = Waves.random(rng, 28, 1.0, 400.0)
        self.texture_s1 = Waves.random(rng, 12, 15.0, 300.0)
        self._forest = class_indices("forest")
        self._crop = class_indices("crop")
        freq = np.array([c.frequency for c in LEGEND], dtype=float)
        self._forest_cdf = np.cumsum(freq[self._forest]) / freq[self._forest].sum()
        self._crop_cdf = np.cumsum(freq[self._crop]) / freq[self._crop].sum()

    # -- land cover -------------------------------------------------------------------------------
    def _classify(self, x, y, box: float):
        x, y = np.ascontiguousarray(x, float).ravel(), np.ascontiguousarray(y, float).ravel()
        weights = np.zeros((_N_CLASSES, x.size)) if box > 0 else np.zeros((_N_CLASSES, 0))
        hard = np.empty(x.size, dtype=np.int64)
        cell_id = np.empty(x.size, dtype=np.int64)
        _voronoi(x, y, self.x0, self.y0, self.forest_right, self.cfg.seed * 7919, self._forest, self._forest_cdf,
                 self._crop, self._crop_cdf, box, _N_CLASSES, weights, hard, cell_id)
        return weights, hard, cell_id

    def class_weights(self, x: np.ndarray, y: np.ndarray, res: float = 0.0) -> np.ndarray:
        """(n_classes, *shape) share of each class in the res x res box around each point (sums to 1);
        at least a 1 m box, so that fine sensors see anti-aliased edges."""
        shape = np.shape(x)
        weights, _, _ = self._classify(x, y, max(1.0, res))
        return weights.reshape((_N_CLASSES,) + shape)

    def land_cover(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hard class index and parcel/stand id at each point (nearest seed)."""
        shape = np.shape(x)
        _, hard, cell_id = self._classify(x, y, 0.0)
        return hard.reshape(shape), cell_id.reshape(shape)

    # -- optical -----------------------------------------------------------------------------------
    def _texture_gain(self, x, y, res):
        tex = self.texture(x - self.x0, y - self.y0, res)
        amp = np.where(x < self.forest_right, 0.12, 0.06)
        return 1.0 + amp * tex

    def basis(self, x, y, res: float) -> tuple[np.ndarray, np.ndarray]:
        """The date-independent part of the field at (x, y): class weights and texture gain.

        Scenes on the same grid with the same geolocation error share it, so renderers compute it once.
        """
        x, y = np.asarray(x, float), np.asarray(y, float)
        return self.class_weights(x, y, res), self._texture_gain(x, y, res)

    def reflectance(self, x, y, doy: float, res: float, bands: np.ndarray | None = None, basis=None) -> np.ndarray:
        """(n_bands, *shape) clear-sky surface reflectance; `bands` indexes legend.S2_BANDS."""
        w, gain = basis if basis is not None else self.basis(x, y, res)
        spectra = spectra_at(doy)
        if bands is not None:
            spectra = spectra[:, bands]
        return np.tensordot(spectra.T, w, axes=1) * gain[None]

    def vegetation_cover(self, x, y, doy: float, res: float, basis=None) -> np.ndarray:
        w, _ = basis if basis is not None else self.basis(x, y, res)
        return np.tensordot(vegetation_cover_at(doy), w, axes=1)

    # -- Sentinel-1 --------------------------------------------------------------------------------
    def backscatter(self, x, y, doy: float, res: float, descending: bool, basis=None) -> np.ndarray:
        """(2, *shape) linear gamma0 VV, VH (no speckle)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        w, _ = basis if basis is not None else self.basis(x, y, res)
        g = np.tensordot(backscatter_at(doy).T, w, axes=1)
        tex = 1.0 + 0.25 * self.texture_s1(x - self.x0, y - self.y0, res)
        return g * tex[None] * (0.92 if descending else 1.0)


@dataclass(frozen=True)
class Weather:
    """Per-scene clouds and snow: smooth blobs with a target cover, as probabilities 0-100."""

    cloud_waves: Waves
    cloud_threshold: float  # in units of the blob field's std; +inf = clear
    snow_waves: Waves
    snow_threshold: float

    @classmethod
    def random(cls, rng: np.random.Generator, month: int, snow_months: tuple[int, ...]) -> Weather:
        clear = rng.uniform() < 0.35
        cloud_threshold = np.inf if clear else rng.uniform(-1.5, 2.2)
        snowy = month in snow_months and rng.uniform() < 0.5
        snow_threshold = rng.uniform(-1.0, 1.0) if snowy else np.inf
        return cls(Waves.random(rng, 6, 400.0, 2500.0, slope=1.0), cloud_threshold,
                   Waves.random(rng, 5, 600.0, 3000.0, slope=1.0), snow_threshold)

    @staticmethod
    def _prob(waves: Waves, threshold: float, x, y) -> np.ndarray:
        if not np.isfinite(threshold):
            return np.zeros(np.shape(x))
        return 100.0 / (1.0 + np.exp(-(waves(x, y) - threshold) / 0.3))

    def cloud_probability(self, x, y) -> np.ndarray:
        return self._prob(self.cloud_waves, self.cloud_threshold, x, y)

    def snow_probability(self, x, y) -> np.ndarray:
        return self._prob(self.snow_waves, self.snow_threshold, x, y)

    def apply(self, surface: np.ndarray, cloud: np.ndarray, snow: np.ndarray, bands: np.ndarray | None) -> np.ndarray:
        """Top-of-canopy reflectance with snow then cloud blended in by their opacities."""
        snow_ref = SNOW if bands is None else SNOW[bands]
        cloud_ref = CLOUD if bands is None else CLOUD[bands]
        a_snow = np.clip((snow - 20.0) / 60.0, 0, 1)[None]
        a_cloud = np.clip((cloud - 20.0) / 60.0, 0, 1)[None]
        out = surface * (1 - a_snow) + snow_ref.reshape((-1,) + (1,) * (surface.ndim - 1)) * a_snow
        return out * (1 - a_cloud) + cloud_ref.reshape((-1,) + (1,) * (surface.ndim - 1)) * a_cloud
