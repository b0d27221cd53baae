"""Multi-label F1 at threshold 0.5 on the sigmoid (logit > 0), as torchmetrics computes it for the reference.

Counts are accumulated as tensors so that processes can sum them (all_reduce) before the scores.
"""

from __future__ import annotations

import torch


def counts(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(3, C) float64: true positives, false positives, false negatives per class."""
    pred = logits > 0
    truth = labels > 0.5
    return torch.stack([(pred & truth).sum(0), (pred & ~truth).sum(0), (~pred & truth).sum(0)]).double()


def f1_scores(c: torch.Tensor) -> dict:
    """Macro (mean of per-class F1 over all classes: a class with no positives and no predictions scores
    0, as in torchmetrics' multilabel F1), micro (pooled counts), weighted (by support), per-class F1,
    and macro over the classes present."""
    tp, fp, fn = c
    denom = 2 * tp + fp + fn
    per_class = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    support = tp + fn
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    present = (support + fp) > 0  # classes the split holds or the model predicts
    return {
        "f1_macro": float(per_class.mean()),
        # not the reference's: macro over the classes present (a dataset with only some of the 15 genera)
        "f1_macro_present": float(per_class[present].mean()) if present.any() else 0.0,
        "f1_micro": float(2 * tp.sum() / micro_denom) if micro_denom > 0 else 0.0,
        "f1_weighted": float((per_class * support).sum() / support.sum()) if support.sum() > 0 else 0.0,
        "f1_per_class": [round(float(v), 6) for v in per_class],
    }
