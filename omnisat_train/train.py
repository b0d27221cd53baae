"""`omnisat train pretrain|finetune|probe`: the whole training flow, top to bottom, in one file.

    setup -> data -> model -> optimizer -> (resume) -> loop: train, evaluate, schedule, checkpoint,
    stop early -> test -> pictures

One process, or several started by torchrun (DistributedDataParallel; gloo on CPU, nccl on GPU):
each process takes `batch_size / world_size` samples of every global batch, metrics are summed
across processes, rank 0 alone writes logs and checkpoints. The recipes of the reference (Adam
1e-4 / 2e-4 / 2e-3, no weight decay, ReduceLROnPlateau x0.1 after 10 stagnant epochs on the
validation loss, early stopping on the loss for pretraining and on macro F1 otherwise, seed 32) are
the defaults of `TrainConfig` per task. Every random choice (sample order, crops, date subsets,
masks) is keyed by (seed, epoch, step), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from omnisat_data.formats.treesatai_ts import GENERA
from omnisat_data.io.atomic import replacing
from omnisat_data.io.toml_file import TomlFileError, read_toml
from omnisat_model.checkpoint import TRAINING_KEYS, CheckpointError, load_strict, model_payload, read_ours, save
from omnisat_model.config import OmniSatConfig, preset
from omnisat_model.model import OmniSatClassifier, OmniSatPretraining
from omnisat_train.data.common import DataError
from omnisat_train.data.treesatai_ts import TreeSatTS, collate

from .metrics import counts, f1_scores

TASKS = ("pretrain", "finetune", "probe")
MODELS = ("treesatai-ts", "treesatai-ts-small", "pastis-hd", "pastis-hd-small")
DEFAULT_LR = {"pretrain": 1e-4, "finetune": 2e-4, "probe": 2e-3}
DEFAULT_PATIENCE = {"pretrain": 40, "finetune": 10, "probe": 10}


class TrainError(ValueError):
    """A run that cannot start; the message names the field, file or checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    task: str  # pretrain | finetune | probe
    data: Path  # a TreeSatAI-TS tree
    out: Path  # run folder: checkpoints, metrics.jsonl, curves.png, test.json
    modalities: tuple[str, ...] = ("aerial", "s2", "s1-asc")
    model: str = "treesatai-ts"  # treesatai-ts | pastis-hd (the reference sizes), or *-small (CPU demos, tests)
    init: Path | None = None  # finetune / probe: our pretraining checkpoint (or a converted reference one)
    epochs: int = 200
    min_epochs: int = 0  # no early stop before this epoch
    batch_size: int = 2048  # global: split across processes
    lr: float | None = None  # None: the reference's per task
    weight_decay: float = 0.0
    plateau_patience: int = 10
    early_stop_patience: int | None = None  # None: 40 pretraining, 10 otherwise
    precision: str = "fp32"  # fp32 | tf32 | bf16
    compile: bool = False
    grad_clip: float | None = None
    accumulate: int = 1  # gradient accumulation steps per optimizer step
    max_dates: int = 50
    reference_transforms: bool = False  # random crop and unsorted date subsets at evaluation too
    normalize: bool = False  # standardise series channels with the dataset's statistics (the reference: raw)
    seed: int = 32
    workers: int = 0  # DataLoader worker processes per training process
    resume: bool = False  # continue the run in `out` (its last.pt); without it an existing run is refused ...
    overwrite: bool = False  # ... unless this: the run's own files are removed and it starts again
    device: str = "auto"
    label_fraction: float = 1.0  # finetune / probe: keep this multi-label-stratified fraction of train
    cache: Path | None = None  # packed memory-mapped copy of each split (built once); None reads the tree
    tensorboard: bool = True  # also write TensorBoard scalars to OUT/tensorboard
    dropout: float | None = None  # override every dropout / drop-path rate (0: deterministic checks)
    folds: dict | None = None  # PASTIS-HD splits, e.g. {"train": [1, 2, 3], "val": [4], "test": [5]} (the default)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise TrainError(f"task {self.task!r}: choose one of {', '.join(TASKS)}")
        if self.precision not in ("fp32", "tf32", "bf16"):
            raise TrainError(f"precision {self.precision!r}: choose fp32, tf32 or bf16")
        if self.model not in MODELS:
            raise TrainError(f"model {self.model!r}: choose one of {', '.join(MODELS)}")
        if self.task != "pretrain" and self.init is None and self.task == "probe":
            raise TrainError("probe: --init CHECKPOINT is required (a frozen random encoder probes nothing)")
        if not 0 < self.label_fraction <= 1:
            raise TrainError(f"label_fraction {self.label_fraction}: must be in (0, 1]")
        for name in ("epochs", "batch_size", "accumulate", "max_dates"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be at least 1")
        if self.task == "pretrain" and len(self.modalities) < 2:
            raise TrainError(f"pretraining on {list(self.modalities)}: the contrastive loss pairs the tokens of "
                             "two modalities or more (e.g. --modalities s2,s1-asc)")
        if self.resume and self.overwrite:
            raise TrainError("--resume continues a run, --overwrite starts it again: choose one")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.task]

    @property
    def patience(self) -> int:
        return self.early_stop_patience if self.early_stop_patience is not None else DEFAULT_PATIENCE[self.task]


