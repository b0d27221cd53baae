"""One checkpoint schema, driven from the CLI: reference weights (plain and Lightning) converted to ours
start fine-tuning, evaluate and embed; the trainer's checkpoints convert back to the reference layout
with the reference's exact parameter names and our weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omnisat_model.checkpoint import from_reference

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "conformance" / "tsaits_tiny.pt"
CLI = [sys.executable, "-c", "from cli.model import app; app()"]
# The conformance model: the reference TreeSatAI-TS preset shrunk as our treesatai-ts-small, modalities as listed.
SMALL = ["--model", "treesatai-ts-small", "--modalities", "aerial,s2,s1-asc", "--batch-size", "4", "--device", "cpu"]


def omnisat(*args) -> subprocess.CompletedProcess:
    r = subprocess.run(CLI + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Path]:
    """The conformance weights as the reference code saves them: a bare state dict and a Lightning checkpoint."""
    vectors = torch.load(VECTORS, weights_only=True)
    folder = tmp_path_factory.mktemp("reference")
    state = vectors["state_dict_pretrain"]
    torch.save(state, folder / "plain.pt")
    torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.1.3",
                "state_dict": {f"model.{k}": v for k, v in state.items()},
                "optimizer_states": [], "lr_schedulers": [], "hyper_parameters": {"lr": 1e-4}}, folder / "lightning.pt")
    torch.save(vectors["finetune_eval"]["state_dict_finetune"], folder / "finetuned.pt")
    return {"plain": folder / "plain.pt", "lightning": folder / "lightning.pt", "finetuned": folder / "finetuned.pt",
            "state": state, "finetune_state": vectors["finetune_eval"]["state_dict_finetune"]}


@pytest.mark.slow
def test_reference_weights_fine_tune_evaluate_and_embed(built, reference, tmp_path):
    data, _ = built
    ours = tmp_path / "ours.pt"
    omnisat("convert-checkpoint", reference["lightning"], ours)
    # the Lightning and the plain checkpoint convert to the same weights
    omnisat("convert-checkpoint", reference["plain"], tmp_path / "plain-ours.pt")
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (ours, tmp_path / "plain-ours.pt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    run = tmp_path / "finetune"
    r = omnisat("train", "finetune", "--init", ours, "--data", data, "--out", run, "--epochs", "1", *SMALL)
    assert json.loads(r.stdout.strip().splitlines()[-1])["epochs"] == 1
    start = torch.load(run / "last.pt", weights_only=True)
    assert start["format"] == "omnisat-toolkit" and start["kind"] == "classifier"

    evaluated = json.loads(omnisat("evaluate", run / "best.pt", "--split", "val").stdout)
    assert evaluated["split"] == "val" and evaluated["tiles"] > 0 and 0 <= evaluated["f1_macro"] <= 1
    embedded = json.loads(omnisat("embed", ours, tmp_path / "emb.npz", "--data", data).stdout)
    assert embedded["dim"] == 64 and embedded["tiles"] > 0
    assert np.isfinite(np.load(tmp_path / "emb.npz")["embeddings"]).all()

    # a reference fine-tuned classifier converts too and is evaluated as it is
    omnisat("convert-checkpoint", reference["finetuned"], tmp_path / "ft-ours.pt")
    assert json.loads(omnisat("evaluate", tmp_path / "ft-ours.pt", "--data", data).stdout)["tiles"] > 0
    # it records no training config, so no dataset: without --data, one line that asks for it
    for command in (("evaluate", tmp_path / "ft-ours.pt"), ("embed", tmp_path / "ft-ours.pt", tmp_path / "e.npz")):
        r = subprocess.run(CLI + [str(a) for a in command], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 2 and "pass --data" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.slow
def test_trainer_checkpoints_convert_to_the_reference_layout(built, reference, tmp_path):
    data, _ = built
    run = tmp_path / "pretrain"
    omnisat("train", "pretrain", "--data", data, "--out", run, "--epochs", "1", *SMALL)
    for lightning in (False, True):
        target = tmp_path / f"ref-{lightning}.pt"
        omnisat("convert-checkpoint", run / "last.pt", target, *(["--lightning"] if lightning else []))
        converted = torch.load(target, weights_only=True)
        state = converted["state_dict"] if lightning else converted
        plain = {k.removeprefix("model."): v for k, v in state.items()} if lightning else state
        # exactly the reference's parameter names and shapes
        assert {k: tuple(v.shape) for k, v in plain.items()} == {
            k: tuple(v.shape) for k, v in reference["state"].items()
        }
        # and our trained weights under them
        ours = torch.load(run / "last.pt", weights_only=True)["state_dict"]
        _, back = from_reference(state)
        assert back.keys() == ours.keys() and all(torch.equal(back[k], ours[k]) for k in ours)
    # a fine-tuning run's checkpoint converts to the reference classifier names
    omnisat("train", "finetune", "--init", run / "last.pt", "--data", data, "--out", tmp_path / "ft", "--epochs", "1",
            *SMALL)
    omnisat("convert-checkpoint", tmp_path / "ft" / "best.pt", tmp_path / "ft-ref.pt")
    converted = torch.load(tmp_path / "ft-ref.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in reference["finetune_state"].items()}


def test_resume_from_weights_only_is_one_line(built, reference, tmp_path):
    data, _ = built
    run = tmp_path / "run"
    run.mkdir()
    omnisat("convert-checkpoint", reference["plain"], run / "last.pt")
    r = subprocess.run(CLI + ["train", "pretrain", "--data", str(data), "--out", str(run), "--resume", *SMALL],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no training state" in r.stderr and "last.pt" in r.stderr
