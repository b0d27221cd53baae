"""The fusion transformer: pre-norm self-attention blocks with a contextual relative-position term,
then one cross block in which learned per-patch queries gather every modality's tokens.

Attention logits are q_i . k_j * scale + q_i . r[b(i, j)], with one bucket table r shared by all
heads (iRPE "contextual" mode on keys). The self-attention blocks use the scaled query for the RPE
term, the cross block the unscaled one (as the reference does). With `fused=True` the RPE term is
computed first and handed to `scaled_dot_product_attention` as an additive bias: same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rpe import NUM_BUCKETS


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples with probability `rate`, rescale the others."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def rpe_bias(query: Tensor, table: Tensor, buckets: Tensor) -> Tensor:
    """Contextual RPE term: query (B, H, Lq, d) . table (1, d, nb) gathered by buckets (Lq, Lk) -> (B, H, Lq, Lk)."""
    lookup = query @ table[0]  # (B, H, Lq, nb)
    b, h, lq, _ = lookup.shape
    return lookup.gather(-1, buckets.expand(b, h, lq, buckets.shape[-1]))


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float, dropout: float, fused: bool) -> Tensor:
    """softmax(q k^T scale + bias) v, with attention dropout; q, k, v (B, H, L, d)."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout, scale=scale)
    logits = (q * scale) @ k.transpose(-2, -1) + bias
    weights = F.dropout(torch.softmax(logits, dim=-1), dropout, training=dropout > 0)
    return weights @ v


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class RpeSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, attn_drop: float, proj_drop: float, fused: bool) -> None:
        super().__init__()
        self.heads, self.scale, self.fused, self.attn_drop = heads, (dim // heads) ** -0.5, fused, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpe_table = nn.Parameter(torch.zeros(1, dim // heads, NUM_BUCKETS))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, buckets: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = rpe_bias(q * self.scale, self.rpe_table, buckets)
        out = attend(q, k, v, bias, self.scale, self.attn_drop if self.training else 0.0, self.fused)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class RpeBlock(nn.Module):
    """x + DropPath(Attn(LN x)), then x + DropPath(MLP(LN x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop: float, attn_drop: float,
                 drop_path: float, fused: bool) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RpeSelfAttention(dim, heads, attn_drop, drop, fused)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor, buckets: Tensor) -> Tensor:
        x = x + drop_path(self.attn(self.norm1(x), buckets), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class RpeCrossAttention(nn.Module):
    """1 + P learned queries (class slot + one per patch, the same for every sample) attend to all tokens."""

    def __init__(self, dim: int, heads: int, num_patches: int, attn_drop: float, proj_drop: float,
                 fused: bool) -> None:
        super().__init__()
        self.heads, self.scale, self.fused, self.attn_drop = heads, (dim // heads) ** -0.5, fused, attn_drop
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.query_pos = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.rpe_table = nn.Parameter(torch.zeros(1, dim // heads, NUM_BUCKETS))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, buckets: Tensor) -> Tensor:
        b, n, d = x.shape
        q = (self.query + self.query_pos).reshape(1, -1, self.heads, d // self.heads).transpose(1, 2)
        k = self.key(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        v = self.value(x).reshape(b, n, self.heads, -1).transpose(1, 2)
        bias = rpe_bias(q, self.rpe_table, buckets).expand(b, -1, -1, -1)
        q = q.expand(b, -1, -1, -1)
        out = attend(q, k, v, bias, self.scale, self.attn_drop if self.training else 0.0, self.fused)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, -1, d)))


class CrossBlock(nn.Module):
    """y = DropPath(CrossAttn(LN x)) (no residual: the queries are not the input), y + DropPath(MLP(LN y))."""

    def __init__(self, dim: int, heads: int, num_patches: int, mlp_ratio: float, drop: float,
                 attn_drop: float, drop_path: float, fused: bool) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RpeCrossAttention(dim, heads, num_patches, attn_drop, drop, fused)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor, buckets: Tensor) -> Tensor:
        y = drop_path(self.attn(self.norm1(x), buckets), self.drop_path, self.training)
        return y + drop_path(self.mlp(self.norm2(y)), self.drop_path, self.training)
