"""Fine-tuning step of the small OmniSat on CPU: samples per second per set of modalities.

    python benchmarks/train_modalities.py [--batch 16] [--dates 24] [--steps 3]

Why the demo recipe (recipes/train-demo.toml) leaves the aerial image out on a CPU: forward +
backward + Adam step on a synthetic TreeSatAI-TS batch, all cases in this one process, side by side.
"""

from __future__ import annotations

import argparse
import time

import torch

from omnisat_model.model import OmniSatClassifier
from omnisat_train.train import TrainConfig, model_config


def batch_for(config, batch: int, dates: int) -> dict:
    g = torch.Generator().manual_seed(0)
    out = {}
    if config.vhr is not None:
        out["aerial"] = torch.rand(batch, config.vhr.channels, 300, 300, generator=g) * 255
    for s in config.series:
        out[s.name] = torch.randn(batch, dates, s.channels, 6, 6, generator=g)
        out[f"{s.name}_dates"] = torch.randint(1, 366, (batch, dates), generator=g).sort(dim=1).values
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"small OmniSat fine-tuning step, batch {args.batch}, {args.dates} dates, {torch.get_num_threads()} threads")
    print(f"{'modalities':28s} {'samples/s':>10s}")
    for modalities in (("aerial", "s2", "s1-asc"), ("aerial",), ("s2", "s1-asc")):
        cfg = TrainConfig(task="finetune", data="-", out="-", model="treesatai-ts-small", modalities=modalities)
        torch.manual_seed(0)
        model = OmniSatClassifier(model_config(cfg), 15).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        data = batch_for(model.config, args.batch, args.dates)
        rates = []
        for step in range(args.steps + 1):  # the first step warms up
            start = time.perf_counter()
            model(data).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:
                rates.append(args.batch / (time.perf_counter() - start))
        print(f"{' + '.join(modalities):28s} {sorted(rates)[len(rates) // 2]:10.1f}")


if __name__ == "__main__":
    main()
