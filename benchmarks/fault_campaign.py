"""Fault campaign: kill builds and training runs at random moments, inject HTTP faults, and check that
nothing is lost: every resumed or faulted run is compared with an uninterrupted one (files by sha256,
weights tensor by tensor).

    python benchmarks/fault_campaign.py --world WORLD --out SCRATCH [--trials 5] [--kinds build-kill,train-kill,...]

WORLD: a world made by `omnisat-data world make` (the tests use the tiny preset). Kinds:
  build-kill   SIGKILL or SIGINT (alternately) a `build treesatai` (0 or 2 workers) at a random moment, rerun;
               the tree must equal the reference build's file for file (the build report aside)
  train-kill   the same for `omnisat train finetune` (small model, S2): --resume must give the reference's
               last.pt / best.pt weights and metrics
  http-503     one asset answers 503 three times: retried, the build equals the reference
  truncated    one Sentinel-1 asset served cut short: the tiles it covers are written without that date
               (recorded, named), their other dates and every other tile equal the reference
  stall        one asset holds every answer past the recipe's timeout: the same, and the build ends
  disk-full    a build into a small tmpfs (random size) stops in one line naming the file, leaves no
               temporary file; the rerun, once the disk is grown, equals the reference (needs root to mount)
  bad-input    one of the bad inputs of bad_inputs.py (a different one per trial): one line, exit code,
               the user's input untouched
Prints a table of trials held / failed per kind (and the first failure's reason) and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

KINDS = ("build-kill", "train-kill", "http-503", "truncated", "stall", "disk-full", "bad-input")
SKIPPED = "skipped: "  # a trial this machine cannot run (neither held nor failed)


def tree_digest(root: Path, skip: tuple[str, ...] = ("build-report.json", "plan.json")) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}


def recipe_file(scratch: Path, catalog: str, name: str, timeout_s: float | None = None) -> Path:
    text = (ROOT / "recipes" / "demo.toml").read_text()
    text = text.replace('catalog = "../demo/world/stac/items.ndjson"', f'catalog = "{catalog}"')
    text = text.replace("group_size_m = 5000", "group_size_m = 30")  # small groups: tiles complete one by one
    if timeout_s is not None:
        text = text.replace("[s2]\n", f"[s2]\ntimeout_s = {timeout_s}\n").replace(
            "[s1]\n", f"[s1]\ntimeout_s = {timeout_s}\n"
        )
    path = scratch / f"{name}.toml"
    path.write_text(text)
    return path


def build_cmd(world: Path, recipe: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "cli.data", "build", "treesatai", "--source", str(world / "sources" / "treesatai"),
            "--recipe", str(recipe), "--out", str(out), "--workers", str(workers)]


def train_cmd(data: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "cli.model", "train", "finetune", "--data", str(data), "--out", str(out),
            "--model", "treesatai-ts-small", "--modalities", "s2", "--batch-size", "4", "--epochs", "3",
            "--device", "cpu", "--seed", "7", *(["--resume"] if resume else [])]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def kill_at(cmd: list[str], delay: float, how: int) -> None:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, how)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def weights(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def same_run(a: Path, b: Path) -> str | None:
    """None when run folder `b` holds what `a` does (weights, epochs, losses), else what differs."""
    import torch

    for name in ("last.pt", "best.pt"):
        x, y = weights(a / name), weights(b / name)
        if x["epoch"] != y["epoch"]:
            return f"{name}: epoch {y['epoch']} != {x['epoch']}"
        if not all(torch.equal(x["state_dict"][k], y["state_dict"][k]) for k in x["state_dict"]):
            return f"{name}: weights differ"
    read = lambda p: [(r["epoch"], r["train"]["loss"], r["val"]["loss"]) for r in  # noqa: E731
                      map(json.loads, (p / "metrics.jsonl").read_text().splitlines())]
    return None if read(a) == read(b) else f"metrics.jsonl: {read(b)} != {read(a)}"


class Campaign:
    def __init__(self, world: Path, scratch: Path, seed: int = 0):
        self.world, self.scratch = world, scratch
        self.rng = random.Random(seed)
        self.case_offset = seed  # bad-input trials start at a different case per seed
        scratch.mkdir(parents=True, exist_ok=True)
        self.items = str(world / "stac" / "items.ndjson")
        self.recipe = recipe_file(scratch, self.items, "recipe")
        self.reference = scratch / "reference"
        if not (self.reference / "build-report.json").is_file():
            t0 = time.perf_counter()
            r = run(build_cmd(world, self.recipe, self.reference, 0))
            if r.returncode:
                raise SystemExit(f"reference build failed: {r.stderr[-500:]}")
            self.build_seconds = time.perf_counter() - t0
        else:
            self.build_seconds = 20.0
        self.ref_digest = tree_digest(self.reference)
        self.train_reference = scratch / "train-reference"
        if not (self.train_reference / "test.json").is_file():
            t0 = time.perf_counter()
            r = run(train_cmd(self.reference, self.train_reference, resume=False))
            if r.returncode:
                raise SystemExit(f"reference training failed: {r.stderr[-500:]}")
            self.train_seconds = time.perf_counter() - t0
        else:
            self.train_seconds = 30.0

    def trial(self, kind: str, k: int) -> str | None:
        """One trial; None when it held, else what was lost or wrong."""
        folder = self.scratch / f"{kind}-{k}"
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        if kind == "build-kill":
            how = signal.SIGKILL if k % 2 == 0 else signal.SIGINT
            workers = 0 if k % 4 < 2 else 2
            kill_at(build_cmd(self.world, self.recipe, folder, workers), self.rng.uniform(0.5, self.build_seconds), how)
            r = run(build_cmd(self.world, self.recipe, folder, workers))
            if r.returncode:
                return f"rerun exit {r.returncode}: {r.stderr.strip()[-200:]}"
            got = tree_digest(folder)
            diff = sorted(set(got.items()) ^ set(self.ref_digest.items()))
            return None if not diff else f"{len(diff)} files differ, e.g. {diff[0][0]}"
        if kind == "train-kill":
            how = signal.SIGKILL if k % 2 == 0 else signal.SIGINT
            kill_at(train_cmd(self.reference, folder, resume=False), self.rng.uniform(2.0, self.train_seconds), how)
            r = run(train_cmd(self.reference, folder, resume=(folder / "last.pt").is_file()))
            if r.returncode:
                return f"resume exit {r.returncode}: {r.stderr.strip()[-200:]}"
            return same_run(self.train_reference, folder)
        if kind == "disk-full":
            return self.disk_trial(folder)
        if kind == "bad-input":
            from bad_inputs import CASES, check

            case = CASES[(self.case_offset + k) % len(CASES)]
            reason = check(case, self.world, folder)
            return None if reason is None else f"{case.name}: {reason}"
        return self.http_trial(kind, folder)

    def disk_trial(self, folder: Path) -> str | None:
        folder.mkdir(parents=True)
        size_kb = self.rng.randint(256, 2048)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                           capture_output=True, text=True)
        if r.returncode:
            return SKIPPED + f"cannot mount a tmpfs ({r.stderr.strip()[:80]})"
        try:
            out = folder / "out"
            r = run(build_cmd(self.world, self.recipe, out, 0))
            lines = r.stderr.strip().splitlines()
            if r.returncode != 2 or not lines or "no space left on device writing" not in lines[-1]:
                return f"a {size_kb} KB disk: exit {r.returncode}, {lines[-1][:120] if lines else 'no message'}"
            left = [p.name for p in folder.rglob("*") if ".omnisat-" in p.name]
            if left:
                return f"temporary files left on the full disk: {left[:3]}"
            subprocess.run(["mount", "-o", "remount,size=512m", str(folder)], check=True)
            r = run(build_cmd(self.world, self.recipe, out, 0))
            if r.returncode:
                return f"rerun exit {r.returncode}: {r.stderr.strip()[-200:]}"
            diff = sorted(set(tree_digest(out).items()) ^ set(self.ref_digest.items()))
            return None if not diff else f"{len(diff)} files differ after the rerun, e.g. {diff[0][0]}"
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)

    def used_items(self) -> set[str]:
        ids = set()
        for path in (self.reference / "stac" / "items").glob("*.json"):
            for dates in json.loads(path.read_text())["properties"]["omnisat:dates"].values():
                ids.update(d["item"] for d in dates)
        return ids

    def http_trial(self, kind: str, folder: Path) -> str | None:
        from omnisat_data.sim.serve.assets import AssetServer
        from omnisat_data.sim.serve.world import rewrite_items

        with AssetServer(self.world) as assets:
            items_file = rewrite_items(Path(self.items), assets.url, folder.with_suffix(".ndjson"))
            items = [json.loads(line) for line in items_file.read_text().splitlines()]
            series = "sentinel-2-l2a" if kind != "truncated" else "sentinel-1-rtc"
            used = self.used_items()  # an item the reference build read: a fault in it must show
            chosen = self.rng.choice([i for i in items if i["collection"] == series and i["id"] in used])
            band = "B04" if series == "sentinel-2-l2a" else self.rng.choice(["vv", "vh"])
            # the file the item's asset names (a Planetary Computer RTC id is not its folder: the ESA name is)
            path = chosen["assets"][band]["href"].removeprefix(assets.url + "/")
            if kind == "http-503":
                assets.faults.fail(path, 3, status=503)
            elif kind == "truncated":
                assets.faults.truncate(path, 3000)
            else:
                assets.faults.stall(path, 30)
            recipe = recipe_file(self.scratch, str(items_file), folder.name, timeout_s=2.0 if kind == "stall" else None)
            r = run(build_cmd(self.world, recipe, folder, 0))
        report = json.loads((folder / "build-report.json").read_text())
        got = tree_digest(folder)
        if kind == "http-503":
            if r.returncode:
                return f"build exit {r.returncode}: {r.stderr.strip()[-200:]}"
            return None if got == self.ref_digest else "the build retried into other files than the reference"
        lost = report["lost"]
        if report["failed"]:
            return f"tiles failed instead of losing one date: {next(iter(report['failed'].values()))[:160]}"
        if not lost:
            return f"no tile lost a date although {path} was {kind}"
        if not all(d["item"] == chosen["id"] for dates in lost.values() for d in dates):
            return f"a lost date names another item: {lost}"
        # tiles that lost nothing are the reference's, file for file; the others hold the reference's
        # products less the lost one
        import h5py

        for name in report["dates"]:
            if name not in lost:
                for rel in (f"sentinel/{name}.h5", f"s1-asc/{name}.pth", f"s1-des/{name}.pth"):
                    if got.get(rel) != self.ref_digest.get(rel):
                        return f"{rel} differs from the reference"
                continue
            from omnisat_data.stac.products import same_take

            keys = ("sen-2-products", "sen-1-asc-products", "sen-1-des-products")
            with (
                h5py.File(folder / "sentinel" / f"{name}.h5") as a,
                h5py.File(self.reference / "sentinel" / f"{name}.h5") as b,
            ):
                ours = [p.decode() for k in keys for p in a[k][()]]
                theirs = [p.decode() for k in keys for p in b[k][()]]
            # the reference's dates, in order, less those of the lost acquisition's datatake (a mosaic that
            # needed the lost granule is incomplete without it, so its date goes too)
            take = same_take(lost[name][0]["product"])
            if [p for p in theirs if same_take(p) != take] != [p for p in ours if same_take(p) != take] or \
                    len(ours) >= len(theirs):
                return f"{name}: products {len(ours)}: not the reference's ({len(theirs)}) less the lost date"
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (created)")
    parser.add_argument("--trials", type=int, default=5, help="trials per kind")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    campaign = Campaign(args.world, args.out, args.seed)
    rows, failures = [], 0
    for kind in args.kinds.split(","):
        held, reasons, skipped = 0, [], []
        for k in range(args.trials):
            reason = campaign.trial(kind, k)
            held += reason is None
            if reason and reason.startswith(SKIPPED):
                skipped.append(reason)
            elif reason:
                reasons.append(reason)
        failures += len(reasons)
        rows.append((kind, args.trials - len(skipped), held, len(reasons),
                     (reasons or skipped or [""])[0]))
    print(f"{'kind':<12} {'trials':>6} {'held':>5} {'failed':>6}  first failure")
    for kind, n, held, failed, reason in rows:
        print(f"{kind:<12} {n:>6} {held:>5} {failed:>6}  {reason[:90]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
