"""OmniSat training steps and contrastive loss: throughput and peak memory, side by side.

    python benchmarks/model_step.py                      # CPU defaults
    python benchmarks/model_step.py --device cuda        # GPU defaults (batch 64, 256, 682)

Every case runs in its own subprocess so that its peak memory is its own (CUDA: max allocated;
CPU: peak resident set size of the process, which includes ~0.4 GB of Python and PyTorch).
Prints two tables: the full training step (forward + backward + Adam step) at the TreeSatAI-TS
preset for pretraining and fine-tuning (eager / torch.compile, fp32 / bf16 autocast), and the
MIL-NCE loss alone (whole similarity matrix vs streamed blocks) over growing batches.

A case whose peak memory, extrapolated linearly from the two largest batches measured for that
same case, would exceed the memory limit is skipped with its projection instead of being run
into the out-of-memory killer (on a 24 GiB CPU machine, batch 256 and 682 do not fit).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import subprocess
import sys
import time

import torch

print = functools.partial(print, flush=True)  # rows appear as they are measured, even when piped

SERIES_DATES = 50  # the reference loader keeps at most 50 dates per series


def synthetic_batch(config, batch: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    gh, gw = config.grid
    ps = config.vhr.patch_size
    out["aerial"] = torch.rand(batch, config.vhr.channels, gh * ps, gw * ps, generator=g) * 255
    for s in config.series:
        out[s.name] = torch.rand(batch, SERIES_DATES, s.channels, gh, gw, generator=g) * 3000
        out[f"{s.name}_dates"] = torch.randint(1, s.period, (batch, SERIES_DATES), generator=g).sort(dim=1).values
    return {k: v.to(device) for k, v in out.items()}


def peak_memory(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def run_step(device: str, task: str, batch: int, compiled: bool, bf16: bool, steps: int) -> dict:
    from omnisat_model.config import preset
    from omnisat_model.model import OmniSatClassifier, OmniSatPretraining

    torch.manual_seed(0)
    config = preset("treesatai-ts")
    data = synthetic_batch(config, batch, device)
    generator = torch.Generator(device=device).manual_seed(0)
    tokens = len(config.modalities) * config.num_patches
    if task == "pretrain":  # the reference recipes' learning rates: 1e-4 pretraining, 2e-4 fine-tuning
        model = OmniSatPretraining(config).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def forward(data, noise):
            return model(data, noise=noise).loss
    else:
        model = OmniSatClassifier(config, num_classes=15).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
        labels = (torch.rand(batch, 15, generator=torch.Generator().manual_seed(1)) < 0.2).float().to(device)
        bce = torch.nn.BCEWithLogitsLoss()

        def forward(data, noise):
            return bce(model(data).float(), labels)

    def step():
        noise = torch.rand(batch, tokens, generator=generator, device=device)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = forward(data, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    if compiled:
        forward = torch.compile(forward)
    warm = time.perf_counter()
    step()  # warm-up (compilation, allocator)
    sync(device)
    warm = time.perf_counter() - warm
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {"samples_per_s": batch / seconds, "step_s": seconds, "warmup_s": warm,
            "peak_gib": peak_memory(device), "loss": float(loss)}


def run_contrastive(device: str, batch: int, blockwise: bool, steps: int) -> dict:
    from omnisat_model.losses import contrastive_loss, contrastive_loss_blockwise

    g = torch.Generator().manual_seed(0)
    tokens = [torch.randn(batch, 36, 256, generator=g).to(device).requires_grad_() for _ in range(3)]
    loss_fn = (lambda t: contrastive_loss_blockwise(t, block=2048)) if blockwise else contrastive_loss
    loss_fn(tokens).backward()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(tokens)
        loss.backward()
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {"step_s": seconds, "peak_gib": peak_memory(device), "loss": float(loss.detach())}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def in_subprocess(case: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:80]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tasks", default="pretrain,finetune", help="training steps to measure")
    parser.add_argument(
        "--batches", default=None, help="batches per device (default 64,256,682 on GPU, 4,16,256,682 on CPU)"
    )
    parser.add_argument("--contrastive-batches", default=None, help="default 64,256,682 on GPU, 16,64,256,682 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default 10 GPU, 2 CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile cases")
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="skip cases projected to need more (default: 80 %% of GPU memory, 60 %% of CPU RAM)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        case = json.loads(args.case)
        torch.set_float32_matmul_precision("high")
        if case["kind"] == "step":
            result = run_step(case["device"], case["task"], case["batch"], case["compiled"], case["bf16"],
                              case["steps"])
        else:
            result = run_contrastive(case["device"], case["batch"], case["blockwise"], case["steps"])
        print(json.dumps(result))
        return

    gpu = args.device.startswith("cuda")
    batches = [int(b) for b in (args.batches or ("64,256,682" if gpu else "4,16,256,682")).split(",")]
    cbatches = [int(b) for b in (args.contrastive_batches or ("64,256,682" if gpu else "16,64,256,682")).split(",")]
    steps = args.steps or (10 if gpu else 2)
    if args.memory_limit_gib is not None:
        limit = args.memory_limit_gib
    elif gpu:
        limit = 0.8 * torch.cuda.get_device_properties(0).total_memory / 2**30
    else:
        import os
        limit = 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    name = torch.cuda.get_device_name(0) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"OmniSat TreeSatAI-TS preset, {name}, torch {torch.__version__}, {steps} timed steps per case")

    for task in args.tasks.split(","):
        what = "Pretraining (3 modalities, masked reconstruction + MIL-NCE)" if task == "pretrain" else \
            "Fine-tuning (3 modalities, 15-class BCE)"
        print(f"\n{what} step: forward + backward + Adam, 50 dates per series")
        print(f"{'batch':>6} {'mode':>9} {'dtype':>6} {'samples/s':>10} {'step s':>8} {'warm-up s':>9} {'peak GiB':>9}")
        peaks: dict[tuple[bool, bool], list[tuple[int, float]]] = {}
        for batch in batches:
            base = None
            for compiled in ([False] if args.no_compile else [False, True]):
                for bf16 in (False, True):
                    mode, dtype = ("compiled" if compiled else "eager"), ("bf16" if bf16 else "fp32")
                    seen = peaks.setdefault((compiled, bf16), [])
                    if len(seen) >= 2:
                        (b0, p0), (b1, p1) = seen[-2:]
                        projected = p1 + (p1 - p0) / (b1 - b0) * (batch - b1)
                        if projected > limit:
                            print(f"{batch:>6} {mode:>9} {dtype:>6}  skipped: needs about {projected:.0f} GiB "
                                  f"(linear in batch from {b0} and {b1}), limit {limit:.0f} GiB")
                            continue
                    r = in_subprocess(dict(kind="step", device=args.device, task=task, batch=batch,
                                           compiled=compiled, bf16=bf16, steps=steps))
                    if "error" in r:
                        print(f"{batch:>6} {mode:>9} {dtype:>6}  {r['error']}")
                        continue
                    seen.append((batch, r["peak_gib"]))
                    base = base or r["samples_per_s"]
                    print(f"{batch:>6} {mode:>9} {dtype:>6} {r['samples_per_s']:>10.2f} {r['step_s']:>8.3f} "
                          f"{r['warmup_s']:>9.1f} {r['peak_gib']:>9.2f}   x{r['samples_per_s'] / base:.2f}")

    print("\nMIL-NCE loss alone (forward + backward), 3 modalities x 36 patches x 256 dims")
    print(f"{'batch':>6} {'tokens':>8} {'method':>10} {'step s':>8} {'peak GiB':>9}")
    for batch in cbatches:
        n = 3 * 36 * batch
        for blockwise in (False, True):
            method = "blockwise" if blockwise else "plain"
            need = 3 * n * n * 4 / 2**30  # logits, their masked copy and the softmax for backward
            if not blockwise and need > limit:
                print(f"{batch:>6} {n:>8} {method:>10}  skipped: needs about {need:.0f} GiB")
                continue
            r = in_subprocess(dict(kind="contrastive", device=args.device, batch=batch, blockwise=blockwise,
                                   steps=steps))
            if "error" in r:
                print(f"{batch:>6} {n:>8} {method:>10}  {r['error']}")
                continue
            print(f"{batch:>6} {n:>8} {method:>10} {r['step_s']:>8.3f} {r['peak_gib']:>9.2f}")


if __name__ == "__main__":
    main()
