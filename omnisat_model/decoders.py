"""Reconstruction decoders of pretraining: fused patch tokens -> each modality's observations.

- `VhrUnpoolDecoder`: unpools with the VHR encoder's max-pool switches ("index bypass") and
  transposed convolutions, no nonlinearity (the reference decoder).
- `VhrDeconvDecoder`: the ablation without switches (transposed convolutions only).
- `SentinelDecoder`: one linear layer applied to (fused token + frozen sinusoidal code of a date),
  for the dates the L-TAE attended to most (strictly above the 0.75-quantile of the attention of the
  sample's dates, its last valid date excluded, as in the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SeriesConfig, VhrConfig
from .ltae import date_frequencies, encode_dates
from .vhr_encoder import Switches, pooled_sizes


class VhrUnpoolDecoder(nn.Module):
    def __init__(self, config: VhrConfig) -> None:
        super().__init__()
        width = config.width
        self.patch_size = config.patch_size
        self.sizes = tuple(reversed(pooled_sizes(config.patch_size)))  # deepest first: 3, 6, 12, 25
        self.deconvs = nn.ModuleList([nn.ConvTranspose2d(width, width, 3, padding=1, bias=False) for _ in range(3)]
                                     + [nn.ConvTranspose2d(width, config.channels, 3, stride=2, padding=1)])

    def forward(self, tokens: Tensor, switches: Switches) -> Tensor:
        """(B, P, D) -> (B, P, C, ps, ps)."""
        b, p, d = tokens.shape
        x = tokens.reshape(b * p, d, 1, 1)
        outputs = (*self.sizes[:-1], self.patch_size)  # stride-1 deconvs keep the size; the last doubles it
        for deconv, indices, size, out in zip(self.deconvs, switches.indices, self.sizes, outputs):
            x = F.max_unpool2d(x, indices, 2, output_size=(size, size))
            x = deconv(x, output_size=(out, out))
        return x.reshape(b, p, *x.shape[1:])


def _upsampling(n_in: int, n_out: int, width: int, bias: bool) -> nn.ConvTranspose2d:
    """A transposed convolution taking an n_in map to exactly n_out (the reference's kernels for 50 px)."""
    if n_out == 2 * n_in:
        return nn.ConvTranspose2d(width, width, 4, stride=2, padding=1, bias=bias)
    if n_out == 2 * n_in + 1:
        return nn.ConvTranspose2d(width, width, 3, stride=2, bias=bias)
    return nn.ConvTranspose2d(width, width, n_out - n_in + 1, bias=bias)


class VhrDeconvDecoder(nn.Module):
    def __init__(self, config: VhrConfig) -> None:
        super().__init__()
        width, self.patch_size = config.width, config.patch_size
        sizes = (1,) + tuple(reversed(pooled_sizes(config.patch_size)))  # 1, 3, 6, 12, 25
        self.deconvs = nn.ModuleList([_upsampling(a, b, width, bias=i == 3)
                                      for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
                                     + [nn.ConvTranspose2d(width, config.channels, 3, stride=2, padding=1)])

    def forward(self, tokens: Tensor, switches: Switches | None = None) -> Tensor:
        b, p, d = tokens.shape
        x = tokens.reshape(b * p, d, 1, 1)
        for deconv in self.deconvs[:-1]:
            x = deconv(x)
        x = self.deconvs[-1](x, output_size=(self.patch_size,) * 2)
        return x.reshape(b, p, *x.shape[1:])


def select_dates(attention: Tensor, dates: Tensor, filtering: bool = True) -> Tensor:
    """(B, T) boolean: the dates to reconstruct.

    Candidates are the dates before the sample's last non-zero date. With `filtering`, only those
    whose attention is strictly above the 0.75-quantile (linear interpolation) of the candidates'.
    """
    b, t = dates.shape
    position = torch.arange(t, device=dates.device)
    end = torch.where(dates != 0, position, -1).amax(dim=1)  # index of the last valid date, -1 if none
    candidate = position[None, :] < end[:, None]
    if not filtering:
        return candidate
    n = end.clamp_min(0)  # number of candidates
    ordered = torch.where(candidate, attention, torch.inf).sort(dim=1).values
    rank = 0.75 * (n - 1).clamp_min(0).to(attention.dtype)
    below = rank.floor().long()
    above = torch.minimum(below + 1, (n - 1).clamp_min(0))
    low, high = ordered.gather(1, below[:, None]), ordered.gather(1, above[:, None])
    threshold = torch.lerp(low, high, (rank - below)[:, None].to(low.dtype))
    return candidate & (attention > threshold)


class SentinelDecoder(nn.Module):
    def __init__(self, config: SeriesConfig, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, config.token_features)
        days = torch.arange(config.period)
        # Frozen, but a parameter (as the reference's nn.Embedding) so counts and checkpoints match.
        self.date_table = nn.Parameter(encode_dates(days, date_frequencies(dim, config.period)), requires_grad=False)

    def forward(self, tokens: Tensor, dates: Tensor) -> Tensor:
        """Predictions for every date: tokens (B, P, D), dates (B, T) -> (B, T, P, F).

        linear(token + code) is computed as linear(token) + linear_nobias(code) so that the (B, T, P, D)
        sum is never materialised; callers pick the selected dates.
        """
        per_token = self.linear(tokens)  # (B, P, F)
        per_date = F.linear(self.date_table[dates], self.linear.weight)  # (B, T, F)
        return per_token[:, None] + per_date[:, :, None]
