"""One training step's gradients, for the DDP check: run alone, or under torchrun with 2 processes.

    python tests/ddp_step.py DATA OUT.pt            # single process, the whole global batch
    torchrun --nproc_per_node 2 tests/ddp_step.py DATA OUT.pt
"""

import sys
from pathlib import Path

import torch

from omnisat_train.train import TrainConfig, prepare, to_device

if __name__ == "__main__":
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    # aerial only, no dropout, BatchNorm in eval mode: per-batch statistics would differ by design
    cfg = TrainConfig(task="finetune", data=data, out=out.parent / "ddp-run", modalities=("aerial",),
                      model="treesatai-ts-small", batch_size=4, dropout=0.0, device="cpu")
    run = prepare(cfg)
    run.data["train"][2].set_epoch(0)
    batch = to_device(next(iter(run.data["train"][1])), run.rt.device)
    run.model.train()
    for module in run.model.modules():  # BatchNorm on running statistics: no per-batch statistics to differ
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(run.model(batch), batch["label"])
    loss.backward()
    core = run.model.module if hasattr(run.model, "module") else run.model
    if run.rt.main:
        torch.save({n: p.grad.clone() for n, p in core.named_parameters() if p.grad is not None}, out)
    if run.rt.world > 1:
        torch.distributed.barrier()  # no process leaves while another still talks to it
        torch.distributed.destroy_process_group()
