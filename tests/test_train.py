"""omnisat train on the tiny world's TreeSatAI-TS build: data as the reference reads it, F1, resume
equal to an uninterrupted run, 2-process DDP gradients equal to one process, bad input refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from omnisat_data.formats.treesatai_ts import GENERA
from omnisat_data.stac.products import day_of_year
from omnisat_train.data.treesatai_ts import TreeSatTS, collate
from omnisat_train.metrics import counts, f1_scores
from omnisat_train.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent


def test_samples_labels_dates_and_padding(built):
    out, _ = built
    labels = json.loads((out / "labels" / "TreeSatBA_v9_60m_multi_labels.json").read_text())
    ds = TreeSatTS(out, "train", ("aerial", "s2", "s1-asc"), train=False, max_dates=5)
    assert len(ds) == sum(1 for f in (out / "train_filenames.lst").read_text().split()
                          if any(frac > 0.07 for _, frac in labels[f]))
    s = ds[0]
    want = np.zeros(15, np.float32)
    for genus, frac in labels[s["name"] + ".tif"]:
        want[GENERA.index(genus)] = frac > 0.07
    assert torch.equal(s["label"], torch.from_numpy(want))
    assert s["aerial"].shape == (4, 300, 300) and s["s2"].shape[1:] == (10, 6, 6) and len(s["s2"]) == 5
    with h5py.File(out / "sentinel" / f"{s['name']}.h5", "r") as f:
        products = [p.decode() for p in f["sen-2-products"][()]]
        n = len(products)
        keep = np.linspace(0, n - 1, 5).round().astype(int)  # deterministic evaluation subset, time order
        assert s["s2_dates"].tolist() == [day_of_year(products[k], 2) for k in keep]
        np.testing.assert_array_equal(s["s2"].numpy(), f["sen-2-data"][()][keep])
    import rasterio

    with rasterio.open(out / "aerial" / f"{s['name']}.tif") as src:
        assert torch.equal(s["aerial"], torch.from_numpy(src.read()[:, 2:302, 2:302].astype(np.float32)))
    long = TreeSatTS(out, "train", ("s1-asc",), max_dates=50)
    batch = collate([long[0], long[1]])
    t = batch["s1-asc"].shape[1]
    for b, sample in enumerate((long[0], long[1])):
        n = len(sample["s1-asc_dates"])
        assert (batch["s1-asc_dates"][b, n:] == 0).all() and (batch["s1-asc"][b, n:] == 0).all() and n <= t


def test_f1_matches_hand_counts():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2], [1.0, 1.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    s = f1_scores(counts(logits, labels))
    # class 0: tp 2 -> 1.0; class 1: tp 1, fp 1 -> 2/3; class 2: fp 1, fn 1 -> 0
    assert s["f1_per_class"] == pytest.approx([1.0, 2 / 3, 0.0])
    assert s["f1_macro"] == pytest.approx((1 + 2 / 3) / 3) == s["f1_macro_present"]
    padded = f1_scores(counts(torch.cat([logits, -torch.ones(3, 2)], 1), torch.cat([labels, torch.zeros(3, 2)], 1)))
    assert padded["f1_macro"] == pytest.approx((1 + 2 / 3) / 5) and padded["f1_macro_present"] == s["f1_macro"]
    assert s["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert s["f1_weighted"] == pytest.approx((2 * 1.0 + 1 * 2 / 3 + 1 * 0.0) / 4)


def _cfg(built_dir, out, **kw):
    base = dict(task="pretrain", data=built_dir, out=out, model="treesatai-ts-small", batch_size=4, epochs=2,
                max_dates=8, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_resume_continues_exactly_and_finetune_starts_from_pretraining(built, tmp_path):
    whole = train(_cfg(built[0], tmp_path / "whole"))
    first = train(_cfg(built[0], tmp_path / "resumed", epochs=1))
    resumed = train(_cfg(built[0], tmp_path / "resumed", epochs=2, resume=True))
    assert len(first["history"]) == 1 and [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert resumed["history"][1]["train"]["loss"] == whole["history"][1]["train"]["loss"]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert (tmp_path / "whole" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    events = list((tmp_path / "whole" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    # fine-tuning on a subset of the pretrained modalities loads the shared encoder weights
    ft = train(_cfg(built[0], tmp_path / "ft", task="finetune", modalities=("s2",), epochs=1,
                    init=tmp_path / "whole" / "last.pt"))
    test = json.loads((tmp_path / "ft" / "test.json").read_text())
    assert test == ft["test"] and 0.0 <= test["f1_macro"] <= 1.0 and len(test["f1_per_class"]) == 15
    # evaluate and embed rebuild the model from the checkpoint alone
    from omnisat_train.evaluate import embed, evaluate

    again = evaluate(tmp_path / "ft" / "best.pt", "test")
    assert again["f1_per_class"] == test["f1_per_class"] and again["loss"] == pytest.approx(test["loss"], rel=1e-5)
    info = embed(tmp_path / "whole" / "last.pt", tmp_path / "emb.npz", split="val")
    saved = np.load(tmp_path / "emb.npz")
    assert saved["embeddings"].shape == (info["tiles"], 64) and list(saved["classes"]) == list(GENERA)
    assert np.isfinite(saved["embeddings"]).all() and len(saved["names"]) == len(saved["labels"])


def test_a_run_killed_in_its_first_epoch_leaves_nothing_to_refuse(built, tmp_path, monkeypatch):
    # a kill (here an interrupt injected at the first evaluation) before the first committed epoch: the same
    # command runs again without --resume, as nothing of the run was written
    import omnisat_train.train as loop

    plain = loop.run_epoch

    def interrupted(cfg, rt, model, loader, epoch, optimizer, split):
        if split == "val":
            raise KeyboardInterrupt
        return plain(cfg, rt, model, loader, epoch, optimizer, split)

    cfg = _cfg(built[0], tmp_path / "run", epochs=1, max_dates=4)
    monkeypatch.setattr(loop, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert [name for name in loop.RUN_FILES if (tmp_path / "run" / name).exists()] == []
    monkeypatch.setattr(loop, "run_epoch", plain)
    assert [h["epoch"] for h in train(cfg)["history"]] == [0]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_two_process_ddp_gradients_equal_one_process(built, tmp_path):
    script = ROOT / "tests" / "ddp_step.py"
    subprocess.run([sys.executable, str(script), str(built[0]), str(tmp_path / "one.pt")], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), str(built[0]), str(tmp_path / "two.pt")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    # and the whole loop under torchrun: 2 gloo processes, rank 0 writing
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "cli.model", "train", "finetune", "--data", str(built[0]), "--out", str(tmp_path / "ft"),
                        "--model", "treesatai-ts-small", "--epochs", "2", "--batch-size", "4", "--device", "cpu"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["train"]["samples"] % 2 == 0
    assert (tmp_path / "ft" / "test.json").is_file() and (tmp_path / "ft" / "best.pt").is_file()


def test_bad_input_stops_with_one_line(built, tmp_path):
    base = [sys.executable, "-m", "cli.model", "train"]
    broken = tmp_path / "broken"
    shutil.copytree(built[0], broken, ignore=shutil.ignore_patterns("aerial"))
    labels = broken / "labels" / "TreeSatBA_v9_60m_multi_labels.json"
    cases = [
        (["finetune", "--data", str(broken), "--out", str(tmp_path / "o1")], "modality aerial"),
        (["finetune", "--data", str(built[0]), "--out", str(tmp_path / "o2"), "--modalities", "s2,radar"], "radar"),
        (["pretrain", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3")], "nowhere"),
        (["probe", "--data", str(built[0]), "--out", str(tmp_path / "o4")], "--init"),
    ]
    for args, needle in cases:
        r = subprocess.run(base + args, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    doc = json.loads(labels.read_text())
    doc.pop(sorted(doc)[0])
    labels.write_text(json.dumps(doc))
    r = subprocess.run(
        base + ["pretrain", "--data", str(broken), "--out", str(tmp_path / "o5"), "--modalities", "s2,s1-asc"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2 and "no labels for" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_label_subset_keeps_every_genus_near_the_fraction():
    from omnisat_train.data.treesatai_ts import label_subset

    rng = np.random.default_rng(3)
    labels = (rng.random((1000, 15)) < np.linspace(0.02, 0.5, 15)).astype(np.float32)
    keep = label_subset(labels, 0.1, seed=5)
    assert abs(len(keep) - 100) <= 3 and np.array_equal(keep, label_subset(labels, 0.1, seed=5))
    share = labels[keep].sum(axis=0) / labels.sum(axis=0)
    assert np.all(np.abs(share - 0.1) <= 0.03), share  # random sampling of 100 rows would miss rare genera by far more


def test_packed_cache_serves_the_same_samples(built, tmp_path):
    out, _ = built
    mods = ("aerial", "s2", "s1-asc", "s1-des")
    for train_mode in (False, True):
        raw = TreeSatTS(out, "train", mods, train=train_mode, max_dates=6, seed=4)
        packed = TreeSatTS(out, "train", mods, train=train_mode, max_dates=6, seed=4, cache=tmp_path / "cache")
        raw.set_epoch(3), packed.set_epoch(3)
        for i in range(len(raw)):
            a, b = raw[i], packed[i]
            assert a.keys() == b.keys() and a["name"] == b["name"]
            for key in a:
                if torch.is_tensor(a[key]):
                    assert torch.equal(a[key], b[key]), (i, key)
    index = json.loads((tmp_path / "cache" / "train" / "index.json").read_text())
    assert len(index["names"]) == len(raw) and not list((tmp_path / "cache").glob(".*tmp"))


def test_non_finite_loss_stops_the_run(built, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(built[0], broken)
    for path in (broken / "sentinel").glob("*.h5"):
        with h5py.File(path, "r+") as f:
            d = f["sen-2-data"][()]
            d[...] = 3e38  # overflows to inf inside the network
            f["sen-2-data"][...] = d
    with pytest.raises(
        FloatingPointError, match="non-finite train loss at epoch 0 step 0; the run stops before any checkpoint"
    ):
        train(_cfg(broken, tmp_path / "run", task="finetune", modalities=("s2",), epochs=1))


def test_pastis_hd_samples_and_a_training_epoch(world, tmp_path):
    from omnisat_data.build.pastis_hd import PastisConfig, build_pastis
    from omnisat_data.recipe import load_recipe
    from omnisat_train.data.pastis_hd import CLASSES, PastisHD, days_since_reference, presence

    out = tmp_path / "PASTIS-R"
    recipe = load_recipe(ROOT / "recipes" / "pastis-hd-demo.toml").with_catalog(str(world / "stac" / "items.ndjson"))
    build_pastis(PastisConfig(world / "sources" / "PASTIS-R", recipe, out, workers=0))
    meta = json.loads((out / "metadata.geojson").read_text())["features"][0]["properties"]
    one_fold = {"train": [meta["Fold"]], "val": [meta["Fold"]], "test": [meta["Fold"]]}
    ds = PastisHD(out, "train", ("aerial", "s2", "s1-asc"), max_dates=5, folds=one_fold)
    s = ds[0]
    target = np.load(out / "ANNOTATIONS" / f"TARGET_{meta['ID_PATCH']}.npy")[0]
    assert torch.equal(s["label"], torch.from_numpy(presence(target))) and s["label"].shape == (len(CLASSES),)
    assert (
        s["aerial"].shape == (3, 1280, 1280)
        and s["s2"].shape[1:] == (10, 128, 128)
        and s["s1-asc"].shape[1:] == (3, 128, 128)
    )
    assert s["s2_dates"][0] == days_since_reference(list(meta["dates-S2"].values())[0]) >= 0
    assert presence(np.array([[0, 19], [1, 18]])).tolist() == [1.0] + [0.0] * 16 + [1.0]
    result = train(TrainConfig(task="finetune", data=out, out=tmp_path / "run", model="pastis-hd-small",
                               modalities=("s2", "s1-asc"), batch_size=1, epochs=1, max_dates=4, device="cpu",
                               folds=one_fold))
    assert len(result["test"]["f1_per_class"]) == 18 and result["history"][0]["train"]["samples"] == 1
    from omnisat_train.evaluate import evaluate

    again = evaluate(tmp_path / "run" / "best.pt", "test")
    assert again["classes"] == list(CLASSES) and again["f1_per_class"] == result["test"]["f1_per_class"]


def test_normalize_standardises_series_with_the_manifest_statistics(built, tmp_path):
    out, _ = built
    stats = json.loads((out / "stac" / "collection.json").read_text())["summaries"]["omnisat:band_statistics"]
    raw = TreeSatTS(out, "test", ("aerial", "s2", "s1-asc"), max_dates=6)
    norm = TreeSatTS(out, "test", ("aerial", "s2", "s1-asc"), max_dates=6, normalize=True)
    a, b = raw[0], norm[0]
    assert torch.equal(a["aerial"], b["aerial"]) and torch.equal(a["s2_dates"], b["s2_dates"])  # the image stays raw
    for m, key in (("s2", "sen-2-data"), ("s1-asc", "sen-1-asc-data")):
        mean = np.array(stats[key]["mean"], np.float32)[:, None, None]
        std = np.array(stats[key]["std"], np.float32)[:, None, None]
        np.testing.assert_allclose(b[m].numpy(), (a[m].numpy() - mean) / std, rtol=1e-5, atol=1e-5)
    # over the whole split the standardised S2 bands are centred and of unit spread (the stats cover every tile)
    s2 = np.concatenate([norm[i]["s2"].numpy() for i in range(len(norm))])
    assert np.abs(s2.mean(axis=(0, 2, 3))).max() < 1.0 and 0.2 < s2.std(axis=(0, 2, 3)).min()
    bare = tmp_path / "bare"
    shutil.copytree(out, bare, ignore=shutil.ignore_patterns("stac"))
    from omnisat_train.data.common import DataError

    with pytest.raises(DataError, match=r"stac/collection.json: not found; normalize needs"):
        TreeSatTS(bare, "test", ("s2",), normalize=True)


def test_pastis_normalize_averages_the_training_folds(tmp_path):
    from omnisat_train.data.pastis_hd import DataError, norm_statistics

    table = {f"Fold_{k}": {"mean": [float(k), 10.0 * k, 0.5], "std": [1.0 * k, 2.0, 3.0]} for k in range(1, 6)}
    (tmp_path / "NORM_S1A_patch.json").write_text(json.dumps(table))
    mean, std = norm_statistics(tmp_path, ("aerial", "s1-asc"), (1, 2, 3))["s1-asc"]
    assert mean.ravel().tolist() == [2.0, 20.0, 0.5] and std.ravel().tolist() == [2.0, 2.0, 3.0]
    with pytest.raises(DataError, match="NORM_S2_patch.json: not found"):
        norm_statistics(tmp_path, ("s2",), (1,))
    with pytest.raises(DataError, match="no statistics for Fold_6"):
        norm_statistics(tmp_path, ("s1-asc",), (5, 6))


def test_recipe_tables_per_task(tmp_path):
    from omnisat_train.train import TrainError, load_config

    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\ndata = "d"\nout = "o"\nbatch_size = 8\nepochs = 5\n\n[finetune]\nepochs = 40\n'
                      'plateau_patience = 3\n')
    pre, ft = load_config("pretrain", recipe), load_config("finetune", recipe, batch_size=4)
    assert (pre.epochs, pre.plateau_patience, pre.batch_size) == (5, 10, 8)
    assert (ft.epochs, ft.plateau_patience, ft.batch_size) == (40, 3, 4)  # the command line still wins
    assert ft.data == (tmp_path / "d").resolve()
    recipe.write_text('[train]\ndata = "d"\nout = "o"\n\n[finetun]\nepochs = 40\n')
    with pytest.raises(TrainError, match="unknown table 'finetun'"):
        load_config("finetune", recipe)


def test_persistent_workers_see_each_epoch(built):
    """Random crops and date subsets change with the epoch in DataLoader worker processes too, and equal
    what one process draws (the epoch travels in the sampler's keys, not in the workers' dataset copy)."""
    from omnisat_train.train import EpochSampler, Runtime

    def epochs(workers: int) -> list[dict]:
        ds = TreeSatTS(built[0], "train", ("aerial", "s2"), train=True, max_dates=3, seed=5)
        sampler = EpochSampler(len(ds), Runtime(), seed=5, shuffle=True, batch=2)
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate,
                                             num_workers=workers, persistent_workers=workers > 0)
        out = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            batch = next(iter(loader))
            out.append({"name": batch["name"], "aerial": batch["aerial"], "dates": batch["s2_dates"]})
        return out

    alone, pooled = epochs(0), epochs(2)
    for a, b in zip(alone, pooled):
        assert a["name"] == b["name"] and torch.equal(a["aerial"], b["aerial"]) and torch.equal(a["dates"], b["dates"])
    # epoch 1 in the workers draws epoch 1's crop, not epoch 0's again
    ds = TreeSatTS(built[0], "train", ("aerial", "s2"), train=True, max_dates=3, seed=5)
    index = [s.name for s in ds.samples].index(pooled[1]["name"][0])
    assert not torch.equal(ds[(0, index)]["aerial"], ds[(1, index)]["aerial"])
    assert torch.equal(pooled[1]["aerial"][0], ds[(1, index)]["aerial"])


def test_unlabelled_tiles_are_pretraining_samples_only(tmp_path):
    """An own-area build without labels marks each tile [["unlabelled", 1.0]]: pretraining reads it,
    fine-tuning does not (and tiles whose genera are all under the threshold stay out, as in the reference)."""
    from omnisat_train.data.treesatai_ts import read_split

    (tmp_path / "labels").mkdir()
    labels = {"a.tif": [["unlabelled", 1.0]], "b.tif": [["Picea", 0.9]], "c.tif": [["Picea", 0.05]]}
    (tmp_path / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps(labels))
    (tmp_path / "train_filenames.lst").write_text("a.tif\nb.tif\nc.tif\n")
    assert [s.name for s in read_split(tmp_path, "train", unlabelled=True)] == ["a", "b"]
    assert [s.name for s in read_split(tmp_path, "train")] == ["b"]


def _ft(built_dir, out, **kw):
    return _cfg(built_dir, out, **{"task": "finetune", "modalities": ("s2",), "epochs": 3, "dropout": 0.0, **kw})


def test_a_run_folder_is_resumed_or_refused_never_overwritten(built, tmp_path):
    out = tmp_path / "run"
    train(_ft(built[0], out, epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    base = [sys.executable, "-m", "cli.model", "train", "finetune", "--data", str(built[0]), "--out", str(out),
            "--model", "treesatai-ts-small", "--modalities", "s2", "--batch-size", "4", "--device", "cpu"]
    r = subprocess.run(base + ["--epochs", "1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "--resume" in r.stderr and "--overwrite" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing touched
    r = subprocess.run(base + ["--epochs", "1", "--resume", "--lr", "0.5"], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 2 and "lr = " in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run(base + ["--epochs", "1", "--overwrite", "--seed", "4"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # a new history, not a second one appended


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["before best.pt", "before metrics"])
def test_a_kill_at_a_checkpoint_boundary_resumes_to_the_uninterrupted_run(built, tmp_path, monkeypatch, kill):
    """The process dies right after last.pt of an epoch that improved (before best.pt is written), or
    before metrics.jsonl follows: the resumed run's checkpoints, metrics and test equal a run never killed."""
    import omnisat_train.train as trainer

    whole = train(_ft(built[0], tmp_path / "whole"))
    target = max(h["epoch"] for h in whole["history"] if h["val"]["f1_macro"] == whole["best"]["f1_macro"])
    assert target >= 0

    class Killed(BaseException):
        pass

    real_save, real_history = trainer.save, trainer.write_history

    def dying_save(path, payload):
        if Path(path).name == "best.pt" and payload["epoch"] == target:
            raise Killed
        real_save(path, payload)

    def dying_history(out, history):
        if history and history[-1]["epoch"] == target:
            raise Killed
        real_history(out, history)

    if kill == "before best.pt":
        monkeypatch.setattr(trainer, "save", dying_save)
    else:
        monkeypatch.setattr(trainer, "write_history", dying_history)
    with pytest.raises(Killed):
        train(_ft(built[0], tmp_path / "killed"))
    monkeypatch.setattr(trainer, "save", real_save)
    monkeypatch.setattr(trainer, "write_history", real_history)
    resumed = train(_ft(built[0], tmp_path / "killed", resume=True))
    assert resumed["test"] == whole["test"]
    for name in ("last.pt", "best.pt"):
        a = torch.load(tmp_path / "whole" / name, weights_only=True)
        b = torch.load(tmp_path / "killed" / name, weights_only=True)
        assert a["epoch"] == b["epoch"] and all(
            torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
        )
    lines = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [h["epoch"] for h in whole["history"]]


def test_resuming_an_early_stopped_run_trains_no_more_epochs(built, tmp_path):
    cfg = _ft(built[0], tmp_path / "run", epochs=8, early_stop_patience=1, lr=0.0)  # lr 0: no change, stops at once
    first = train(cfg)
    assert len(first["history"]) == 2  # epoch 0 sets the best, epoch 1 is stale: stop
    again = train(dataclasses.replace(cfg, resume=True))
    assert len(again["history"]) == 2 and again["test"] == first["test"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_an_empty_h5_found_mid_epoch_is_one_line(built, tmp_path, workers):
    broken = tmp_path / "broken"
    shutil.copytree(built[0], broken)
    name = (broken / "train_filenames.lst").read_text().split()[-1].removesuffix(".tif")
    (broken / "sentinel" / f"{name}.h5").write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "cli.model", "train", "pretrain", "--data", str(broken), "--out",
                        str(tmp_path / "run"), "--model", "treesatai-ts-small", "--modalities", "s2,s1-asc",
                        "--batch-size", "4", "--epochs", "1", "--device", "cpu", "--workers", str(workers)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and name in r.stderr and "cannot be read" in r.stderr, r.stderr[-1500:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-1500:]
