"""Checkpoints: reference (gastruc/OmniSat) state-dict names <-> ours, saving and strict loading.

Reference names are listed in `tests/data/state-dicts/state_dict_*.txt`. The mapping is a pure function of the
key (plus the depth, which says which `blocks.<i>` is the cross block), so it runs both ways and is
tested on every key of every preset. Loading is always `weights_only=True` onto the CPU.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from .config import VHR_MODALITY, OmniSatConfig, SeriesConfig, VhrConfig, preset

Kind = Literal["pretraining", "classifier", "scratch-classifier"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file or keys."""


@dataclass(frozen=True)
class Rule:
    """`ours` <-> `ref` name fragment; `{}` stands for an integer mapped by `to_ref` / `from_ref`.

    A fragment ending with "." matches a prefix of the remaining key, otherwise the whole remainder.
    `from_ref` returns None when the reference index does not belong to this rule.
    """

    ours: str
    ref: str
    to_ref: Callable[[int], int] = lambda k: k
    from_ref: Callable[[int], int | None] = lambda i: i


def _every(step: int, offset: int) -> tuple[Callable[[int], int], Callable[[int], int | None]]:
    return (lambda k: step * k + offset), (
        lambda i: (i - offset) // step if i >= offset and (i - offset) % step == 0 else None
    )


VHR_ENCODER = [Rule("conv.", "proj.0."), Rule("bn.", "proj.1."),
               Rule("res.{}.norm.", "proj.{}.bn.", *_every(2, 4)), Rule("res.{}.", "proj.{}.", *_every(2, 4))]
SERIES_ENCODER = [
    Rule("in_mlp.{}.linear.", "inconv.{}.", *_every(4, 0)),
    Rule("in_mlp.{}.bn.", "inconv.{}.", *_every(4, 1)),
    Rule("in_norm.", "in_norm."),
    Rule("query", "attention_heads.Q"),
    Rule("key.", "attention_heads.fc1_k."),
    Rule("out_mlp.{}.linear.", "mlp.{}.", *_every(3, 0)),
    Rule("out_mlp.{}.bn.", "mlp.{}.", *_every(3, 1)),
    Rule("out_norm.", "out_norm."),
]
BLOCK = [Rule("attn.rpe_table", "attn.rpe_k.lookup_table_weight"), Rule("", "")]
CROSS = [Rule("attn.query_pos", "attn.pos_embed"), Rule("attn.query", "attn.q_learned"), Rule("attn.key.", "attn.wk."),
         Rule("attn.value.", "attn.wv."), Rule("attn.rpe_table", "attn.rpe_k.lookup_table_weight"), Rule("", "")]
VHR_DECODER = [Rule("deconvs.{}.", "decode.{}.", *_every(2, 1))]
SERIES_DECODER = [Rule("linear.", "decode.0."), Rule("date_table", "temp_encoding.weight")]


def _apply(rules: list[Rule], rest: str, to_ref: bool) -> str | None:
    for rule in rules:
        src, dst = (rule.ours, rule.ref) if to_ref else (rule.ref, rule.ours)
        pattern = re.escape(src).replace(r"\{\}", r"(\d+)")
        match = re.match(pattern if src.endswith(".") or src == "" else pattern + "$", rest)
        if not match:
            continue
        if match.groups():
            index = (rule.to_ref if to_ref else rule.from_ref)(int(match.group(1)))
            if index is None:
                continue
            dst = dst.replace("{}", str(index))
        return dst + rest[match.end():]
    return None


def _encoder_key(rest: str, depth: int, to_ref: bool) -> str | None:
    """A key inside OmniSatEncoder (ours) / OmniModule (reference)."""
    if rest in ("cls_token", "pos_embed"):
        return rest
    if to_ref:
        if m := re.match(r"encoders\.([^.]+)\.(.*)$", rest):
            inner = _apply(VHR_ENCODER if m[1] == VHR_MODALITY else SERIES_ENCODER, m[2], True)
            return inner and f"projector_{m[1]}.{inner}"
        if m := re.match(r"blocks\.(\d+)\.(.*)$", rest):
            inner = _apply(BLOCK, m[2], True)
            return inner and f"blocks.{m[1]}.{inner}"
        if m := re.match(r"cross\.(.*)$", rest):
            inner = _apply(CROSS, m[1], True)
            return inner and f"blocks.{depth}.{inner}"
        return None
    if m := re.match(r"projector_([^.]+)\.(.*)$", rest):
        inner = _apply(VHR_ENCODER if m[1] == VHR_MODALITY else SERIES_ENCODER, m[2], False)
        return inner and f"encoders.{m[1]}.{inner}"
    if m := re.match(r"blocks\.(\d+)\.(.*)$", rest):
        if int(m[1]) == depth:
            inner = _apply(CROSS, m[2], False)
            return inner and f"cross.{inner}"
        inner = _apply(BLOCK, m[2], False)
        return inner and f"blocks.{m[1]}.{inner}"
    return None


