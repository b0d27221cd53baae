"""`omnisat`: train, evaluate and convert OmniSat models (thin Typer wiring)."""

from __future__ import annotations

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
