"""MAE-style masking of (modality, patch) tokens: uniform over all tokens, no per-modality quota."""

from __future__ import annotations

import torch
from torch import Tensor


def mask_noise(batch: int, tokens: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
    """The uniform noise that decides the mask (drawn outside the model so that it can be injected)."""
    return torch.rand(batch, tokens, generator=generator, device=device)


def mask_from_noise(noise: Tensor, ratio: float) -> Tensor:
    """(B, N) noise -> (B, N) mask, 1 = masked: all but the int(N (1 - ratio)) tokens of smallest noise."""
    keep = int(noise.shape[1] * (1 - ratio))
    order = noise.argsort(dim=1)
    mask = torch.ones_like(noise)
    return mask.scatter(1, order[:, :keep], 0.0)


def apply_mask(tokens: Tensor, mask: Tensor, mask_token: Tensor) -> Tensor:
    """Replace masked tokens (B, N, D) by the learned mask token; the sequence keeps its length."""
    return torch.where(mask[..., None].bool(), mask_token.to(tokens.dtype), tokens)
