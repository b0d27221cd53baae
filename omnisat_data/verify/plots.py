"""Pictures of an alignment report: scene shifts and tile shifts, and quick-looks of the worst tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnisat_data.io.atomic import replacing


def _save(fig, path: Path) -> Path:
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def plot_shifts(report: dict, path: Path) -> Path:
    """Left: every scene's median (dx, dy) with the good and suspect circles; right: tile shift histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = 10.0
    thresholds = report["summary"]["thresholds_px"]
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(11, 4.8))
    scenes = report["scenes"].values()
    dx = np.array([s["dx"] for s in scenes])
    dy = np.array([s["dy"] for s in scenes])
    flagged = np.array([s["flagged"] for s in scenes], bool)
    ax.scatter(dx[~flagged], dy[~flagged], s=18, c="tab:blue", label="scene")
    ax.scatter(dx[flagged], dy[flagged], s=22, c="tab:red", label="scene over threshold")
    for px, style in ((thresholds["good"], ":"), (thresholds["suspect"], "--")):
        ax.add_patch(plt.Circle((0, 0), px * res, fill=False, ls=style, color="gray"))
    lim = max(6.0, float(np.abs(np.concatenate([dx, dy, [0]])).max()) * 1.15)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="dx (m, east)", ylabel="dy (m, north)",
           title=f"Sentinel-2 scene shifts vs VHR ({len(dx)} scenes)")
    ax.axhline(0, color="lightgray", lw=0.8)
    ax.axvline(0, color="lightgray", lw=0.8)
    ax.legend(loc="upper right", fontsize=8)
    tiles = np.array([t["shift_m"] for t in report["tiles"].values() if "shift_m" in t])
    hx.hist(tiles / res, bins=30, color="tab:blue")
    for px, style in ((thresholds["good"], ":"), (thresholds["suspect"], "--")):
        hx.axvline(px, ls=style, color="gray")
    hx.set(xlabel="tile shift once scene shifts are taken out (10 m pixels)", ylabel="tiles",
           title=f"{len(tiles)} tiles, median {np.median(tiles) / res if len(tiles) else float('nan'):.2f} px")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_tile(aerial: np.ndarray, aerial_res: float, s2_b08: np.ndarray, shift: tuple[float, float] | None,
              title: str, path: Path) -> Path:
    """Aerial NIR with the 6 x 6 Sentinel grid, and the Sentinel-2 B08 frame with the aerial's edges on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nir = aerial[0].astype(float)
    h, w = nir.shape
    block = 10.0 / aerial_res
    origin = ((h - 6 * block) / 2, (w - 6 * block) / 2)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4.6))
    a.imshow(nir, cmap="gray")
    for k in range(7):
        a.axhline(origin[0] + k * block, color="yellow", lw=0.7)
        a.axvline(origin[1] + k * block, color="yellow", lw=0.7)
    a.set_title("aerial NIR + Sentinel 10 m grid")
    extent = (origin[1], origin[1] + 6 * block, origin[0] + 6 * block, origin[0])
    b.imshow(s2_b08, cmap="magma", extent=extent, interpolation="nearest")
    from scipy.ndimage import uniform_filter

    gy, gx = np.gradient(uniform_filter(nir, size=max(int(block / 5), 1)))  # edges of stands, not of leaves
    edges = np.hypot(gx, gy)
    b.contour(edges > np.percentile(edges, 90), levels=[0.5], colors="cyan", linewidths=0.5)
    b.set(xlim=(0, w), ylim=(h, 0))
    b.set_title("Sentinel-2 B08 + aerial edges" + (f"\nshift ({shift[0]:+.1f}, {shift[1]:+.1f}) m" if shift else ""))
    for ax in (a, b):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
