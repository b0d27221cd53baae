"""Relative-position buckets of the fusion transformer (iRPE, Euclidean method, contextual mode).

Two token layouts for the self-attention blocks:

- "reference" (the released code): the sequence of length L is laid on a floor(sqrt(L)) square
  raster in sequence order; the leading L - floor(sqrt(L))^2 tokens are "special" (skip bucket).
  With 3 modalities x 36 patches + cls that is a 10 x 10 raster whose first 9 tokens (cls and 8
  aerial patches) are special, so distances are not geographic.
- "geometric" (the paper's intent): every patch token sits at its patch's (row, col) whatever its
  modality; only the class token is special. Tokens of one patch in two modalities are at distance 0.

The cross block always uses the patch grid for its queries (as the reference does).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SKIP_BUCKET = 7  # = 2 * floor(beta) + 1 for ratio 1.9; the extra bucket of special tokens
NUM_BUCKETS = SKIP_BUCKET + 1


def euclidean_bucket(coords: Tensor, ratio: float = 1.9) -> Tensor:
    """(N, 2) integer positions -> (N, N) buckets of the rounded Euclidean distance (piecewise log)."""
    alpha, beta, gamma = ratio, 2 * ratio, 8 * ratio
    diff = coords[:, None, :] - coords[None, :, :]
    dist = diff.square().sum(-1).float().sqrt().round()
    far = (alpha + torch.log(dist.clamp_min(alpha) / alpha) / math.log(gamma / alpha) * (beta - alpha)).round()
    index = torch.where(dist <= alpha, dist, far.clamp(max=beta))
    return index.long() + int(beta)


def with_special_tokens(buckets: Tensor, skip: int) -> Tensor:
    """Prepend `skip` special rows and columns carrying the skip bucket."""
    n = buckets.shape[0] + skip
    out = torch.full((n, n), SKIP_BUCKET, dtype=torch.long)
    out[skip:, skip:] = buckets
    return out


def raster_buckets(length: int, ratio: float = 1.9) -> Tensor:
    """The reference layout: (L, L) buckets of a sequence laid on a floor(sqrt(L)) square raster."""
    side = math.isqrt(length)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    return with_special_tokens(euclidean_bucket(coords, ratio), length - side * side)


def patch_coords(grid: tuple[int, int]) -> Tensor:
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1)


def geometric_buckets(grid: tuple[int, int], modalities: int, ratio: float = 1.9) -> Tensor:
    """(1 + M P, 1 + M P) buckets from each token's true patch position; the class token is special."""
    coords = patch_coords(grid).repeat(modalities, 1)
    return with_special_tokens(euclidean_bucket(coords, ratio), 1)


def self_attention_buckets(layout: str, grid: tuple[int, int], modalities: int, ratio: float = 1.9) -> Tensor:
    if layout == "reference":
        return raster_buckets(1 + modalities * grid[0] * grid[1], ratio)
    if layout == "geometric":
        return geometric_buckets(grid, modalities, ratio)
    raise ValueError(f"rpe_layout must be 'reference' or 'geometric', not {layout!r}")


def cross_query_buckets(layout: str, grid: tuple[int, int], ratio: float = 1.9) -> Tensor:
    """(1 + P, 1 + P) buckets between the cross block's queries (class slot + one per patch)."""
    if layout == "reference":
        return raster_buckets(1 + grid[0] * grid[1], ratio)  # the reference infers a square grid
    return with_special_tokens(euclidean_bucket(patch_coords(grid), ratio), 1)


def cross_buckets(query_buckets: Tensor, modalities: int) -> Tensor:
    """Expand (1 + P, 1 + P) query buckets along keys: key (m, p) takes the bucket of patch p."""
    return torch.cat([query_buckets[:, :1], query_buckets[:, 1:].repeat(1, modalities)], dim=1)
