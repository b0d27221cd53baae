"""`omnisat`: train, evaluate and convert OmniSat models (thin Typer wiring)."""

from __future__ import annotations

from pathlib import Path

import typer

from .render import error_text

app = typer.Typer(help="OmniSat models: pretraining, fine-tuning, probing, checkpoints.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """OmniSat models: pretraining, fine-tuning, probing, checkpoints."""


@app.command("info")
def info() -> None:
    """Print the versions of the toolkit and of PyTorch, and the devices PyTorch sees."""
    import torch

    from omnisat_model import __version__

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    typer.echo(f"omnisat {__version__}, torch {torch.__version__}, devices: {', '.join(devices)}")


@app.command("convert-checkpoint")
def convert_checkpoint(
    source: Path = typer.Argument(..., help="a reference state dict or Lightning checkpoint, or one of ours"),
    target: Path = typer.Argument(..., help="where to write the converted checkpoint"),
    preset: str = typer.Option(None, help="treesatai-ts | pastis-hd: what shapes cannot tell (patch size, date "
                                          "period); default chosen by the patch count"),
    lightning: bool = typer.Option(False, help="ours -> reference: write a Lightning-style {'state_dict': model.*}"),
) -> None:
    """Convert between reference OmniSat checkpoints (gastruc/OmniSat names) and ours, both ways.

    The direction is detected from SOURCE. Loading is strict and uses weights_only=True on the CPU.
    """
    from omnisat_model.checkpoint import CheckpointError, convert_file

    try:
        direction = convert_file(source, target, preset, lightning)
    except CheckpointError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{source} -> {target} ({direction})")


train_app = typer.Typer(help="Pretrain, fine-tune or linearly probe OmniSat on a TreeSatAI-TS tree "
                             "(one process, or several with torchrun).", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _train(task: str, config: Path | None, overrides: dict) -> None:
    import json

    from omnisat_train.data.common import DataError
    from omnisat_train.train import TrainError, fit, load_config, prepare

    cfg = _or_fail(lambda: load_config(task, config, **overrides))
    run = _or_fail(prepare, cfg)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    failure = None
    # transient: the bar leaves no frame behind, so that an error below is the one line on stderr
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task(f"{task} epochs", total=cfg.epochs)

        def report(done: int, total: int, record: dict) -> None:
            v = record["val"]
            extra = f" val F1 macro {v['f1_macro']:.3f}" if "f1_macro" in v else ""
            bar.update(job, completed=done, description=f"{task}: val loss {v['loss']:.4f}{extra}, "
                                                        f"{record['samples_per_s']:.1f} samples/s")
        try:
            result = fit(run, progress=report if run.rt.main else None)
        except (TrainError, FloatingPointError, DataError) as error:
            failure = one_line(error)
        except OSError as error:  # a full disk, a read-only run folder
            failure = error_text(error, rerun="add --resume: the run goes on from its last completed epoch")
    if failure is not None:
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(2)
    if run.rt.main:
        summary = {"out": str(cfg.out), "epochs": len(result["history"]), "best": result["best"]}
        if "test" in result:
            summary["test"] = {k: result["test"][k] for k in ("f1_macro", "f1_macro_present", "f1_micro",
                                                              "f1_weighted", "loss")}
        typer.echo(json.dumps(summary))


def _options(
    data: Path | None,
    out: Path | None,
    modalities: str | None,
    model: str | None,
    init: Path | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    precision: str | None,
    compile_: bool | None,
    grad_clip: float | None,
    accumulate: int | None,
    seed: int | None,
    workers: int | None,
    resume: bool | None,
    device: str | None,
    label_fraction: float | None,
    cache: Path | None,
    normalize: bool | None,
    overwrite: bool | None,
) -> dict:
    return dict(data=data, out=out, modalities=tuple(modalities.split(",")) if modalities else None, model=model,
                init=init, epochs=epochs, batch_size=batch_size, lr=lr, precision=precision, compile=compile_,
                grad_clip=grad_clip, accumulate=accumulate, seed=seed, workers=workers, resume=resume, device=device,
                label_fraction=label_fraction, cache=cache, normalize=normalize, overwrite=overwrite)


def _command(task: str):
    def command(
        config: Path = typer.Option(None, help="TOML file with a [train] table (recipes/train-*.toml)."),
        data: Path = typer.Option(None, help="TreeSatAI-TS tree."),
        out: Path = typer.Option(None, help="Run folder (checkpoints, metrics.jsonl, curves.png, test.json)."),
        modalities: str = typer.Option(None, help="Comma-separated: aerial,s2,s1-asc,s1-des."),
        model: str = typer.Option(None, help="treesatai-ts (reference size) or treesatai-ts-small."),
        init: Path = typer.Option(None, help="Pretraining checkpoint to start from (finetune, probe)."),
        epochs: int = typer.Option(None),
        batch_size: int = typer.Option(None, help="Global batch, split across processes."),
        lr: float = typer.Option(None, help="Default: 1e-4 pretrain, 2e-4 finetune, 2e-3 probe."),
        precision: str = typer.Option(None, help="fp32, tf32 or bf16."),
        compile_: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
        grad_clip: float = typer.Option(None, help="Clip the gradient norm."),
        accumulate: int = typer.Option(None, help="Gradient accumulation steps."),
        seed: int = typer.Option(None),
        workers: int = typer.Option(None, help="DataLoader workers per process."),
        resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue the run in OUT (from its last.pt)."),
        overwrite: bool = typer.Option(None, "--overwrite", help="OUT holds a run: remove its files and start again."),
        device: str = typer.Option(None, help="auto, cuda or cpu."),
        label_fraction: float = typer.Option(
            None, help="Keep this multi-label-stratified fraction of the training labels (finetune, probe), e.g. 0.1."
        ),
        cache: Path = typer.Option(None, help="Folder for packed memory-mapped splits (built on first use)."),
        normalize: bool = typer.Option(
            None,
            "--normalize/--raw",
            help="Standardise the series with the dataset's statistics (default: raw, as the reference).",
        ),
    ) -> None:
        _train(task, config, _options(data, out, modalities, model, init, epochs, batch_size, lr, precision, compile_,
                                      grad_clip, accumulate, seed, workers, resume, device, label_fraction, cache,
                                      normalize, overwrite))

    command.__doc__ = {"pretrain": "Self-supervised pretraining (masked reconstruction + contrastive).",
                       "finetune": "Fine-tune encoder and linear head on the genus labels.",
                       "probe": "Linear probing: a frozen pretrained encoder, a trained linear head."}[task]
    return command


for _task in ("pretrain", "finetune", "probe"):
    train_app.command(_task)(_command(_task))


def one_line(error: BaseException) -> str:
    """The message of an error, on one line; from a DataLoader worker (which wraps it with the worker's
    traceback), the original message."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def _or_fail(fn, *args):
    """Run `fn`; a TrainError (bad checkpoint, data or split) becomes one line on stderr and exit code 2."""
    from omnisat_train.train import TrainError

    try:
        return fn(*args)
    except (TrainError, OSError) as error:
        typer.echo(f"error: {error_text(error)}", err=True)
        raise typer.Exit(2) from None


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A fine-tuning or probing checkpoint (best.pt / last.pt)."),
    split: str = typer.Option("test", help="train, val or test."),
    data: Path = typer.Option(None, help="Dataset tree (default: the one the checkpoint was trained on)."),
    out: Path = typer.Option(None, help="JSON to write (default: eval-<split>.json beside the checkpoint)."),
    batch_size: int = typer.Option(16),
    device: str = typer.Option("cpu"),
) -> None:
    """F1 (macro over all classes as the reference, micro, weighted, per class) and loss on a split."""
    import json

    from omnisat_train.evaluate import evaluate

    result = _or_fail(evaluate, checkpoint, split, data, out, batch_size, device)
    typer.echo(json.dumps({k: result[k] for k in ("path", "split", "tiles", "f1_macro", "f1_micro", "f1_weighted",
                                                   "f1_macro_present", "loss")}))


@app.command("embed")
def embed_command(
    checkpoint: Path = typer.Argument(..., help="Any checkpoint of `omnisat train` (pretraining included)."),
    out: Path = typer.Argument(..., help=".npz to write: names, embeddings (N, D), labels (N, classes), classes."),
    split: str = typer.Option("test", help="train, val or test."),
    data: Path = typer.Option(None, help="Dataset tree (default: the checkpoint's)."),
    batch_size: int = typer.Option(16),
    device: str = typer.Option("cpu"),
) -> None:
    """Export one embedding per tile (the fused class token) for your own analyses: numpy.load(OUT)."""
    import json

    from omnisat_train.evaluate import embed

    typer.echo(json.dumps(_or_fail(embed, checkpoint, out, split, data, batch_size, device)))


if __name__ == "__main__":  # pragma: no cover
    app()
