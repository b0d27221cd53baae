"""The device check's every branch on the CPU: `bash benchmarks/gpu_check.sh --device cpu --tiny` runs the
correctness part (conformance vectors, precisions against CPU fp32, fast paths, one-process DDP over gloo),
the training-step table (eager, compiled, tf32, bf16, accumulation, the reference numerics), the input
pipeline and a real pretrain + finetune, and writes every figure to its JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_device_check_runs_every_branch_on_the_cpu(built, tmp_path):
    data, _ = built
    out = tmp_path / "gpu-check.json"
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--tiny", "--data",
                        str(data), "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=1400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads(out.read_text())
    for part in ("correctness", "training_step", "input_pipeline", "short_run"):
        assert "error" not in report[part], (part, report[part])
    c = report["correctness"]
    assert c["passed"] and c["fp32_grads"] == 0.0 and 0 < c["bf16_grads"] < 5e-2  # bf16 differs, within bounds
    rows = report["training_step"]["rows"]
    assert len(rows) == 6 and all(row["samples_per_s"] > 0 for row in rows.values())
    assert report["training_step"]["fp32_ratio_vs_reference"] > 0 and report["training_step"]["step_gflop"] > 0
    assert report["short_run"]["finetune"]["test"]["f1_macro"] >= 0
    assert "fp32 ours / reference numerics" in r.stdout and "short run: pretrain" in r.stdout
