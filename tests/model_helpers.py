"""Small OmniSat configurations and random batches for the model tests."""

from __future__ import annotations

import dataclasses

import torch

from omnisat_model.config import OmniSatConfig, preset


def tiny_config(**changes) -> OmniSatConfig:
    """The conformance vectors' shrunk TreeSatAI-TS model (width 64, 3 blocks, 4 heads)."""
    base = preset("treesatai-ts")
    series = tuple(dataclasses.replace(s, heads=4, mlp_in=(16, 32, 64), mlp=(64, 128, 64)) for s in base.series)
    config = dataclasses.replace(base, vhr=dataclasses.replace(base.vhr, width=64), series=series,
                                 embed_dim=64, depth=3, num_heads=4)
    return dataclasses.replace(config, **changes)


def random_batch(config: OmniSatConfig, batch: int, dates: dict[str, list[int]] | None = None,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """Raw-valued batch; `dates[name][b]` = number of valid dates of sample b (the rest is zero padding)."""
    g = torch.Generator().manual_seed(seed)
    gh, gw = config.grid
    out = {}
    if config.vhr is not None:
        ps = config.vhr.patch_size
        out["aerial"] = torch.rand(batch, config.vhr.channels, gh * ps, gw * ps, generator=g) * 255
    for s in config.series:
        counts = (dates or {}).get(s.name, [12] * batch)
        t = max(counts)
        k = s.pixels_per_token
        x = torch.rand(batch, t, s.channels, gh * k, gw * k, generator=g) * 3000
        d = torch.zeros(batch, t, dtype=torch.long)
        for b, n in enumerate(counts):
            d[b, :n] = torch.sort(torch.randperm(s.period - 1, generator=g)[:n] + 1).values
            x[b, n:] = 0
        out[s.name], out[f"{s.name}_dates"] = x, d
    return out
