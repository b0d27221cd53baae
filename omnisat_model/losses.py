"""Pretraining losses, computed in fp32 whatever the autocast dtype.

- VHR reconstruction: MSE against per-patch normalised patches, over every patch.
- Sentinel reconstruction: per date, the observation normalised over all its (patch, feature)
  values; per-patch mean squared error; averaged over the masked patches of the selected dates.
- MIL-NCE contrastive (tau 0.1) between the raw encoder tokens: positives are the same patch of the
  same tile in the other modalities; the candidates are all tokens except those of the same
  modality and tile. `contrastive_loss_blockwise` streams over anchor blocks (never holding the
  (M B P)^2 similarity matrix) with a hand-written backward; it equals `contrastive_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6


def _standardise(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True)  # unbiased, as the reference
    return (x - mean) / torch.sqrt(var + EPS)


def vhr_reconstruction_loss(prediction: Tensor, target_patches: Tensor) -> Tensor:
    """prediction, target (B, P, C, ps, ps)."""
    target = _standardise(target_patches.float(), dims=(2, 3, 4))
    return F.mse_loss(prediction.float(), target)


def sentinel_reconstruction_loss(prediction: Tensor, target: Tensor, selected: Tensor, mask: Tensor) -> Tensor:
    """prediction, target (B, T, P, F); selected (B, T) bool; mask (B, P), 1 = masked."""
    target = _standardise(target.float(), dims=(2, 3))
    error = (prediction.float() - target).square().mean(dim=-1)  # (B, T, P)
    weight = selected[:, :, None].float() * mask[:, None, :].float()
    return (error * weight).sum() / weight.sum().clamp_min(1.0)


def _token_groups(modalities: int, batch: int, patches: int, device: torch.device) -> Tensor:
    """Group id of each stacked token (order m, b, p): tokens of one modality and one tile share it."""
    return torch.arange(modalities * batch, device=device).repeat_interleave(patches)


def _positive_logsumexp(z: Tensor, modalities: int, temperature: float) -> Tensor:
    """For each anchor (m, b, p): logsumexp over the same (b, p) in the other modalities. z (M, B P, D) normalised."""
    sims = torch.einsum("mnd,knd->mkn", z, z) / temperature  # (M, M, B P)
    eye = torch.eye(modalities, dtype=torch.bool, device=z.device)[:, :, None]
    return sims.masked_fill(eye, -torch.inf).logsumexp(dim=1).reshape(-1)


def _normalised_stack(tokens: list[Tensor]) -> Tensor:
    z = torch.stack([t.to(torch.promote_types(t.dtype, torch.float32)) for t in tokens])  # (M, B, P, D), >= fp32
    return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def contrastive_loss(tokens: list[Tensor], temperature: float = 0.1) -> Tensor:
    """MIL-NCE over the modalities' raw tokens, each (B, P, D); the whole similarity matrix at once."""
    z = _normalised_stack(tokens)
    m, b, p, d = z.shape
    flat = z.reshape(-1, d)
    groups = _token_groups(m, b, p, z.device)
    negative = _other_group_logits(flat, groups, slice(None), temperature).logsumexp(dim=1)
    positive = _positive_logsumexp(z.reshape(m, b * p, d), m, temperature)
    return (negative - positive).mean()


def _other_group_logits(z: Tensor, groups: Tensor, rows: slice, temperature: float) -> Tensor:
    """Logits of anchors `rows` against every token, -inf on tokens of the anchor's own group."""
    logits = (z[rows] @ z.T) / temperature
    return logits.masked_fill(groups[rows, None] == groups[None, :], -torch.inf)


class _NegativeLogSumExp(torch.autograd.Function):
    """Row-wise logsumexp of z z^T / tau over other groups, streamed over blocks of rows.

    Backward: with W[a, v] = g[a] softmax_a(v), d/dz = (W + W^T) z / tau, accumulated block by block.
    """

    @staticmethod
    def forward(ctx, z: Tensor, groups: Tensor, temperature: float, block: int) -> Tensor:
        out = torch.empty(z.shape[0], dtype=z.dtype, device=z.device)
        for start in range(0, z.shape[0], block):
            rows = slice(start, start + block)
            out[rows] = _other_group_logits(z, groups, rows, temperature).logsumexp(dim=1)
        ctx.save_for_backward(z, groups, out)
        ctx.temperature, ctx.block = temperature, block
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, groups, lse = ctx.saved_tensors
        grad_z = torch.zeros_like(z)
        for start in range(0, z.shape[0], ctx.block):
            rows = slice(start, start + ctx.block)
            logits = _other_group_logits(z, groups, rows, ctx.temperature)
            weights = torch.exp(logits - lse[rows, None]) * grad[rows, None]
            grad_z[rows] += weights @ z
            grad_z += weights.T @ z[rows]
        return grad_z / ctx.temperature, None, None, None


def contrastive_loss_blockwise(tokens: list[Tensor], temperature: float = 0.1, block: int = 2048) -> Tensor:
    """`contrastive_loss` with memory linear in the number of tokens: blocks of `block` anchors."""
    z = _normalised_stack(tokens)
    m, b, p, d = z.shape
    flat = z.reshape(-1, d)
    negative = _NegativeLogSumExp.apply(flat, _token_groups(m, b, p, z.device), temperature, block)
    positive = _positive_logsumexp(z.reshape(m, b * p, d), m, temperature)
    return (negative - positive).mean()
