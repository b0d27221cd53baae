"""`omnisat`: train, evaluate and convert OmniSat models (thin Typer wiring)."""

from __future__ import annotations

from pathlib import Path

import typer

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
