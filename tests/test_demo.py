"""The README's main job, end to end, as a user runs it: `omnisat-data demo` on a fresh folder makes
the demo world, builds TreeSatAI-TS, checks its alignment, builds PASTIS-HD, pretrains and fine-tunes
the CPU-sized OmniSat, and the fine-tuned model reaches macro F1 >= 0.8 on the test split."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from omnisat_data.formats.treesatai_ts import GENERA
from omnisat_train.data.treesatai_ts import read_split


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a hang guard: the whole main job took 13 min on a loaded 2-core machine
def test_demo_main_job_learns_the_genera(tmp_path):
    folder = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "cli.data", "demo", str(folder), "--workers", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    build = folder / "treesatai-ts"
    report = json.loads((build / "build-report.json").read_text())
    assert not report["failed"] and report["tiles"]["done"] == 384
    assert (build / "alignment" / "report.json").is_file() and (folder / "PASTIS-R" / "metadata.geojson").is_file()
    # Every genus is in the test split, so the macro average is over 15 real classes, not padded zeros.
    test_tiles = read_split(build, "test")
    support = sum(s.label for s in test_tiles)
    assert (support >= 5).all(), dict(zip(GENERA, support))
    result = json.loads((folder / "runs" / "finetune" / "test.json").read_text())
    assert result["samples"] == len(test_tiles)
    assert result["f1_macro"] >= 0.8, result
    assert (folder / "runs" / "finetune" / "curves.png").is_file()
    assert "test F1 macro" in r.stdout