def load_config(task: str, toml_file: Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then a TOML file's [train] table, then its table for this task ([pretrain], [finetune] or
    [probe]: what differs between the runs of one recipe), then explicit overrides (None = not given)."""
    values: dict[str, Any] = {"task": task}
    if toml_file is not None:
        try:
            document = read_toml(toml_file, "config", "recipes/train-*.toml")
        except TomlFileError as error:
            raise TrainError(str(error)) from None
        for name, table in document.items():
            if not isinstance(table, dict):
                raise TrainError(f"{toml_file}: {name} is a value, not a table ([train], [{name}] ...)")
        unknown = sorted(set(document) - {"train", *TASKS})
        if unknown:
            raise TrainError(f"{toml_file}: unknown table {unknown[0]!r} (tables: train, {', '.join(TASKS)})")
        table = {**document.get("train", {}), **document.get(task, {})}
        for key in ("data", "out", "init", "cache"):  # paths in a config file are relative to it
            if isinstance(table.get(key), str) and not Path(table[key]).is_absolute():
                table[key] = str((Path(toml_file).parent / table[key]).resolve())
        values.update(table)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in values:
        if key not in known:
            raise TrainError(f"{toml_file or 'config'}: unknown field {key!r}")
    for key, value in values.items():
        check_type(key, value, toml_file)
    for key in ("data", "out", "init", "cache"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    if "modalities" in values:
        values["modalities"] = tuple(values["modalities"])
    for key in ("data", "out"):
        if key not in values:
            raise TrainError(f"{key} is required")
    return TrainConfig(**values)


def check_type(key: str, value: Any, source) -> None:
    """A config value of the field's kind (from its annotation), or one line naming the field."""
    kind = next(f.type for f in dataclasses.fields(TrainConfig) if f.name == key)
    if value is None and "None" in kind:
        return
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "Path": lambda v: isinstance(v, (str, Path)),
          "tuple": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
          "dict": lambda v: isinstance(v, dict)}
    base = kind.split("|")[0].split("[")[0].strip()
    if base in ok and not ok[base](value):
        raise TrainError(f"{source or 'config'}: {key} = {value!r}: expected {kind.replace(' | None', '')}")


def is_pastis(cfg: TrainConfig) -> bool:
    return cfg.model.startswith("pastis-hd")


def class_names(cfg: TrainConfig) -> tuple[str, ...]:
    from omnisat_train.data.pastis_hd import CLASSES

    return CLASSES if is_pastis(cfg) else GENERA


def model_config(cfg: TrainConfig) -> OmniSatConfig:
    config = preset("pastis-hd" if is_pastis(cfg) else "treesatai-ts", ("aerial", "s2", "s1-asc", "s1-des"))
    if cfg.model.endswith("-small"):  # width 64, 3 blocks: minutes on a CPU
        series = tuple(dataclasses.replace(s, heads=4, mlp_in=(16, 32, 64), mlp=(64, 128, 64)) for s in config.series)
        config = dataclasses.replace(config, vhr=dataclasses.replace(config.vhr, width=64), series=series,
                                     embed_dim=64, depth=3, num_heads=4)
    if cfg.dropout is not None:
        p = cfg.dropout
        series = tuple(dataclasses.replace(s, dropout=p, attention_dropout=p) for s in config.series)
        config = dataclasses.replace(config, series=series, drop_rate=p, attn_drop_rate=p, drop_path_rate=p)
    return config.with_modalities(*cfg.modalities)


