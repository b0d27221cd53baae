"""One frozen configuration for every OmniSat model, with the reference presets.

`preset("treesatai-ts")` and `preset("pastis-hd")` equal the hyper-parameters of the released
experiments (`TSAITS_OmniSAT`, `Pastis_OmniSAT`); `dataclasses.replace` derives anything else
(fewer modalities, another patch grid, a smaller width).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

VHR_MODALITY = "aerial"  # the name the reference gives the very-high-resolution image


@dataclass(frozen=True)
class VhrConfig:
    """The very-high-resolution patch encoder (a small max-pooling ResNet per patch)."""

    channels: int = 4
    patch_size: int = 50  # pixels per patch side: 50 (TreeSatAI-TS 0.2 m) or 40 (PASTIS-HD 1 m)
    width: int = 256
    groups: int = 4  # GroupNorm groups of the residual blocks


@dataclass(frozen=True)
class SeriesConfig:
    """One Sentinel time series and its L-TAE encoder."""

    name: str  # "s2", "s1-asc", "s1-des": the key of the batch and of the state dict
    channels: int
    pixels_per_token: int = 1  # side of the pixel block one token covers: 1 (TreeSatAI-TS) or 4 (PASTIS-HD)
    in_norm: bool = True  # GroupNorm after the input MLP (the reference uses it for S2 only)
    heads: int = 16
    key_dim: int = 8
    mlp_in: tuple[int, ...] = (32, 128, 256)
    mlp: tuple[int, ...] = (256, 512, 256)  # output MLP widths after the model width mlp_in[-1]
    dropout: float = 0.2
    attention_dropout: float = 0.1
    period: int = 367  # period T of the date encodings; also the length of the decoder's date table

    @property
    def token_features(self) -> int:
        return self.channels * self.pixels_per_token**2


@dataclass(frozen=True)
class OmniSatConfig:
    """Everything that fixes an OmniSat model's shapes and behaviour."""

    vhr: VhrConfig | None = field(default_factory=VhrConfig)
    series: tuple[SeriesConfig, ...] = ()
    grid: tuple[int, int] = (6, 6)  # patches per tile: rows, columns
    embed_dim: int = 256
    depth: int = 6  # self-attention blocks; the cross block comes on top
    num_heads: int = 16
    mlp_ratio: float = 4.0
    drop_rate: float = 0.2
    attn_drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    rpe_ratio: float = 1.9  # iRPE Euclidean buckets: alpha = ratio, beta = 2 ratio, gamma = 8 ratio
    # Pretraining
    mask_ratio: float = 0.75
    temperature: float = 0.1
    contrastive_weight: float = 1.0  # 0 drops the MIL-NCE term (`TSAITS_OmniSAT_no_contrastive`)
    vhr_decoder: Literal["unpool", "deconv"] = "unpool"  # "deconv": the no-index-bypass ablation
    date_filtering: bool = True  # False: reconstruct every date (`no_date_filtering` ablation)
    # Beyond the reference (off by default so that numbers match it)
    rpe_layout: Literal["reference", "geometric"] = "reference"
    ltae_padding_mask: bool = False
    # Fast paths (identical results, see tests/test_model_fastpaths.py)
    fused_attention: bool = True  # torch scaled_dot_product_attention with the RPE term as a bias
    contrastive_block: int | None = 2048  # anchors per block of the streaming MIL-NCE; None = whole matrix

    def __post_init__(self) -> None:
        names = [s.name for s in self.series]
        if len(set(names)) != len(names) or VHR_MODALITY in names:
            raise ValueError(f"series names must be unique and differ from {VHR_MODALITY!r}: {names}")
        if not self.modalities:
            raise ValueError("an OmniSat model needs at least one modality")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        for s in self.series:
            if s.mlp[-1] != self.embed_dim:
                raise ValueError(f"series {s.name}: mlp must end at embed_dim {self.embed_dim}, not {s.mlp[-1]}")
            if s.mlp_in[-1] % s.heads:
                raise ValueError(f"series {s.name}: width {s.mlp_in[-1]} is not a multiple of heads {s.heads}")
        if self.vhr is not None and self.vhr.width != self.embed_dim:
            raise ValueError(f"vhr.width {self.vhr.width} must equal embed_dim {self.embed_dim}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Token order of the fused sequence: the VHR image first, then the series as listed."""
        return ((VHR_MODALITY,) if self.vhr is not None else ()) + tuple(s.name for s in self.series)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def series_config(self, name: str) -> SeriesConfig:
        for s in self.series:
            if s.name == name:
                return s
        raise KeyError(f"no series {name!r} in this model (has {', '.join(self.modalities)})")

    def with_modalities(self, *names: str) -> OmniSatConfig:
        """The same model restricted to some modalities (e.g. S2-only fine-tuning), in the given order."""
        unknown = set(names) - set(self.modalities)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; this model has {self.modalities}")
        vhr = self.vhr if VHR_MODALITY in names else None
        series = tuple(self.series_config(n) for n in names if n != VHR_MODALITY)
        return dataclasses.replace(self, vhr=vhr, series=series)


def preset(name: Literal["treesatai-ts", "pastis-hd"], modalities: tuple[str, ...] | None = None) -> OmniSatConfig:
    """The reference hyper-parameters of one benchmark, optionally restricted to some modalities."""
    if name == "treesatai-ts":
        config = OmniSatConfig(
            vhr=VhrConfig(channels=4, patch_size=50),
            series=(SeriesConfig("s2", channels=10, in_norm=True, period=367),
                    SeriesConfig("s1-asc", channels=2, in_norm=False, period=367),
                    SeriesConfig("s1-des", channels=2, in_norm=False, period=367)),
            grid=(6, 6),
        )
        default = ("aerial", "s2", "s1-asc")  # S1 descending exists in the data, unused by the paper runs
    elif name == "pastis-hd":
        config = OmniSatConfig(
            vhr=VhrConfig(channels=3, patch_size=40),
            series=(SeriesConfig("s2", channels=10, pixels_per_token=4, in_norm=True, period=734),
                    SeriesConfig("s1-asc", channels=3, pixels_per_token=4, in_norm=False, period=734),
                    SeriesConfig("s1-des", channels=3, pixels_per_token=4, in_norm=False, period=734)),
            grid=(32, 32),
        )
        default = ("aerial", "s2", "s1-asc")
    else:
        raise ValueError(f"unknown preset {name!r}: choose treesatai-ts or pastis-hd")
    return config.with_modalities(*(modalities or default))
