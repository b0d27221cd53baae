"""The Sentinel time-series encoder: a lightweight temporal attention encoder (L-TAE) per token.

A token is one 10 m pixel (TreeSatAI-TS) or one block of k x k pixels flattened channel-major
(PASTIS-HD, k = 4). Every token's series goes through an input MLP, gets a sinusoidal code of its
dates, and is summarised by one learned "master" query per head; the heads' outputs go through an
output MLP. Besides the tokens, the encoder returns its attention averaged over heads and tokens:
one weight per date per sample, which the decoder uses to pick the dates to reconstruct.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SeriesConfig


def date_frequencies(dim: int, period: int) -> Tensor:
    """Denominators period^(2 floor(i/2) / dim) of a `dim`-wide sinusoidal code (sin on even i, cos on odd)."""
    i = torch.arange(dim, dtype=torch.float32)
    return torch.pow(float(period), 2 * torch.div(i, 2, rounding_mode="floor") / dim)


def encode_dates(dates: Tensor, denominators: Tensor) -> Tensor:
    """(..., T) dates -> (..., T, dim) sinusoidal codes."""
    angle = dates[..., None].float() / denominators
    even = torch.arange(angle.shape[-1], device=angle.device) % 2 == 0
    return torch.where(even, torch.sin(angle), torch.cos(angle))


def to_tokens(series: Tensor, k: int) -> Tensor:
    """(B, T, C, H, W) -> (B * P, T, C * k * k): blocks of k x k pixels, row-major, channel-major inside."""
    b, t, c, h, w = series.shape
    gh, gw = h // k, w // k
    if gh * k != h or gw * k != w:
        raise ValueError(f"series of {h} x {w} px is not a whole number of {k} px tokens")
    x = series.reshape(b, t, c, gh, k, gw, k).permute(0, 3, 5, 1, 2, 4, 6)
    return x.reshape(b * gh * gw, t, c * k * k)


def masked_group_norm(x: Tensor, valid: Tensor, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm of (N, T, C) over each token's channel groups and *valid* dates only; padding -> 0."""
    n, t, c = x.shape
    g = norm.num_groups
    xg = x.reshape(n, t, g, c // g)
    w = valid[:, :, None, None].to(x.dtype)
    count = (w.sum(dim=(1, 3), keepdim=True) * (c // g)).clamp_min(1.0)
    mean = (xg * w).sum(dim=(1, 3), keepdim=True) / count
    var = ((xg - mean).square() * w).sum(dim=(1, 3), keepdim=True) / count
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(n, t, c) * norm.weight + norm.bias
    return y * valid[:, :, None]


class LinearBnRelu(nn.Module):
    """Linear -> BatchNorm over all (token, date) rows -> ReLU (-> Dropout)."""

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.bn = nn.BatchNorm1d(n_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """x (..., n_in); with `valid` (a boolean mask over the leading dims), statistics use valid rows only."""
        y = self.linear(x)
        if valid is None:
            y = self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        else:
            y = torch.zeros_like(y).index_put((valid,), self.bn(y[valid]))
        return self.dropout(F.relu(y))


class SeriesEncoder(nn.Module):
    """L-TAE over each token of a Sentinel time series."""

    def __init__(self, config: SeriesConfig, padding_mask: bool = False) -> None:
        super().__init__()
        self.k = config.pixels_per_token
        self.heads = config.heads
        self.key_dim = config.key_dim
        self.padding_mask = padding_mask
        width = config.mlp_in[-1]
        widths = (config.token_features, *config.mlp_in)
        self.in_mlp = nn.ModuleList(LinearBnRelu(a, b, config.dropout) for a, b in zip(widths[:-1], widths[1:]))
        self.in_norm = nn.GroupNorm(config.heads, width) if config.in_norm else None
        self.query = nn.Parameter(torch.empty(config.heads, config.key_dim))
        self.key = nn.Linear(width, config.heads * config.key_dim)
        self.attention_dropout = nn.Dropout(config.attention_dropout)
        out_widths = (width, *config.mlp)  # the reference inserts the model width in front of `mlp`
        self.out_mlp = nn.ModuleList(LinearBnRelu(a, b) for a, b in zip(out_widths[:-1], out_widths[1:]))
        self.dropout = nn.Dropout(config.dropout)
        self.out_norm = nn.GroupNorm(config.heads, config.mlp[-1])
        # Every head sees the same (width / heads)-dim code of the date.
        self.register_buffer("denominators", date_frequencies(width // config.heads, config.period), persistent=False)
        nn.init.normal_(self.query, 0.0, math.sqrt(2.0 / config.key_dim))
        nn.init.normal_(self.key.weight, 0.0, math.sqrt(2.0 / config.key_dim))

    def forward(self, series: Tensor, dates: Tensor) -> tuple[Tensor, Tensor]:
        """series (B, T, C, H, W), dates (B, T) (0 = padding) -> tokens (B, P, D), attention (B, T)."""
        b, t = dates.shape
        x = to_tokens(series, self.k)  # (B*P, T, F)
        p = x.shape[0] // b
        valid = (dates != 0).repeat_interleave(p, dim=0) if self.padding_mask else None  # (B*P, T)
        for layer in self.in_mlp:
            x = layer(x, valid)
        if self.in_norm is not None and valid is None:  # statistics per token over (channel group, dates)
            x = self.in_norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.in_norm is not None:
            x = masked_group_norm(x, valid, self.in_norm)
        code = encode_dates(dates, self.denominators).repeat(1, 1, self.heads)  # (B, T, width)
        x = (x.reshape(b, p, t, -1) + code[:, None]).reshape(b * p, t, -1)

        keys = self.key(x).reshape(b * p, t, self.heads, self.key_dim)
        logits = torch.einsum("nthd,hd->nht", keys, self.query) / math.sqrt(self.key_dim)
        if valid is not None:
            logits = logits.masked_fill(~valid[:, None, :], torch.finfo(logits.dtype).min)
        attention = self.attention_dropout(torch.softmax(logits, dim=-1))  # (B*P, heads, T)
        values = x.reshape(b * p, t, self.heads, -1)
        x = torch.einsum("nht,nthd->nhd", attention, values).reshape(b * p, -1)

        for layer in self.out_mlp:
            x = layer(x)
        x = self.out_norm(self.dropout(x))
        summary = attention.reshape(b, p, self.heads, t).mean(dim=(1, 2))
        return x.reshape(b, p, -1), summary