# -- setup ---------------------------------------------------------------------------------------------

@dataclass
class Runtime:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def environment() -> dict:
    """Versions of the toolkit and of PyTorch, and the devices PyTorch sees (cpu, then each GPU by name)."""
    from omnisat_model import __version__

    gpus = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return {"omnisat": __version__, "torch": torch.__version__, "devices": ["cpu", *gpus]}


def setup(cfg: TrainConfig) -> Runtime:
    """Processes from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), device, precision flags."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device cuda: PyTorch sees no GPU here (torch.cuda.is_available() is False); use --device "
                         "cpu or auto, or install a CUDA build of torch")
    if cfg.device not in ("auto", "cuda", "cpu"):
        raise TrainError(f"device {cfg.device!r}: choose auto, cuda or cpu")
    use_cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = cfg.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = cfg.precision == "tf32"
    if cfg.batch_size % world:
        raise TrainError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    torch.manual_seed(cfg.seed)  # identical initial weights in every process
    return Runtime(rank, world, device)


def all_sum(rt: Runtime, values: torch.Tensor) -> torch.Tensor:
    if rt.world > 1:
        values = values.to(rt.device)
        dist.all_reduce(values)
    return values.cpu()


# -- data ----------------------------------------------------------------------------------------------

class EpochSampler(torch.utils.data.Sampler):
    """This process's share of a permutation keyed by (seed, epoch); every process sees the same one. It
    yields (epoch, index) keys, so that the epoch reaches the dataset in persistent worker processes."""

    def __init__(self, n: int, rt: Runtime, seed: int, shuffle: bool, batch: int):
        self.n, self.rt, self.seed, self.shuffle, self.batch = n, rt, seed, shuffle, batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = (
            np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle else np.arange(self.n)
        )
        if self.shuffle:  # drop_last, as the reference; every process gets the same number of samples
            usable = len(order) // self.batch * self.batch or len(order) // self.rt.world * self.rt.world
            order = order[:usable]
        mine = []
        for g in range(0, len(order), self.batch):  # global batch g: this process takes its contiguous share
            chunk = order[g : g + self.batch]
            bounds = np.linspace(0, len(chunk), self.rt.world + 1).round().astype(int)
            mine.extend((self.epoch, int(i)) for i in chunk[bounds[self.rt.rank] : bounds[self.rt.rank + 1]])
        return iter(mine)

    def __len__(self) -> int:
        return sum(1 for _ in iter(self))


def loaders(cfg: TrainConfig, rt: Runtime) -> dict[str, tuple[TreeSatTS, torch.utils.data.DataLoader, EpochSampler]]:
    out = {}
    per_process = cfg.batch_size // rt.world
    for split in ("train", "val", "test"):
        fraction = cfg.label_fraction if split == "train" and cfg.task != "pretrain" else 1.0
        if cfg.cache is not None and rt.world > 1 and not rt.main:
            dist.barrier()  # rank 0 packs first; the others then open what it wrote
        if is_pastis(cfg):
            from omnisat_train.data.pastis_hd import PastisHD

            folds = {k: tuple(v) for k, v in cfg.folds.items()} if cfg.folds else None
            ds = PastisHD(cfg.data, split, cfg.modalities, train=split == "train", max_dates=cfg.max_dates,
                          reference=cfg.reference_transforms, seed=cfg.seed, folds=folds, normalize=cfg.normalize)
        else:
            ds = TreeSatTS(cfg.data, split, cfg.modalities, train=split == "train", max_dates=cfg.max_dates,
                           reference=cfg.reference_transforms, seed=cfg.seed, label_fraction=fraction, cache=cfg.cache,
                           normalize=cfg.normalize, unlabelled=cfg.task == "pretrain")
        if cfg.cache is not None and rt.world > 1 and rt.main:
            dist.barrier()
        if not len(ds):
            raise TrainError(f"{cfg.data}: split {split} is empty" + ("" if is_pastis(cfg) else
                                                                        " (no tile with a genus above 0.07)"))
        sampler = EpochSampler(len(ds), rt, cfg.seed, shuffle=split == "train", batch=cfg.batch_size)
        loader = torch.utils.data.DataLoader(ds, batch_size=per_process, sampler=sampler, collate_fn=collate,
                                             num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
        out[split] = (ds, loader, sampler)
    return out


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# -- model ---------------------------------------------------------------------------------------------

def build(cfg: TrainConfig, config: OmniSatConfig) -> nn.Module:
    if cfg.task == "pretrain":
        return OmniSatPretraining(config)
    model = OmniSatClassifier(config, len(class_names(cfg)))
    if cfg.init is not None:
        payload = read_checkpoint(cfg.init)
        trained = payload.get("train_config", {}).get("model")
        if trained is not None and trained != cfg.model:
            raise TrainError(
                f'{cfg.init}: a {trained} checkpoint; this run builds {cfg.model} (set model = "{trained}")'
            )
        state = {k[len("encoder."):]: v for k, v in payload["state_dict"].items() if k.startswith("encoder.")}
        # keep the projectors of this run's modalities (fine-tuning on a subset of the pretrained ones)
        wanted = model.encoder.state_dict()
        missing = sorted(set(wanted) - set(state))
        if missing:
            raise TrainError(f"{cfg.init}: the encoder lacks {missing[0]} (pretrained on other modalities or preset?)")
        try:
            load_strict(model.encoder, {k: state[k] for k in wanted}, str(cfg.init))
        except ValueError as error:
            raise TrainError(str(error)) from None
    if cfg.task == "probe":
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    return model


def read_checkpoint(path: Path, training: bool = False) -> dict:
    """One of our checkpoints (checkpoint.py's schema); `training`: it must carry the training state."""
    if not Path(path).is_file():
        raise TrainError(f"{path}: checkpoint not found")
    try:
        payload = read_ours(path)
    except CheckpointError as error:
        raise TrainError(str(error)) from None
    if training and not set(TRAINING_KEYS) <= set(payload):
        raise TrainError(f"{path}: holds weights but no training state to resume (start a run with --init instead)")
    return payload


def autocast(cfg: TrainConfig, rt: Runtime):
    if cfg.precision == "bf16":
        return torch.autocast(rt.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mask_generator(cfg: TrainConfig, rt: Runtime, epoch: int, step: int, split: str) -> torch.Generator:
    """Pretraining masks keyed by (seed, split, epoch, step, rank): resumable, and the same validation masks
    every epoch."""
    split_id = ("train", "val", "test").index(split)
    key = np.random.SeedSequence([cfg.seed, split_id, epoch if split == "train" else 0, step, rt.rank])
    return torch.Generator(device="cpu").manual_seed(int(key.generate_state(1, np.uint64)[0] >> np.uint64(1)))


# -- one pass over a split -----------------------------------------------------------------------------

def run_epoch(cfg, rt, model, loader, epoch, optimizer=None, split="train") -> dict:
    """Train (optimizer given) or evaluate; returns the mean loss (and F1 for classifiers) over all processes."""
    training = optimizer is not None
    if not training and hasattr(model, "module"):
        model = model.module  # evaluation needs no gradient sync (and shards may differ in size)
    model.train(training)
    total = torch.zeros(2, dtype=torch.float64)  # loss sum, samples
    confusion = torch.zeros(3, len(class_names(cfg)), dtype=torch.float64)
    bce = nn.BCEWithLogitsLoss()
    with torch.set_grad_enabled(training):
        for step, batch in enumerate(loader):
            batch = to_device(batch, rt.device)
            with autocast(cfg, rt):
                if cfg.task == "pretrain":
                    noise = torch.rand(len(batch["label"]), _mask_tokens(model),
                                       generator=mask_generator(cfg, rt, epoch, step, split)).to(rt.device)
                    loss = model(batch, noise=noise).loss
                else:
                    logits = model(batch)
                    loss = bce(logits.float(), batch["label"])
                    confusion += counts(logits.detach().float().cpu(), batch["label"].cpu())
            if not torch.isfinite(loss):
                kept = Path(cfg.out) / "last.pt"
                raise FloatingPointError(
                    f"non-finite {split} loss at epoch {epoch} step {step}; the run stops "
                    + (f"with the last good checkpoint {kept}" if kept.is_file() else "before any checkpoint")
                )
            if training:
                (loss / cfg.accumulate).backward()
                if (step + 1) % cfg.accumulate == 0 or step + 1 == len(loader):
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            n = len(batch["label"])
            total += torch.tensor([float(loss.detach()) * n, n], dtype=torch.float64)
    total = all_sum(rt, total)
    out = {"loss": float(total[0] / max(total[1], 1)), "samples": int(total[1])}
    if cfg.task != "pretrain":
        scores = f1_scores(all_sum(rt, confusion))
        out.update(scores)
    return out


def _mask_tokens(model: nn.Module) -> int:
    config = (model.module if hasattr(model, "module") else model).config
    return len(config.modalities) * config.num_patches


# -- checkpoints and outputs ---------------------------------------------------------------------------

RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "test.json", "curves.png", "tensorboard")  # what a run writes
# Fields a resumed run may change; any other must equal the run's own (one line names the first that differs).
RESUMABLE_CHANGES = {"resume", "overwrite", "epochs", "workers", "device", "cache", "tensorboard"}


def check_run_folder(cfg: TrainConfig, main: bool) -> None:
    """A folder holding a run is resumed (--resume) or started again (--overwrite), never silently replaced."""
    out = Path(cfg.out)
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not present:
        return
    if not cfg.resume and not cfg.overwrite:
        raise TrainError(f"{out}: holds a run ({', '.join(present)}): --resume continues it, --overwrite starts "
                         "it again (its files are removed)")
    if cfg.overwrite and main:
        for name in present:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_resumed_config(cfg: TrainConfig, payload: dict, path: Path) -> None:
    before = payload.get("train_config", {})
    now = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
    for key, value in now.items():
        old = before.get(key, value)
        if key not in RESUMABLE_CHANGES and json.dumps(old) != json.dumps(value):
            raise TrainError(f"{path}: the run was started with {key} = {old!r}, this one has {value!r} "
                             "(--resume continues the same run; start a new one in another --out)")

def checkpoint_payload(cfg, model, optimizer, scheduler, epoch, state) -> dict:
    core = model.module if hasattr(model, "module") else model
    return {**model_payload(core), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch, "state": state, "rng": torch.get_rng_state(),
            "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}}


def write_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    has_f1 = "f1_macro" in history[0]["val"]
    fig, axes = plt.subplots(1, 2 if has_f1 else 1, figsize=(10 if has_f1 else 5.5, 4))
    ax = axes[0] if has_f1 else axes
    ax.plot(epochs, [h["train"]["loss"] for h in history], label="train")
    ax.plot(epochs, [h["val"]["loss"] for h in history], label="val")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    if has_f1:
        for key in ("f1_macro", "f1_micro", "f1_weighted"):
            axes[1].plot(epochs, [h["val"][key] for h in history], label=f"val {key[3:]}")
        axes[1].set(xlabel="epoch", ylabel="F1", ylim=(0, 1), title="validation F1 (threshold 0.5)")
        axes[1].legend()
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_history(out: Path, history: list[dict]) -> None:
    """metrics.jsonl rewritten from the checkpoint's history (one line per epoch, never a repeated one)."""
    save_text(out / "metrics.jsonl", "".join(json.dumps(record) + "\n" for record in history))


def commit_epoch(out: Path, payload: dict, better: bool) -> None:
    """last.pt is the commit: a kill before it leaves the previous epoch whole; a kill between it and
    best.pt leaves the best epoch = the last one, which `repair_run` copies back; metrics follow."""
    save(out / "last.pt", payload)
    if better:
        save(out / "best.pt", payload)
    write_history(out, payload["state"]["history"])


def repair_run(out: Path, payload: dict) -> None:
    """After a kill between the two checkpoint writes of the best epoch: best.pt from last.pt; metrics
    from the history."""
    best_epoch = payload["state"].get("best_epoch")
    if best_epoch is not None and best_epoch == payload["epoch"]:
        best = out / "best.pt"
        held = torch.load(best, map_location="cpu", weights_only=True).get("epoch") if best.is_file() else None
        if held != best_epoch:
            save(best, payload)
    write_history(out, payload["state"]["history"])


# -- the run -------------------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything a run holds between its steps (built by `prepare`, driven by `fit`)."""

    cfg: TrainConfig
    rt: Runtime
    data: dict
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    state: dict
    start: int


def prepare(cfg: TrainConfig) -> Run:
    """setup, data, model, optimizer and resume: every bad input fails here, before the first step."""
    # setup
    rt = setup(cfg)
    check_run_folder(cfg, rt.main)
    if rt.main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)

    # data
    try:
        data = loaders(cfg, rt)
    except DataError as error:
        raise TrainError(str(error)) from None

    # model
    model = build(cfg, model_config(cfg)).to(rt.device)
    if cfg.compile:
        model = torch.compile(model)
    if rt.world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )

    # optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1,
                                                           patience=cfg.plateau_patience)
    state, start = {"best": None, "stale": 0, "history": []}, 0

    # resume
    last = Path(cfg.out) / "last.pt"
    if cfg.resume and last.is_file():
        payload = read_checkpoint(last, training=True)
        check_resumed_config(cfg, payload, last)
        if rt.main:
            repair_run(Path(cfg.out), payload)
        (model.module if hasattr(model, "module") else model).load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"])
        state, start = payload["state"], payload["epoch"] + 1
    return Run(cfg, rt, data, model, optimizer, scheduler, state, start)


