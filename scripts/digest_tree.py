"""sha256 of every file under a folder, one line each, sorted: compare two builds with `diff`.

    python scripts/digest_tree.py OUT > OUT.sha256

Build reports and verify reports are hashed without their timing fields (`seconds`, `samples_per_s`), the
only values that differ between two runs of the same build.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPORTS = ("build-report.json", "verify.json", "report.json")
TIMINGS = ("seconds", "samples_per_s")


def without_timings(obj):
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def digests(root: Path) -> list[str]:
    lines = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name in REPORTS:
            data = json.dumps(without_timings(json.loads(data)), sort_keys=True).encode()
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {path.relative_to(root)}")
    return lines


if __name__ == "__main__":
    print("\n".join(digests(Path(sys.argv[1]))))