def _model_key(key: str, kind: Kind, depth: int, to_ref: bool) -> str | None:
    """Map one key of a whole model (ours: OmniSatPretraining / OmniSatClassifier)."""
    if kind == "pretraining":
        prefixes = [("encoder.", "encoder.")]
        heads = [("mask_token", "masked_token")]
    elif kind == "classifier":
        prefixes = [("encoder.", "model.")]
        heads = [("head.weight", "head.0.weight"), ("head.bias", "head.0.bias")]
    else:
        prefixes = [("encoder.", "encoder.")]
        heads = [("head_norm.weight", "mlp.mlp.0.weight"), ("head_norm.bias", "mlp.mlp.0.bias"),
                 ("head.weight", "mlp.mlp.1.weight"), ("head.bias", "mlp.mlp.1.bias")]
    for ours, ref in heads:
        if key == (ours if to_ref else ref):
            return ref if to_ref else ours
    for ours, ref in prefixes:
        src, dst = (ours, ref) if to_ref else (ref, ours)
        if key.startswith(src):
            inner = _encoder_key(key[len(src):], depth, to_ref)
            return inner and dst + inner
    if kind == "pretraining":
        src = r"decoders\.([^.]+)\.(.*)$" if to_ref else r"decoder\.projector_([^.]+)\.(.*)$"
        if m := re.match(src, key):
            rules = VHR_DECODER if m[1] == VHR_MODALITY else SERIES_DECODER
            inner = _apply(rules, m[2], to_ref)
            return inner and (f"decoder.projector_{m[1]}.{inner}" if to_ref else f"decoders.{m[1]}.{inner}")
    return None


def reference_kind(state: dict[str, Tensor]) -> Kind:
    if "masked_token" in state or any(k.startswith("decoder.") for k in state):
        return "pretraining"
    if "head.0.weight" in state:
        return "classifier"
    if "mlp.mlp.1.weight" in state:
        return "scratch-classifier"
    raise CheckpointError("not a reference OmniSat state dict: no masked_token, decoder.*, head.0.* or mlp.mlp.* keys")


def reference_depth(state: dict[str, Tensor]) -> int:
    """Index of the cross block = number of self-attention blocks."""
    crosses = {int(m[1]) for k in state if (m := re.search(r"blocks\.(\d+)\.attn\.q_learned$", k))}
    if len(crosses) != 1:
        raise CheckpointError("reference state dict without exactly one cross block (blocks.<i>.attn.q_learned)")
    return crosses.pop()


def strip_lightning_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Lightning checkpoint prefixes every key with the LightningModule attribute `model.`."""
    if state and all(k.startswith("model.") for k in state):
        inner = {k[len("model."):]: v for k, v in state.items()}
        if any(k == "masked_token" or k.startswith(("encoder.", "head.0.", "mlp.mlp.")) for k in inner):
            return inner
    return state


def from_reference(state: dict[str, Tensor]) -> tuple[Kind, dict[str, Tensor]]:
    """Reference (or Lightning) state dict -> (kind, our state dict). Unknown keys raise, naming them."""
    state = strip_lightning_prefix(state)
    kind, depth = reference_kind(state), reference_depth(state)
    out, unknown = {}, []
    for key, value in state.items():
        ours = _model_key(key, kind, depth, to_ref=False)
        if ours is None:
            unknown.append(key)
        else:
            out[ours] = value
    if unknown:
        raise CheckpointError(f"reference keys with no counterpart in our model: {', '.join(unknown[:8])}"
                              + (f" (+{len(unknown) - 8} more)" if len(unknown) > 8 else ""))
    return kind, out


def to_reference(state: dict[str, Tensor], kind: Kind, depth: int, lightning: bool = False) -> dict[str, Tensor]:
    """Our state dict -> reference names (with the Lightning `model.` prefix when asked)."""
    out = {}
    for key, value in state.items():
        ref = _model_key(key, kind, depth, to_ref=True)
        if ref is None:
            raise CheckpointError(f"key {key!r} has no reference counterpart")
        out[("model." if lightning else "") + ref] = value
    return out


def model_kind(model: nn.Module) -> Kind:
    from .model import OmniSatClassifier, OmniSatPretraining

    if isinstance(model, OmniSatPretraining):
        return "pretraining"
    if isinstance(model, OmniSatClassifier):
        return "scratch-classifier" if model.head_norm is not None else "classifier"
    raise TypeError(f"not an OmniSat model: {type(model).__name__}")


def load_strict(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> None:
    """load_state_dict(strict=True) with one clear message naming missing / unexpected / misshapen keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            problems.append(
                f"{label}: {', '.join(items[:6])}" + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
            )
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_reference(model: nn.Module, state: dict[str, Tensor], source: str = "reference state dict") -> None:
    """Load a reference (or Lightning) state dict into one of our models, strictly."""
    kind, ours = from_reference(state)
    if kind != model_kind(model):
        raise CheckpointError(f"{source} holds a {kind} model, not a {model_kind(model)} one")
    load_strict(model, ours, source)


