"""OmniSat model behaviour: reference parameter counts and names, the fixes beyond the reference,
the two documented switches (geometric RPE layout, L-TAE padding mask)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from model_helpers import random_batch, tiny_config

from omnisat_model import rpe
from omnisat_model.checkpoint import (
    CheckpointError,
    build_model,
    from_reference,
    load_model,
    load_reference,
    load_strict,
    model_kind,
    save_model,
    to_reference,
)
from omnisat_model.config import preset
from omnisat_model.decoders import select_dates
from omnisat_model.masking import mask_from_noise
from omnisat_model.model import OmniSatClassifier, OmniSatPretraining

SPEC = Path(__file__).resolve().parent / "data" / "state-dicts"


def count(model: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


@pytest.mark.parametrize("name, modalities, kind, total, trainable", [
    ("treesatai-ts", None, "pretraining", 11_808_976, 11_621_072),
    ("treesatai-ts", None, "classifier", 9_842_895, 9_842_895),
    ("treesatai-ts", ("s2",), "classifier", 5_889_967, 5_889_967),
    ("treesatai-ts", None, "scratch-classifier", 9_843_407, 9_843_407),
    ("pastis-hd", None, "pretraining", 12_554_771, 12_178_963),
    ("pastis-hd", None, "classifier", 10_353_490, 10_353_490),
])
def test_parameter_counts_equal_the_reference(name, modalities, kind, total, trainable):
    classes = 15 if name == "treesatai-ts" else 18
    model = build_model(kind, preset(name, modalities), classes)
    assert (count(model), count(model, trainable=True)) == (total, trainable)


def reference_listings() -> dict[str, dict[str, tuple[int, ...]]]:
    """The `## ...` sections of tests/data/state-dicts/state_dict_*.txt: key -> shape."""
    sections: dict[str, dict[str, tuple[int, ...]]] = {}
    for path in sorted(SPEC.glob("state_dict_*.txt")):
        title = None
        for line in path.read_text().splitlines():
            if line.startswith("## "):
                title = line[3:]
                sections[title] = {}
            elif line and not line.startswith("#") and title:
                key, shape = line.split("\t")[:2]
                sections[title][key] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return sections


LISTINGS = {"exp=TSAITS_OmniSAT ": ("treesatai-ts", None, "pretraining"),
            "exp=TSAITS_OmniSAT_FT_MM": ("treesatai-ts", None, "classifier"),
            "exp=TSAITS_OmniSAT_FT_S2 ": ("treesatai-ts", ("s2",), "classifier"),
            "exp=TSAITS_Omni_MM": ("treesatai-ts", None, "scratch-classifier"),
            "exp=Pastis_OmniSAT ": ("pastis-hd", None, "pretraining"),
            "exp=Pastis_OmniSAT_FT_MM": ("pastis-hd", None, "classifier")}


def test_state_dict_names_map_onto_every_reference_listing():
    sections = reference_listings()
    assert len(sections) == len(LISTINGS)
    for title, listing in sections.items():
        (name, modalities, kind), = [v for k, v in LISTINGS.items() if k in title + " "]
        model = build_model(kind, preset(name, modalities), 15 if name == "treesatai-ts" else 18)
        ours = model.state_dict()
        mapped = to_reference(ours, kind, model.config.depth)
        assert {k: tuple(v.shape) for k, v in mapped.items()} == listing, title
        back_kind, back = from_reference(mapped)
        assert back_kind == kind and list(back) == list(ours)


def test_reference_checkpoint_round_trip_and_lightning_prefix(tmp_path):
    model = OmniSatClassifier(tiny_config(), 15)
    reference = to_reference(model.state_dict(), "classifier", 3, lightning=True)
    assert all(k.startswith("model.") for k in reference) and "model.head.0.weight" in reference
    other = OmniSatClassifier(tiny_config(), 15)
    load_reference(other, reference)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    save_model(tmp_path / "ours.pt", other)
    again = load_model(tmp_path / "ours.pt")
    assert isinstance(again, OmniSatClassifier) and model_kind(again) == "classifier"
    assert torch.equal(again.head.weight, model.head.weight)


def test_strict_loading_names_missing_and_unexpected_keys():
    model = OmniSatClassifier(tiny_config(), 15)
    state = dict(model.state_dict())
    state.pop("head.bias")
    state["encoder.surprise"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing: head\.bias.*unexpected: encoder\.surprise"):
        load_strict(model, state)
    pretraining = to_reference(OmniSatPretraining(tiny_config()).state_dict(), "pretraining", 3)
    with pytest.raises(CheckpointError, match="holds a pretraining model"):
        load_reference(model, pretraining)


def test_batch_of_one_equals_its_row_in_a_larger_batch():
    config = tiny_config()
    batch = random_batch(config, 3, {"s2": [12, 9, 12], "s1-asc": [10, 10, 7]})
    for model in (OmniSatClassifier(config, 15).eval(), OmniSatPretraining(config).eval()):
        noise = torch.rand(3, 108, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            if isinstance(model, OmniSatClassifier):
                full, single = model(batch), model({k: v[:1] for k, v in batch.items()})
            else:
                full = model(batch, noise=noise).fused
                single = model({k: v[:1] for k, v in batch.items()}, noise=noise[:1]).fused
        torch.testing.assert_close(single[0], full[0], rtol=1e-5, atol=1e-5)


def test_every_tensor_the_forward_uses_moves_with_the_model():
    """On the meta device nothing is computed: a tensor left behind on the CPU raises a device mismatch."""
    config = tiny_config(contrastive_block=None)
    model = OmniSatPretraining(config).eval().to("meta")
    batch = {k: v.to("meta") for k, v in random_batch(config, 2).items()}
    out = model(batch, noise=torch.rand(2, 108).to("meta"))
    assert out.loss.device.type == "meta" and out.fused.shape == (2, 37, 64)


def test_forward_leaves_inputs_and_global_rng_alone():
    config = tiny_config()
    model = OmniSatPretraining(config).eval()
    batch = random_batch(config, 2)
    before = {k: v.clone() for k, v in batch.items()}
    state = torch.get_rng_state()
    with torch.no_grad():
        a = model(batch, generator=torch.Generator().manual_seed(7))
        b = model(batch, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], batch[k]) for k in batch) and set(before) == set(batch)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.loss, b.loss)
    assert int(a.mask[0].sum()) == 108 - 27


def test_mask_keeps_the_tokens_of_smallest_noise():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6]])
    assert mask_from_noise(noise, 0.75).tolist() == [[1, 0, 1, 1, 1, 0, 1, 1]]


def test_date_selection_follows_the_reference_rule():
    # Candidates: dates before the last valid one (index 4 here); 0.75-quantile of [.1,.4,.2,.3] = .325.
    attention = torch.tensor([[0.1, 0.4, 0.2, 0.3, 0.9, 0.0]])
    dates = torch.tensor([[5, 9, 20, 31, 40, 0]])
    assert select_dates(attention, dates).tolist() == [[False, True, False, False, False, False]]
    assert select_dates(attention, dates, filtering=False).tolist() == [[True, True, True, True, False, False]]


def test_fusion_accepts_other_sequence_lengths():
    """A 3-modality fusion fed 2 modalities' tokens equals a 2-modality model with the same weights."""
    three = OmniSatClassifier(tiny_config(), 15).eval()
    two = OmniSatClassifier(tiny_config().with_modalities("aerial", "s2"), 15).eval()
    two.load_state_dict({k: v for k, v in three.state_dict().items() if "s1-asc" not in k})
    tokens = torch.randn(2, 72, 64)
    with torch.no_grad():
        torch.testing.assert_close(three.encoder.fuse(tokens), two.encoder.fuse(tokens))


