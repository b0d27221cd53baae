"""OmniSat's encoder: modality encoders -> one token per (modality, patch) -> fusion transformer.

`embed` runs the modality encoders and adds the shared absolute position embedding; `fuse` runs the
transformer on a (possibly masked) token sequence; `forward` does both (fine-tuning and probing).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import rpe
from .config import VHR_MODALITY, OmniSatConfig
from .fusion import CrossBlock, RpeBlock
from .ltae import SeriesEncoder
from .vhr_encoder import Switches, VhrEncoder

Batch = dict[str, Tensor]  # "aerial" (B,C,H,W); "<series>" (B,T,C,H,W) and "<series>_dates" (B,T)


class Embedded(NamedTuple):
    tokens: Tensor  # (B, M P, D): encoder outputs + position embedding, modality-major
    raw: dict[str, Tensor]  # per modality (B, P, D): encoder outputs alone (what the contrastive loss sees)
    attention: dict[str, Tensor]  # per series (B, T): L-TAE attention averaged over heads and tokens
    switches: Switches | None  # max-pool indices of the VHR encoder, for the unpooling decoder


class OmniSatEncoder(nn.Module):
    def __init__(self, config: OmniSatConfig) -> None:
        super().__init__()
        self.config = config
        d, p = config.embed_dim, config.num_patches
        encoders: dict[str, nn.Module] = {}
        if config.vhr is not None:
            encoders[VHR_MODALITY] = VhrEncoder(config.vhr)
        for series in config.series:
            encoders[series.name] = SeriesEncoder(series, padding_mask=config.ltae_padding_mask)
        self.encoders = nn.ModuleDict(encoders)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + p, d))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

        rates = torch.linspace(0, config.drop_path_rate, config.depth).tolist()
        block = dict(dim=d, heads=config.num_heads, mlp_ratio=config.mlp_ratio, drop=config.drop_rate,
                     attn_drop=config.attn_drop_rate, fused=config.fused_attention)
        self.blocks = nn.ModuleList(RpeBlock(drop_path=rate, **block) for rate in rates)
        # The reference gives the cross block the rate of block M - 1 (a stale loop index).
        cross_rate = rates[min(len(config.modalities) - 1, config.depth - 1)] if rates else 0.0
        self.cross = CrossBlock(num_patches=p, drop_path=cross_rate, **block)

        m = len(config.modalities)
        self.register_buffer("self_buckets", rpe.self_attention_buckets(
            config.rpe_layout, config.grid, m, config.rpe_ratio), persistent=False)
        self.register_buffer("cross_buckets", rpe.cross_buckets(rpe.cross_query_buckets(
            config.rpe_layout, config.grid, config.rpe_ratio), m), persistent=False)

    def embed(self, batch: Batch) -> Embedded:
        raw, attention, switches = {}, {}, None
        for name, encoder in self.encoders.items():
            if name == VHR_MODALITY:
                raw[name], switches = encoder(batch[name])
            else:
                raw[name], attention[name] = encoder(batch[name], batch[f"{name}_dates"])
        tokens = torch.cat([raw[name] + self.pos_embed[:, 1:] for name in self.encoders], dim=1)
        return Embedded(tokens, raw, attention, switches)

    def buckets(self, modalities: int) -> tuple[Tensor, Tensor]:
        """Bucket matrices for a sequence of `modalities` x P tokens (precomputed for the configured count)."""
        if modalities == len(self.encoders):
            return self.self_buckets, self.cross_buckets
        c = self.config
        device = self.self_buckets.device
        query = rpe.cross_query_buckets(c.rpe_layout, c.grid, c.rpe_ratio)
        return (rpe.self_attention_buckets(c.rpe_layout, c.grid, modalities, c.rpe_ratio).to(device),
                rpe.cross_buckets(query, modalities).to(device))

    def fuse(self, tokens: Tensor) -> Tensor:
        """(B, M P, D) tokens -> (B, 1 + P, D): class slot, then one fused token per patch."""
        self_buckets, cross_buckets = self.buckets(tokens.shape[1] // self.config.num_patches)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x, self_buckets)
        return self.cross(x, cross_buckets)

    def forward(self, batch: Batch) -> Tensor:
        return self.fuse(self.embed(batch).tokens)
