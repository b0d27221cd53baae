"""`omnisat evaluate` and `omnisat embed`: a trained checkpoint applied to a split of a TreeSatAI-TS tree.

Both rebuild the model from what the checkpoint says (its OmniSat config and training config), read
the split deterministically (centre crop, evenly spaced dates) and run on one device.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from omnisat_data.formats.treesatai_ts import GENERA
from omnisat_data.io.atomic import replacing
from omnisat_model.checkpoint import CheckpointError, load_model
from omnisat_model.model import OmniSatClassifier
from omnisat_train.data.common import DataError
from omnisat_train.data.treesatai_ts import TreeSatTS, collate

from .metrics import counts, f1_scores
from .train import TrainError, read_checkpoint, to_device


def _load(checkpoint: Path, data: Path | None):
    """The model of any of our checkpoints (trained, or converted from the reference), and its data."""
    payload = read_checkpoint(checkpoint)
    try:
        model = load_model(checkpoint)
    except CheckpointError as error:
        raise TrainError(str(error)) from None
    train_config = payload.get("train_config", {})
    recorded = data or train_config.get("data")  # (Path("") would be the working directory)
    if not recorded or not Path(recorded).is_dir():
        raise TrainError(f"{checkpoint}: dataset {recorded or '(none recorded)'} not found (pass --data)")
    root = Path(recorded)
    return model.eval(), model.config, root, train_config


def _is_pastis(config, train_config: dict) -> bool:
    """PASTIS-HD: the trained preset says so; a converted checkpoint, its 32 x 32 patch grid."""
    model = str(train_config.get("model", ""))
    return model.startswith("pastis-hd") if model else config.grid == (32, 32)


def _loader(root: Path, split: str, config, train_config: dict, batch_size: int):
    try:
        if _is_pastis(config, train_config):
            from omnisat_train.data.pastis_hd import PastisHD

            folds = {k: tuple(v) for k, v in train_config["folds"].items()} if train_config.get("folds") else None
            ds = PastisHD(root, split, config.modalities, max_dates=train_config.get("max_dates", 50), folds=folds,
                          normalize=train_config.get("normalize", False))
        else:
            ds = TreeSatTS(root, split, config.modalities, train=False, max_dates=train_config.get("max_dates", 50),
                           normalize=train_config.get("normalize", False))
    except DataError as error:
        raise TrainError(str(error)) from None
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate)


def evaluate(checkpoint: Path, split: str = "test", data: Path | None = None, out: Path | None = None,
             batch_size: int = 16, device: str = "cpu") -> dict:
    """F1 (macro over the 15 genera, as the reference; micro; weighted; per class) and BCE loss on a split."""
    model, config, root, train_config = _load(checkpoint, data)
    if not isinstance(model, OmniSatClassifier):
        raise TrainError(f"{checkpoint}: a pretraining checkpoint has no classifier to evaluate (fine-tune it first)")
    model.to(device)
    classes = model.head.out_features
    confusion = torch.zeros(3, classes, dtype=torch.float64)
    loss, n = 0.0, 0
    with torch.no_grad():
        for batch in _loader(root, split, config, train_config, batch_size):
            batch = to_device(batch, torch.device(device))
            logits = model(batch).float()
            loss += float(torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"],
                                                                              reduction="sum")) / classes
            n += len(batch["label"])
            confusion += counts(logits.cpu(), batch["label"].cpu())
    from omnisat_train.data.pastis_hd import CLASSES

    names = list(GENERA) if classes == len(GENERA) else list(CLASSES)
    result = {"checkpoint": str(checkpoint), "data": str(root), "split": split, "tiles": n,
              "loss": loss / max(n, 1), "classes": names, **f1_scores(confusion)}
    target = out or Path(checkpoint).with_name(f"eval-{split}.json")
    with replacing(target) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    result["path"] = str(target)
    return result


def embed(checkpoint: Path, out: Path, split: str = "test", data: Path | None = None, batch_size: int = 16,
          device: str = "cpu") -> dict:
    """Per-tile embeddings (the cross block's class slot, D floats) to an .npz: names, embeddings, labels."""
    model, config, root, train_config = _load(checkpoint, data)
    encoder = model.encoder.to(device)
    names, vectors, labels = [], [], []
    with torch.no_grad():
        for batch in _loader(root, split, config, train_config, batch_size):
            names += batch["name"]
            labels.append(batch["label"].numpy())
            vectors.append(encoder(to_device(batch, torch.device(device)))[:, 0].float().cpu().numpy())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from omnisat_train.data.pastis_hd import CLASSES

    classes = GENERA if labels[0].shape[1] == len(GENERA) else CLASSES
    with replacing(out) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the name
        np.savez(f, names=np.array(names), embeddings=np.concatenate(vectors), labels=np.concatenate(labels),
                 classes=np.array(classes))
    return {"path": str(out), "tiles": len(names), "dim": int(vectors[0].shape[1])}