def fit(run: Run, progress=None) -> dict:
    """The epochs: train, evaluate, schedule, checkpoint, stop early; then test and pictures.
    `progress(epoch, epochs, record)` is called in the main process only; `result["main"]` says which."""
    cfg, rt, data, model, optimizer, scheduler, state = (run.cfg, run.rt, run.data, run.model, run.optimizer,
                                                         run.scheduler, run.state)
    out = Path(cfg.out)
    monitor = "loss" if cfg.task == "pretrain" else "f1_macro"
    board = None  # opened at the first committed epoch: a run killed before it leaves no run file behind
    t0 = time.perf_counter()
    # an early-stopped run is finished: resuming it goes straight to the test, without another epoch
    for epoch in range(run.start, cfg.epochs if not state.get("stopped") else run.start):
        data["train"][2].set_epoch(epoch)  # the sampler's keys carry it to the dataset, in workers too
        tick = time.perf_counter()
        train_metrics = run_epoch(cfg, rt, model, data["train"][1], epoch, optimizer, "train")
        val_metrics = run_epoch(cfg, rt, model, data["val"][1], epoch, None, "val")
        scheduler.step(val_metrics["loss"])
        value = val_metrics[monitor]
        better = state["best"] is None or (value < state["best"] if monitor == "loss" else value > state["best"])
        state["best"], state["stale"] = (value, 0) if better else (state["best"], state["stale"] + 1)
        if better:
            state["best_epoch"] = epoch
        state["stopped"] = epoch + 1 >= cfg.min_epochs and state["stale"] >= cfg.patience
        record = {"epoch": epoch, "train": train_metrics, "val": val_metrics, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": round(time.perf_counter() - tick, 3),
                  "samples_per_s": round(train_metrics["samples"] / max(time.perf_counter() - tick, 1e-9), 2)}
        state["history"].append(record)
        if rt.main:
            commit_epoch(out, checkpoint_payload(cfg, model, optimizer, scheduler, epoch, state), better)
        if rt.main and cfg.tensorboard:  # after the commit: the scalars never hold an epoch the checkpoint lacks
            if board is None:
                from torch.utils.tensorboard import SummaryWriter

                board = SummaryWriter(str(out / "tensorboard"))
            for split, metrics in (("train", train_metrics), ("val", val_metrics)):
                for key, value in metrics.items():
                    if isinstance(value, float):
                        board.add_scalar(f"{split}/{key}", value, epoch)
            board.add_scalar("lr", record["lr"], epoch)
            board.flush()
        if progress and rt.main:
            progress(epoch + 1, cfg.epochs, record)
        if state["stopped"]:
            break

    # test (classifiers: the best checkpoint, as the reference)
    result = {"history": state["history"], "best": {monitor: state["best"]}, "seconds": time.perf_counter() - t0,
              "main": rt.main}
    if cfg.task != "pretrain":
        if rt.world > 1:
            dist.barrier()
        best = read_checkpoint(out / "best.pt")
        (model.module if hasattr(model, "module") else model).load_state_dict(best["state_dict"])
        test = run_epoch(cfg, rt, model, data["test"][1], best["epoch"], None, "test")
        test["epoch"] = best["epoch"]
        result["test"] = test
        if rt.main:
            save_json(out / "test.json", test)
    if board is not None:
        board.close()
    if rt.main and state["history"]:
        write_curves(state["history"], out / "curves.png")
    if rt.world > 1:  # leave together: a process that exits while another still talks to it aborts both
        dist.barrier()
        dist.destroy_process_group()
    return result


def train(cfg: TrainConfig, progress=None) -> dict:
    return fit(prepare(cfg), progress)


def save_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def save_json(path: Path, obj) -> None:
    save_text(path, json.dumps(obj, indent=1) + "\n")
