"""Bad inputs, each answered in one line: the misuse list of the robustness issue as commands a user types.

    python benchmarks/bad_inputs.py --world WORLD --out SCRATCH

Each case writes its bad input under SCRATCH, runs one command and holds when the command exits with the
expected code, prints exactly one `error:` line naming the file, tile or field (the case's needle), no
traceback, and leaves the world (the user's inputs) as it was. `fault_campaign.py --kinds bad-input` runs
them as trials; this script runs them all once and prints a table. (An item with a null geometry is valid
STAC, not a bad input: it matches no bbox, as in a STAC API; tests/test_catalog.py.)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = [sys.executable, "-m", "cli.data"]
MODEL = [sys.executable, "-m", "cli.model"]


@dataclass(frozen=True)
class BadInput:
    name: str
    make: Callable[[Path, Path], list[str]]  # (world, case folder) -> the command, after writing its input
    needle: str  # in the one error line
    code: int = 2


def _items(world: Path) -> list[str]:
    return (world / "stac" / "items.ndjson").read_text().splitlines()


def _item_file(folder: Path, lines: list[str]) -> Path:
    path = folder / "items.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def _recipe(world: Path, folder: Path, edit: Callable[[str], str] = lambda t: t) -> Path:
    text = (ROOT / "recipes" / "demo.toml").read_text().replace(
        "../demo/world/stac/items.ndjson", str(world / "stac" / "items.ndjson"))
    path = folder / "recipe.toml"
    path.write_text(edit(text))
    return path


def _build(world: Path, recipe: Path, out: Path, source: Path | None = None) -> list[str]:
    return DATA + ["build", "treesatai", "--source", str(source or world / "sources" / "treesatai"),
                   "--recipe", str(recipe), "--out", str(out), "--workers", "0"]


def _search(world: Path, folder: Path, line: str, at: int = 10) -> list[str]:
    lines = _items(world)[:at] + [line] + _items(world)[at:at + 2]
    return DATA + ["stac", "search", str(_item_file(folder, lines)), "--collection", "sentinel-2-l2a"]


def _train(folder: Path, *extra: str, task: str = "finetune") -> list[str]:
    return MODEL + ["train", task, "--data", str(ROOT / "tests" / "data"), "--out", str(folder / "run"),
                    "--model", "treesatai-ts-small", "--device", "cpu", *extra]


def _config(folder: Path, text: str) -> Path:
    path = folder / "train.toml"
    path.write_text(text)
    return path


def _existing_run(folder: Path) -> list[str]:
    (folder / "run").mkdir()
    (folder / "run" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return _train(folder, "--modalities", "s2")


def _no_config_checkpoint(folder: Path) -> list[str]:
    import torch

    # the reference's fine-tuned weights, as the reference saves them, converted to ours: no dataset recorded
    vectors = torch.load(ROOT / "tests" / "data" / "conformance" / "tsaits_tiny.pt", weights_only=True)
    torch.save(vectors["finetune_eval"]["state_dict_finetune"], folder / "reference.pt")
    subprocess.run(MODEL + ["convert-checkpoint", str(folder / "reference.pt"), str(folder / "ours.pt")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return MODEL + ["evaluate", str(folder / "ours.pt")]


def _source_copy(world: Path, folder: Path) -> Path:
    source = folder / "treesatai"
    shutil.copytree(world / "sources" / "treesatai", source)
    return source


def _grid(world: Path, folder: Path, *extra: str) -> list[str]:
    recipe = (ROOT / "recipes" / "grid-demo.toml").read_text().replace(
        "../demo/world/stac/items.ndjson", str(world / "stac" / "items.ndjson"))
    (folder / "grid.toml").write_text(recipe)
    return DATA + ["build", "grid", "--recipe", str(folder / "grid.toml"), "--out", str(folder / "out"), *extra]


def _demo_not_ours(folder: Path) -> list[str]:
    (folder / "world").mkdir()
    (folder / "world" / "notes.txt").write_text("mine")
    return DATA + ["demo", str(folder), "--no-train"]


CASES = (
    BadInput("item file: a line that is not an item", lambda w, f: _search(w, f, '{"hello": 1}'), "line 11"),
    BadInput("item file: malformed JSON", lambda w, f: _search(w, f, '{"type": "Feature", '), "line 11"),
    BadInput("recipe: a folder", lambda w, f: _build(w, f, f / "out"), "folder"),
    BadInput("recipe: not UTF-8", lambda w, f: _build(w, _bytes(f / "r.toml", b"format = '\xff'\n"), f / "out"),
             "UTF-8"),
    BadInput("recipe: unknown CQL2 operator", lambda w, f: _build(w, _recipe(w, f, lambda t: t.replace(
        "[s2]\n", '[s2]\nfilter = { op = "<<", args = [{ property = "eo:cloud_cover" }, 3] }\n', 1)), f / "out"),
        "'<<'"),
    BadInput("recipe: misspelt collection (an empty result)", lambda w, f: _build(w, _recipe(
        w, f, lambda t: t.replace('collection = "sentinel-2-l2a"', 'collection = "sentinel-2-l2"')), f / "out"),
        "sentinel-2-l2", code=1),
    BadInput("build: --out is --source", lambda w, f: _build(w, _recipe(w, f), _source_copy(w, f),
                                                             _source_copy_path(f)), "never writes into"),
    BadInput("build: --out inside --source", lambda w, f: _build(
        w, _recipe(w, f), _source_copy(w, f) / "out", _source_copy_path(f)), "never writes into"),
    BadInput("grid: --tile-size 0m", lambda w, f: _grid(w, f, "--bbox", "7.6,48.58,7.61,48.59", "--tile-size", "0m"),
             "tile size 0"),
    BadInput("grid: --limit -1", lambda w, f: _grid(w, f, "--bbox", "7.6,48.58,7.61,48.59", "--limit", "-1"),
             "--limit"),
    BadInput("grid: a one-degree --bbox", lambda w, f: _grid(w, f, "--bbox", "7.0,48.0,8.0,49.0"), "--limit"),
    BadInput("verify: --max-shift-px nan", lambda w, f: DATA + [
        "verify-alignment", str(ROOT / "tests" / "data" / "treesatai-ts-sample"), "--max-shift-px", "nan",
        "--report", str(f / "r.json")], "--max-shift-px"),
    BadInput("train: a folder as --config", lambda w, f: _train(f, "--config", str(f)), "folder"),
    BadInput("train: a wrong type in the config", lambda w, f: _train(
        f, "--config", str(_config(f, 'epochs = "three"\n'))), "epochs"),
    BadInput("train: a run folder without --resume", lambda w, f: _existing_run(f), "--resume"),
    BadInput("train: pretraining on one modality", lambda w, f: _train(f, "--modalities", "s2", task="pretrain"),
             "two modalities"),
    BadInput("evaluate: a checkpoint that records no dataset", lambda w, f: _no_config_checkpoint(f), "--data"),
    BadInput("demo: DIR/world the demo did not make", lambda w, f: _demo_not_ours(f), "not a demo world"),
)


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _source_copy_path(folder: Path) -> Path:
    return folder / "treesatai"


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def check(case: BadInput, world: Path, folder: Path) -> str | None:
    """None when `case` is answered as it should be, else what was wrong."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    before = snapshot(world)
    command = case.make(world, folder)
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    if r.returncode != case.code:
        return f"exit {r.returncode} (expected {case.code}): {r.stderr.strip()[-160:]}"
    if "Traceback" in r.stderr:
        return "a traceback: " + r.stderr.strip().splitlines()[-1][:160]
    if case.code == 2 and (len(errors) != 1 or len(r.stderr.strip().splitlines()) != 1):
        return f"{len(r.stderr.strip().splitlines())} lines on stderr: {r.stderr.strip()[:160]}"
    said = errors[0] if errors else r.stdout + r.stderr
    if case.needle not in said:
        return f"the message does not name {case.needle!r}: {said[:160]}"
    if snapshot(world) != before:
        return "the world (the user's input) changed"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (created)")
    args = parser.parse_args()
    failed = 0
    print(f"{'bad input':<52} result")
    for k, case in enumerate(CASES):
        reason = check(case, args.world, args.out / f"case-{k}")
        failed += reason is not None
        print(f"{case.name:<52} {'held' if reason is None else 'FAILED: ' + reason}")
    print(f"{len(CASES) - failed} of {len(CASES)} held")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
