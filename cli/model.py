"""`omnisat`: train, evaluate and convert OmniSat models (thin Typer wiring)."""

from __future__ import annotations

from pathlib import Path

import typer

from .render import (
    epoch_bar,
    epoch_progress,
    error_text,
    one_line,
    print_environment,
    print_evaluation,
    print_json,
    print_train_summary,
)

app = typer.Typer(help="OmniSat models: pretraining, fine-tuning, probing, checkpoints.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """OmniSat models: pretraining, fine-tuning, probing, checkpoints."""


@app.command("info")
def info() -> None:
    """Print the versions of the toolkit and of PyTorch, and the devices PyTorch sees."""
    from omnisat_train.train import environment

    print_environment(environment())


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
    from omnisat_train.data.common import DataError
    from omnisat_train.train import TrainError, load_config, train

    cfg = _or_fail(lambda: load_config(task, config, **overrides))
    failure = None
    with epoch_bar() as bar:
        try:
            result = train(cfg, progress=epoch_progress(bar, task, cfg.epochs))
        except (TrainError, FloatingPointError, DataError) as error:
            failure = one_line(error)
        except OSError as error:  # a full disk, a read-only run folder
            failure = error_text(error, rerun="add --resume: the run goes on from its last completed epoch")
    if failure is not None:
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(2)
    if result["main"]:
        print_train_summary(result, cfg.out)


# The TrainConfig fields `omnisat train` takes as options (help, and flag spellings where not --field-name);
# the others are set in the TOML file. The options are generated from the dataclass's fields, in their order.
OPTIONS = {
    "data": ("TreeSatAI-TS tree.", ()),
    "out": ("Run folder (checkpoints, metrics.jsonl, curves.png, test.json).", ()),
    "modalities": ("Comma-separated: aerial,s2,s1-asc,s1-des.", ()),
    "model": ("treesatai-ts (reference size) or treesatai-ts-small.", ()),
    "init": ("Pretraining checkpoint to start from (finetune, probe).", ()),
    "epochs": ("Epochs.", ()),
    "batch_size": ("Global batch, split across processes.", ()),
    "lr": ("Default: 1e-4 pretrain, 2e-4 finetune, 2e-3 probe.", ()),
    "precision": ("fp32, tf32 or bf16.", ()),
    "compile": ("torch.compile the model.", ("--compile/--no-compile",)),
    "grad_clip": ("Clip the gradient norm.", ()),
    "accumulate": ("Gradient accumulation steps.", ()),
    "normalize": ("Standardise the series with the dataset's statistics (default: raw, as the reference).",
                  ("--normalize/--raw",)),
    "seed": ("Random seed.", ()),
    "workers": ("DataLoader workers per process.", ()),
    "resume": ("Continue the run in OUT (from its last.pt).", ("--resume/--no-resume",)),
    "overwrite": ("OUT holds a run: remove its files and start again.", ("--overwrite",)),
    "device": ("auto, cuda or cpu.", ()),
    "label_fraction": ("Keep this multi-label-stratified fraction of the training labels (finetune, probe), "
                       "e.g. 0.1.", ()),
    "cache": ("Folder for packed memory-mapped splits (built on first use).", ()),
}


def _option_type(hint) -> type:
    """The type Typer parses an option as: the field's type without None; a tuple is given comma-separated."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    base = typing.get_origin(args[0]) or args[0]
    return str if base is tuple else base


def _command(task: str):
    import dataclasses
    import inspect
    import typing

    from omnisat_train.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path, default=typer.Option(
        None, help="TOML file with a \\[train] table (recipes/train-*.toml)."))]
    for f in dataclasses.fields(TrainConfig):
        if f.name in OPTIONS:
            text, flags = OPTIONS[f.name]
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=_option_type(
                hints[f.name]), default=typer.Option(None, *flags, help=text)))

    def command(**values) -> None:
        config = values.pop("config")
        if values.get("modalities"):
            values["modalities"] = tuple(values["modalities"].split(","))
        _train(task, config, values)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = {"pretrain": "Self-supervised pretraining (masked reconstruction + contrastive).",
                       "finetune": "Fine-tune encoder and linear head on the genus labels.",
                       "probe": "Linear probing: a frozen pretrained encoder, a trained linear head."}[task]
    return command


for _task in ("pretrain", "finetune", "probe"):
    train_app.command(_task)(_command(_task))


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
    from omnisat_train.evaluate import evaluate

    print_evaluation(_or_fail(evaluate, checkpoint, split, data, out, batch_size, device))


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
    from omnisat_train.evaluate import embed

    print_json(_or_fail(embed, checkpoint, out, split, data, batch_size, device))


if __name__ == "__main__":  # pragma: no cover
    app()
