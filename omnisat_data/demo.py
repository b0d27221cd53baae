"""The main job on the embedded default, as one library call: `run_demo`.

In order: the demo world (made aside and renamed, so that an interrupted attempt never looks finished),
TreeSatAI-TS built from its embedded catalog, the build's alignment checked (the world moves some
Sentinel-2 scenes on purpose: the check finds them), PASTIS-HD built, then the CPU-sized OmniSat
pretrained and fine-tuned on the build and evaluated on its test split (recipes/train-demo.toml). Every
step resumes: a rerun on the same folder reuses what is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omnisat_data.build.pastis_hd import PastisConfig, build_pastis
from omnisat_data.build.report import BuildReport
from omnisat_data.build.treesatai_ts import BuildConfig, build_treesatai
from omnisat_data.recipe import load_recipe
from omnisat_data.verify.run import VerifyConfig, verify

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoConfig:
    folder: Path  # DIR/world, DIR/treesatai-ts, DIR/PASTIS-R, DIR/runs
    workers: int = 2
    train: bool = True  # pretrain and fine-tune the small OmniSat on the build

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("--workers must be 0 or more")

    @property
    def world(self) -> Path:
        return self.folder / "world"

    @property
    def catalog(self) -> Path:
        return self.world / "stac" / "items.ndjson"

    @property
    def source(self) -> Path:
        return self.world / "sources" / "treesatai"

    @property
    def recipe(self) -> Path:
        return RECIPES / "demo.toml"

    @property
    def runs(self) -> Path:
        return self.folder / "runs"


@dataclass(frozen=True)
class DemoResult:
    world_counts: dict[str, int]  # what the world holds
    build: BuildReport  # TreeSatAI-TS
    alignment: dict  # verify-alignment's report (with its path)
    pastis: BuildReport  # PASTIS-HD
    test: dict | None  # the fine-tuned model's test metrics (None with train=False)


def demo_world(cfg: DemoConfig, progress: Progress | None = None) -> dict[str, int]:
    """The demo world, made if absent (aside, then renamed); its counts."""
    import json

    from omnisat_data.sim.world.config import load_world_config
    from omnisat_data.sim.world.make import make_world, make_world_aside

    if not (cfg.world / "world.json").is_file():
        def make(target: Path) -> None:
            make_world(target, load_world_config("demo"), style="planetary-computer",
                       progress=None if progress is None else lambda stage, done, total: progress("world", done, total))
        make_world_aside(cfg.folder, cfg.world, make)
    return json.loads((cfg.world / "world.json").read_text())["counts"]


def train_demo(cfg: DemoConfig, dataset: Path, progress: Progress | None = None) -> dict:
    """Pretrain, then fine-tune from the pretrained encoder; the fine-tuned model's test metrics."""
    from omnisat_train.train import load_config, train

    result: dict = {}
    for task, extra in (("pretrain", {}), ("finetune", {"init": cfg.runs / "pretrain" / "last.pt"})):
        run = load_config(task, RECIPES / "train-demo.toml", data=dataset, out=cfg.runs / task, resume=True,
                          cache=cfg.folder / "packed", **extra)
        result = train(run, progress=None if progress is None else
                       lambda done, total, record, task=task: progress(task, done, total))
    return result["test"]


def run_demo(cfg: DemoConfig, progress: Progress | None = None) -> DemoResult:
    counts = demo_world(cfg, progress)
    recipe = load_recipe(cfg.recipe).with_catalog(str(cfg.catalog))
    build = build_treesatai(BuildConfig(source=cfg.source, recipe=recipe, out=cfg.folder / "treesatai-ts",
                                        workers=cfg.workers), progress=progress)
    check = VerifyConfig(dataset=cfg.folder / "treesatai-ts", workers=cfg.workers)
    alignment = verify(check, progress=None if progress is None else
                       lambda done, total: progress("verify", done, total))
    alignment["report_path"] = str(check.report_path)
    pastis_recipe = load_recipe(RECIPES / "pastis-hd-demo.toml").with_catalog(str(cfg.catalog))
    pastis = build_pastis(PastisConfig(cfg.world / "sources" / "PASTIS-R", pastis_recipe, cfg.folder / "PASTIS-R",
                                       cfg.workers), progress=progress)
    test = train_demo(cfg, cfg.folder / "treesatai-ts", progress) if cfg.train else None
    return DemoResult(counts, build, alignment, pastis, test)