def read(path: str | Path) -> dict:
    """torch.load on the CPU with weights_only=True; one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: cannot be read with weights_only=True ({first})") from None


def state_dict_of(payload: dict, path: str | Path = "checkpoint") -> dict[str, Tensor]:
    """The tensors of a checkpoint: a bare state dict, a Lightning checkpoint or one of ours."""
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state dict of tensors found")
    return state


def save(path: str | Path, payload: dict) -> None:
    """torch.save to a temporary name, then rename: a killed save never leaves a truncated file. Serialised
    in memory first, so that a full disk is an OSError naming `path` (torch's own writer says only
    "file write failed"), and no temporary file is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
        os.replace(tmp, path)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def config_to_dict(config: OmniSatConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> OmniSatConfig:
    data = dict(data)
    vhr = data.pop("vhr")
    vhr = VhrConfig(**vhr) if vhr is not None else None
    series = tuple(SeriesConfig(**{**s, "mlp_in": tuple(s["mlp_in"]), "mlp": tuple(s["mlp"])})
                   for s in data.pop("series"))
    return OmniSatConfig(vhr=vhr, series=series, **{**data, "grid": tuple(data["grid"])})


def infer_config(state: dict[str, Tensor], base: Literal["treesatai-ts", "pastis-hd"] | None = None) -> OmniSatConfig:
    """Our config for a reference state dict: widths from the tensors' shapes, the rest from the preset.

    The preset (`base`, else chosen by the patch count: 36 -> treesatai-ts, 1024 -> pastis-hd) gives
    what shapes cannot tell: patch sizes, date periods, pixels per token.
    """
    state = strip_lightning_prefix(state)
    kind, depth = reference_kind(state), reference_depth(state)
    enc = "model." if kind == "classifier" else "encoder."
    pos = state[f"{enc}pos_embed"]
    patches, dim = pos.shape[1] - 1, pos.shape[2]
    if base is None:
        base = {36: "treesatai-ts", 1024: "pastis-hd"}.get(patches)
        if base is None:
            raise CheckpointError(f"{patches} patches: pass the preset the model was built from")
    full = preset(base)
    full_series = {s.name: s for s in preset(base, ("aerial", "s2", "s1-asc", "s1-des")).series}
    side = int(round(patches**0.5))
    head_dim = state[f"{enc}blocks.0.attn.rpe_k.lookup_table_weight"].shape[1]
    names = []
    for key in state:
        if m := re.match(re.escape(enc) + r"projector_([^.]+)\.", key):
            if m[1] not in names:
                names.append(m[1])
    vhr = None
    series = []
    for name in names:
        p = f"{enc}projector_{name}."
        if name == VHR_MODALITY:
            conv = state[p + "proj.0.weight"]
            vhr = dataclasses.replace(full.vhr, channels=conv.shape[1], width=conv.shape[0])
            continue
        if name not in full_series:
            raise CheckpointError(f"modality {name!r} is not one of {', '.join(full_series)}")
        template = full_series[name]
        heads, key_dim = state[p + "attention_heads.Q"].shape
        mlp_in = tuple(state[p + f"inconv.{4 * i}.weight"].shape[0] for i in range(len(template.mlp_in)))
        mlp = tuple(state[p + f"mlp.{3 * i}.weight"].shape[0] for i in range(len(template.mlp)))
        features = state[p + "inconv.0.weight"].shape[1]
        series.append(dataclasses.replace(template, channels=features // template.pixels_per_token**2,
                                          heads=heads, key_dim=key_dim, mlp_in=mlp_in, mlp=mlp,
                                          in_norm=p + "in_norm.weight" in state))
    return dataclasses.replace(full, vhr=vhr, series=tuple(series), grid=(side, side), embed_dim=dim, depth=depth,
                               num_heads=dim // head_dim)


FORMAT = "omnisat-toolkit"
# Our checkpoint, written by `omnisat train` (with its training state) and by `convert-checkpoint`:
#   format: FORMAT, kind: Kind, config: OmniSatConfig as a dict, state_dict: our parameter names,
#   num_classes (classifiers), and for training runs optimizer, scheduler, epoch, state, rng,
#   train_config. The trainer's checkpoints of version 0.1 (model weights under "model") still read.
TRAINING_KEYS = ("optimizer", "scheduler", "epoch", "state", "rng", "train_config")


def build_model(kind: Kind, config: OmniSatConfig, num_classes: int | None = None) -> nn.Module:
    from .model import OmniSatClassifier, OmniSatPretraining

    if kind == "pretraining":
        return OmniSatPretraining(config)
    if num_classes is None:
        raise CheckpointError("a classifier needs its number of classes")
    return OmniSatClassifier(config, num_classes, head_norm=kind == "scratch-classifier")


def model_payload(model: nn.Module) -> dict:
    """The model part of our checkpoint: format, kind, config, state dict (on the CPU), classes."""
    kind = model_kind(model)
    payload = {"format": FORMAT, "kind": kind, "config": config_to_dict(model.config),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if kind != "pretraining":
        payload["num_classes"] = model.head.out_features
    return payload


def save_model(path: str | Path, model: nn.Module, **extra) -> None:
    """Our checkpoint of `model` (+ anything JSON-like, e.g. where it was converted from), atomically."""
    save(path, {**model_payload(model), **extra})


def is_ours(payload: dict) -> bool:
    return isinstance(payload, dict) and (payload.get("format") == FORMAT or _legacy_trainer(payload))


def _legacy_trainer(payload: dict) -> bool:
    return isinstance(payload, dict) and {"model", "config", "kind", "optimizer"} <= set(payload)


def read_ours(path: str | Path) -> dict:
    """One of our checkpoints (converted or trained), with its weights under "state_dict"."""
    payload = read(path)
    if not is_ours(payload):
        raise CheckpointError(f"{path}: not an {FORMAT} checkpoint (convert reference ones with "
                              "`omnisat convert-checkpoint`)")
    if _legacy_trainer(payload):
        payload = {
            **{k: v for k, v in payload.items() if k != "model"},
            "format": FORMAT,
            "state_dict": payload["model"],
        }
    return payload


def load_model(path: str | Path) -> nn.Module:
    """Rebuild and strictly load one of our checkpoints (on the CPU)."""
    payload = read_ours(path)
    try:
        model = build_model(payload["kind"], config_from_dict(payload["config"]), payload.get("num_classes"))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its config does not describe a model ({error})") from None
    load_strict(model, payload["state_dict"], str(path))
    return model


def convert_file(source: str | Path, target: str | Path, base: Literal["treesatai-ts", "pastis-hd"] | None = None,
                 lightning: bool = False) -> str:
    """Reference checkpoint -> ours, or ours -> reference state dict; returns the direction taken."""
    payload = read(source)
    if is_ours(payload):
        model = load_model(source)  # validates before writing anything
        state = to_reference(model.state_dict(), model_kind(model), model.config.depth, lightning)
        save(target, {"state_dict": state} if lightning else state)
        return "ours -> reference"
    state = state_dict_of(payload, source)
    try:
        kind, _ = from_reference(state)
        config = infer_config(state, base)
        num_classes = None
        if kind != "pretraining":
            head = strip_lightning_prefix(state)["head.0.weight" if kind == "classifier" else "mlp.mlp.1.weight"]
            num_classes = head.shape[0]
        model = build_model(kind, config, num_classes)
        load_reference(model, state, str(source))
    except CheckpointError as error:
        raise CheckpointError(f"{source}: {error}") from None
    save_model(target, model, converted_from=str(source))
    return "reference -> ours"
