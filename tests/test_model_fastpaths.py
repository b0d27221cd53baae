"""Each fast path computes what the plain path computes: fused attention, the streaming contrastive
loss (values, gradients, and the size of what it allocates), bf16 autocast, torch.compile."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from model_helpers import random_batch, tiny_config
from torch.utils._python_dispatch import TorchDispatchMode

from omnisat_model.losses import contrastive_loss, contrastive_loss_blockwise
from omnisat_model.model import OmniSatPretraining


def loss_and_grads(config, batch, noise):
    torch.manual_seed(0)
    model = OmniSatPretraining(config).eval()
    out = model(batch, noise=noise)
    out.loss.backward()
    return out, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_fused_attention_equals_plain_attention_forward_and_backward():
    config = tiny_config(contrastive_block=None)
    batch, noise = random_batch(config, 3), torch.rand(3, 108, generator=torch.Generator().manual_seed(3))
    plain, plain_grads = loss_and_grads(dataclasses.replace(config, fused_attention=False), batch, noise)
    fused, fused_grads = loss_and_grads(dataclasses.replace(config, fused_attention=True), batch, noise)
    torch.testing.assert_close(fused.fused, plain.fused, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.loss, plain.loss, rtol=1e-6, atol=0)
    assert plain_grads.keys() == fused_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("modalities, batch, block", [(3, 4, 50), (2, 5, 7), (3, 2, 4096)])
def test_blockwise_contrastive_equals_plain(modalities, batch, block):
    g = torch.Generator().manual_seed(modalities * 10 + batch)
    tokens = [
        torch.randn(batch, 36, 32, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(modalities)
    ]
    plain = contrastive_loss(tokens)
    plain_grads = torch.autograd.grad(plain, tokens)
    streamed = contrastive_loss_blockwise(tokens, block=block)
    streamed_grads = torch.autograd.grad(streamed, tokens)
    assert abs(streamed.item() - plain.item()) <= 1e-6 * abs(plain.item())
    for a, b in zip(streamed_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    # fp32, as training runs it: still within 1e-6 relative
    f32 = [t.detach().float() for t in tokens]
    assert abs(contrastive_loss_blockwise(f32, block=block).item() - plain.item()) <= 1e-6 * abs(plain.item())


class LargestAllocation(TorchDispatchMode):
    """Records the largest tensor any aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def largest_allocation(loss_fn, tokens) -> int:
    with LargestAllocation() as mode:
        loss_fn(tokens).backward()
    return mode.largest


def test_blockwise_contrastive_never_builds_the_whole_similarity_matrix():
    tokens = [torch.randn(8, 36, 16, requires_grad=True) for _ in range(3)]
    n = 3 * 8 * 36
    assert largest_allocation(contrastive_loss, tokens) >= n * n
    assert largest_allocation(lambda t: contrastive_loss_blockwise(t, block=64), tokens) <= 64 * n


def test_bf16_autocast_keeps_losses_in_fp32_and_close():
    config = tiny_config()
    batch, noise = random_batch(config, 2), torch.rand(2, 108, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    model = OmniSatPretraining(config).eval()
    reference = model(batch, noise=noise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch, noise=noise)
    assert all(v.dtype == torch.float32 for v in out.losses.values())
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for name, value in reference.losses.items():
        assert abs(out.losses[name].item() - value.item()) <= 0.05 * abs(value.item()), name


def test_training_step_compiles_without_graph_breaks():
    """fullgraph=True refuses any graph break; aot_eager traces forward and backward without a C compiler."""
    config = tiny_config()
    batch, noise = random_batch(config, 2), torch.rand(2, 108, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    model = OmniSatPretraining(config).eval()

    def step(batch, noise):
        return model(batch, noise=noise).loss

    eager = step(batch, noise)
    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(batch, noise)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=0)
    assert model.encoder.cls_token.grad is not None
