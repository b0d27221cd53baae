"""The very-high-resolution encoder: one token per image patch, plus the max-pool switches.

Each `patch_size` x `patch_size` patch of the image is encoded on its own by a stride-2 convolution
and four max-pools interleaved with three residual blocks, down to a 1 x 1 map of `width` channels.
The pooling indices are returned because the reconstruction decoder unpools with them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from .config import VhrConfig


def pooled_sizes(patch_size: int) -> tuple[int, ...]:
    """Side of the feature map entering each of the four max-pools (50 -> (25, 12, 6, 3))."""
    size = (patch_size - 1) // 2 + 1  # 3x3 convolution, stride 2, padding 1
    sizes = []
    for _ in range(4):
        sizes.append(size)
        size //= 2
    if size < 1:
        raise ValueError(f"patch size {patch_size} is too small for four 2x2 max-pools")
    return tuple(sizes)


def to_patches(image: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, P, C, ps, ps), patches row-major over the patch grid."""
    b, c, h, w = image.shape
    gh, gw = h // patch_size, w // patch_size
    if gh * patch_size != h or gw * patch_size != w:
        raise ValueError(f"image of {h} x {w} px is not a whole number of {patch_size} px patches")
    x = image.reshape(b, c, gh, patch_size, gw, patch_size).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, gh * gw, c, patch_size, patch_size)


class Switches(NamedTuple):
    """Max-pool indices of the four pools, deepest first (what the unpooling decoder needs)."""

    indices: tuple[Tensor, Tensor, Tensor, Tensor]


class ResidualBlock(nn.Module):
    """y = GELU(GN(conv2(GELU(GN(conv1 x)))) + x), with one GroupNorm module used twice (as the reference)."""

    def __init__(self, width: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(groups, width)

    def forward(self, x: Tensor) -> Tensor:
        y = F.gelu(self.norm(self.conv1(x)))
        return F.gelu(self.norm(self.conv2(y)) + x)


class VhrEncoder(nn.Module):
    def __init__(self, config: VhrConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.sizes = pooled_sizes(config.patch_size)
        self.conv = nn.Conv2d(config.channels, config.width, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(config.width)
        self.res = nn.ModuleList(ResidualBlock(config.width, config.groups) for _ in range(3))

    def forward(self, image: Tensor) -> tuple[Tensor, Switches]:
        """(B, C, H, W) -> tokens (B, P, width) and the pooling switches."""
        patches = to_patches(image, self.patch_size)
        b, p = patches.shape[:2]
        x = F.gelu(self.bn(self.conv(patches.flatten(0, 1))))
        indices = []
        for i in range(4):
            x, idx = F.max_pool2d(x, 2, return_indices=True)
            indices.append(idx)
            if i < 3:
                x = self.res[i](x)
        return x.reshape(b, p, -1), Switches(tuple(reversed(indices)))