def test_geometric_layout_puts_one_patch_of_every_modality_at_distance_zero():
    config = tiny_config(rpe_layout="geometric")
    buckets = rpe.self_attention_buckets("geometric", config.grid, 3)
    p = config.num_patches
    for m in range(3):
        for n in range(3):
            block = buckets[1 + m * p:1 + (m + 1) * p, 1 + n * p:1 + (n + 1) * p]
            assert torch.equal(block, rpe.euclidean_bucket(rpe.patch_coords(config.grid)))
            assert (block.diagonal() == 3).all()
    assert (buckets[0] == rpe.SKIP_BUCKET).all() and (buckets[:, 0] == rpe.SKIP_BUCKET).all()
    reference = rpe.self_attention_buckets("reference", config.grid, 3)
    assert reference[9, 9 + 36] != 3  # the reference raster: aerial p8 and s2 p8 are not at distance 0
    model = OmniSatPretraining(config).eval()
    with torch.no_grad():
        assert torch.isfinite(model(random_batch(config, 2), noise=torch.rand(2, 108)).loss)


def padded(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """The same batch with `extra` more zero dates of padding on every series."""
    out = dict(batch)
    for key, value in batch.items():
        if key.endswith("_dates"):
            name = key[:-len("_dates")]
            out[key] = torch.cat([value, value.new_zeros(value.shape[0], extra)], dim=1)
            series = batch[name]
            out[name] = torch.cat([series, series.new_zeros(series.shape[0], extra, *series.shape[2:])], dim=1)
    return out


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train-batch-statistics"])
def test_padding_mask_makes_outputs_independent_of_padding(train):
    no_dropout = dict(dropout=0.0, attention_dropout=0.0)
    base = tiny_config(drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
    base = dataclasses.replace(base, series=tuple(dataclasses.replace(s, **no_dropout) for s in base.series))
    batch = random_batch(base, 2, {"s2": [12, 8], "s1-asc": [10, 6]})
    results = {}
    for masked in (False, True):
        torch.manual_seed(0)
        model = OmniSatClassifier(dataclasses.replace(base, ltae_padding_mask=masked), 15).train(train)
        outs = [model(b) for b in (batch, padded(batch, 5))]
        results[masked] = outs
    torch.testing.assert_close(results[True][0], results[True][1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(results[False][0], results[False][1], rtol=1e-3, atol=1e-3)  # the reference quirk


def test_convert_checkpoint_command_both_ways(tmp_path):
    from typer.testing import CliRunner

    from cli.model import app

    model = OmniSatPretraining(tiny_config())
    reference = {"state_dict": to_reference(model.state_dict(), "pretraining", 3, lightning=True), "epoch": 9}
    torch.save(reference, tmp_path / "last.ckpt")
    runner = CliRunner()
    result = runner.invoke(app, ["convert-checkpoint", str(tmp_path / "last.ckpt"), str(tmp_path / "ours.pt")])
    assert result.exit_code == 0, result.output
    assert "reference -> ours" in result.output
    ours = load_model(tmp_path / "ours.pt")
    assert ours.config.embed_dim == 64 and ours.config.modalities == ("aerial", "s2", "s1-asc")
    result = runner.invoke(app, ["convert-checkpoint", str(tmp_path / "ours.pt"), str(tmp_path / "back.pt")])
    assert result.exit_code == 0, result.output
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back.keys() == {k[len("model."):] for k in reference["state_dict"]}
    assert all(torch.equal(back[k[len("model."):]], v) for k, v in reference["state_dict"].items())

    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["convert-checkpoint", str(tmp_path / "broken.pt"), str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "broken.pt: cannot be read with weights_only=True" in result.output
    assert not (tmp_path / "x.pt").exists()
