"""The two OmniSat models: self-supervised pretraining and classification (fine-tuning / probing).

Pretraining forward, as the reference: encode every modality, mask 75 % of the (modality, patch)
tokens with a learned token, fuse, reconstruct every modality from the fused patch tokens, and add
the contrastive loss on the raw encoder tokens. The mask noise comes from the caller (or from an
explicit generator), never from the global RNG.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .config import VHR_MODALITY, OmniSatConfig
from .decoders import SentinelDecoder, VhrDeconvDecoder, VhrUnpoolDecoder, select_dates
from .encoder import Batch, Embedded, OmniSatEncoder
from .losses import contrastive_loss, contrastive_loss_blockwise, sentinel_reconstruction_loss, vhr_reconstruction_loss
from .ltae import to_tokens
from .masking import apply_mask, mask_from_noise, mask_noise
from .vhr_encoder import to_patches


def full_precision(device: torch.device):
    """Autocast off inside (decoders and losses run in fp32) when it is on for this device."""
    if device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class PretrainOutput(NamedTuple):
    loss: Tensor  # the total
    losses: dict[str, Tensor]  # "<modality>_reconstruction", "contrastive"
    mask: Tensor  # (B, M P), 1 = masked
    fused: Tensor  # (B, 1 + P, D) output of the cross block
    embedded: Embedded
    reconstructions: dict[str, Tensor]  # VHR (B, P, C, ps, ps); series (B, T, P, F) for every date
    selected: dict[str, Tensor]  # per series (B, T) bool: the dates whose reconstruction is scored


class OmniSatPretraining(nn.Module):
    def __init__(self, config: OmniSatConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = OmniSatEncoder(config)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        decoders: dict[str, nn.Module] = {}
        if config.vhr is not None:
            vhr = VhrUnpoolDecoder if config.vhr_decoder == "unpool" else VhrDeconvDecoder
            decoders[VHR_MODALITY] = vhr(config.vhr)
        for series in config.series:
            decoders[series.name] = SentinelDecoder(series, config.embed_dim)
        self.decoders = nn.ModuleDict(decoders)

    def forward(self, batch: Batch, noise: Tensor | None = None,
                generator: torch.Generator | None = None) -> PretrainOutput:
        """`noise` (B, M P) decides the mask; when absent it is drawn from `generator`."""
        c = self.config
        embedded = self.encoder.embed(batch)
        b, n, _ = embedded.tokens.shape
        if noise is None:
            noise = mask_noise(b, n, generator, embedded.tokens.device)
        mask = mask_from_noise(noise, c.mask_ratio)
        fused = self.encoder.fuse(apply_mask(embedded.tokens, mask, self.mask_token))
        patches = fused[:, 1:]

        p = c.num_patches
        reconstructions, selected, targets = {}, {}, {}
        for name, decoder in self.decoders.items():
            if name == VHR_MODALITY:
                reconstructions[name] = decoder(patches, embedded.switches)
                targets[name] = to_patches(batch[name], c.vhr.patch_size)
            else:
                dates, series = batch[f"{name}_dates"], batch[name]
                reconstructions[name] = decoder(patches, dates)
                selected[name] = select_dates(embedded.attention[name].float(), dates, c.date_filtering)
                tokens = to_tokens(series, c.series_config(name).pixels_per_token)
                targets[name] = tokens.reshape(b, p, series.shape[1], -1).transpose(1, 2)  # (B, T, P, F)

        losses = {}
        with full_precision(patches.device):
            for i, name in enumerate(self.decoders):
                if name == VHR_MODALITY:
                    losses[f"{name}_reconstruction"] = vhr_reconstruction_loss(reconstructions[name], targets[name])
                else:
                    losses[f"{name}_reconstruction"] = sentinel_reconstruction_loss(
                        reconstructions[name], targets[name], selected[name], mask[:, i * p:(i + 1) * p])
            loss = sum(losses.values())
            if c.contrastive_weight:
                raw = [embedded.raw[name] for name in self.encoder.encoders]
                if c.contrastive_block is None:
                    losses["contrastive"] = contrastive_loss(raw, c.temperature)
                else:
                    losses["contrastive"] = contrastive_loss_blockwise(raw, c.temperature, c.contrastive_block)
                loss = loss + c.contrastive_weight * losses["contrastive"]
        return PretrainOutput(loss, losses, mask, fused, embedded, reconstructions, selected)


class OmniSatClassifier(nn.Module):
    """Class slot of the cross block -> (LayerNorm ->) Linear: multi-label logits.

    `head_norm=True` is the reference's supervised-from-scratch baseline (`MonoModal`); fine-tuning
    and linear probing use a bare linear head.
    """

    def __init__(self, config: OmniSatConfig, num_classes: int, head_norm: bool = False) -> None:
        super().__init__()
        self.config = config
        self.encoder = OmniSatEncoder(config)
        self.head_norm = nn.LayerNorm(config.embed_dim) if head_norm else None
        self.head = nn.Linear(config.embed_dim, num_classes)

    def forward(self, batch: Batch) -> Tensor:
        x = self.encoder(batch)[:, 0]
        if self.head_norm is not None:
            x = self.head_norm(x)
        return self.head(x)
