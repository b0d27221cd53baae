"""How results and errors read on the console: progress bars, report tables, and one-line errors that name
the file and say what to do. The commands in data.py and model.py parse, call one library function and
render with these."""

from __future__ import annotations

import errno
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

RERUN = "run the same command again; it resumes where it stopped"


def error_text(error: BaseException, rerun: str = RERUN) -> str:
    """The one line for `error`. A full disk says which file could not be written and how to go on (every
    output is written under a temporary name first, so nothing half-written is left to mistrust)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = error.filename2 or error.filename
        return f"no space left on device{f' writing {where}' if where else ''}: free some space and {rerun}"
    return " ".join(str(error).split())


console = Console(stderr=True)


STAGES = {"search": "search (groups)", "read": "read (scene x tile group)", "vhr": "VHR images (scene x patches)",
          "aerial": "aerial images (scene x tiles)", "world": "demo world", "verify": "verify tiles",
          "pretrain": "pretrain (small OmniSat, CPU)", "finetune": "finetune (small OmniSat, CPU)",
          "scenes": "world: scenes", "sources": "world: source benchmarks"}


def fail(message: str, code: int = 2) -> None:
    """Bad input: one clear line on stderr and a non-zero exit."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def stage_progress(bar: Progress, stage: str):
    """A progress callback (done, total) for one stage, its bar drawn at the first call."""
    report = staged_progress(bar)
    return lambda done, total: report(stage, done, total)


def staged_progress(bar: Progress):
    """A progress callback (stage, done, total) drawing one bar per stage."""
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)
    return report


def print_build_report(report, out_dir: Path) -> None:
    out = Console(width=120)
    table = Table(title=f"TreeSatAI-TS build: {out_dir}")
    for col in ("tiles", "built", "already complete", "failed", "tile-dates", "units", "blocks read (minimum)",
                "MB of blocks read", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(str(report.total), str(len(report.done)), str(len(report.skipped)), str(len(report.failed)),
                  str(report.tile_dates), str(report.units), f"{report.blocks.read} ({report.blocks.minimum})",
                  f"{report.bytes_read / 1e6:.1f}", f"{report.seconds:.1f}")
    out.print(table)
    print_plan_use(out, report)
    for tile, reason in sorted(report.failed.items()):
        out.print(f"[red]failed[/] {escape(tile)}: {escape(reason)}", highlight=False, soft_wrap=True)
    print_lost(out, report.lost)
    print_empty_splits(out, report)
    for _, reason in sorted(report.refused_items.items()):
        out.print(f"[yellow]refused[/] {escape(reason)}", highlight=False, soft_wrap=True)
    for where, reason in sorted(report.source_problems.items()):
        out.print(f"[yellow]source[/] {escape(where)}: {escape(reason)}", highlight=False, soft_wrap=True)


def print_plan_use(out: Console, report) -> None:
    """Where the build's searches came from: a plan reused from OUT/plan.json says so."""
    for section, use in sorted(report.plan.items()):
        if use.reused:
            searched = f"; {use.groups_searched} group(s) searched anew" if use.groups_searched else "; no search"
            out.print(f"plan ({section}): reused {escape(use.path)} for {use.groups_reused} group(s){searched}",
                      highlight=False, soft_wrap=True)
        elif use.why_new:
            out.print(f"plan ({section}): searched again, {escape(use.path)} not reused ({escape(use.why_new)})",
                      highlight=False, soft_wrap=True)


def print_empty_splits(out: Console, report) -> None:
    for name in report.empty_splits:
        out.print(f"[yellow]split[/] {name}_filenames.lst holds no tile: the OmniSat and AnySat loaders cannot read "
                  "an empty split (val is carved from train when it has 4 tiles or more): build more tiles",
                  highlight=False, soft_wrap=True)


def print_lost(out: Console, lost: dict[str, list[dict]]) -> None:
    for tile, dates in sorted(lost.items()):
        out.print(f"[yellow]date lost[/] {escape(tile)}: {len(dates)} acquisition(s) unreadable, written without "
                  f"(rerun to retry): {escape(dates[0]['reason'])}", highlight=False, soft_wrap=True)


def print_alignment(report: dict, report_path: Path | None = None) -> None:
    s = report["summary"]
    out = Console(width=120)
    table = Table(title=f"Alignment: {s['dataset']} ({s['tiles']} of {s['tiles_in_dataset']} tiles checked)")
    for col in ("", "median m", "p95 m", "median px", "p95 px", "over threshold"):
        table.add_column(col, justify="right")
    for key, label, flagged in (("scene_shift", "scenes (median over tiles)", s["scenes_flagged"]),
                                ("tile_shift", "tiles (after scene shifts)", s["tiles_flagged"])):
        v = s[key]
        table.add_row(
            label,
            *[("-" if v[k] is None else f"{v[k]:.3f}") for k in ("median_m", "p95_m", "median_px", "p95_px")],
            str(flagged),
        )
    out.print(table)
    out.print(f"estimates accepted {s['estimates_accepted']} of {s['estimates']}; format problems {s['problems']} "
              f"in {s['tiles_with_problems']} tiles; thresholds good < {s['thresholds_px']['good']} px, "
              f"suspect > {s['thresholds_px']['suspect']} px", highlight=False)
    problems = [p for t in report["tiles"].values() for p in t["problems"]]
    for p in problems[:20]:
        out.print(f"[red]problem[/] {escape(p)}", highlight=False, soft_wrap=True)
    if len(problems) > 20:
        out.print(f"... {len(problems) - 20} more in the report", highlight=False)
    flagged = [(k, v) for k, v in report["scenes"].items() if v["flagged"]]
    for name, v in flagged[:10]:
        out.print(f"[yellow]scene[/] {name}: ({v['dx']:+.2f}, {v['dy']:+.2f}) m = {v['shift_px']:.2f} px from "
                  f"{v['estimates']} tile estimates", highlight=False)
    if s.get("not_measured"):
        out.print(f"[red]not measured[/] {escape(s['not_measured'])}", highlight=False, soft_wrap=True)
    where = report_path or report.get("report_path", "")
    out.print(("[green]PASSED[/]" if s["passed"] else "[red]FAILED[/]") + f"  report {where}"
              + (f"  pictures {', '.join(report['pictures'])}" if report.get("pictures") else ""), highlight=False,
              soft_wrap=True)


def print_plan(rows: list, report) -> None:
    """`build ... --dry-run`: the plan, a row per group and section: its searches and what they find."""
    series = [s for s in ("vhr", "s2", "s1-asc", "s1-des") if any(s in r.found for r in rows)] or ["s2"]
    table = Table(title=f"Plan: {report.total} {report.unit_name}, {len(report.skipped)} already complete, "
                        f"{len(rows)} group{'' if len(rows) == 1 else 's'} (one search per group and modality)")
    heads = {"vhr": "VHR", "s2": "S2", "s1-asc": "S1 asc", "s1-des": "S1 des"}
    for col in ("section", "year", report.unit_name, *(heads[s] for s in series), "units", "asset MB (upper bound)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r.section, "period" if r.year is None else str(r.year), str(r.tiles),
                      *(str(r.found.get(s, 0)) for s in series), str(r.units), f"{r.asset_bytes / 1e6:.1f}")
    out = Console(width=120)
    out.print(table)
    print_plan_use(out, report)
    searched = [use.path for use in report.plan.values() if use.path and use.groups_searched]
    if searched:
        path = searched[0]
        out.print(f"(searched now; a build writes this plan to {escape(path)} and a rerun reuses it)",
                  highlight=False, soft_wrap=True)


def print_pastis_report(report, out: Path, sentinel: bool) -> None:
    console_out = Console(width=120)
    r = report.to_dict()
    console_out.print(
        f"PASTIS-HD {out}: {r['patches']['done']} patches written, {r['patches']['skipped']} already there, "
        f"{r['patches']['failed']} failed; "
        + (f"Sentinel series of {len(report.series_done)} patches re-fetched; " if sentinel else "")
        + f"{', '.join(report.norm_written) or 'no'} NORM files written; {r['seconds']:.1f} s", highlight=False)
    print_plan_use(console_out, report)
    for name, reason in sorted(report.failed.items()):
        console_out.print(f"[red]failed[/] patch {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
    for name, reason in sorted(report.source_problems.items()):
        console_out.print(f"[yellow]source[/] {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
    print_lost(console_out, report.lost)


def print_grid_report(report, fmt: str, out: Path) -> None:
    console_out = Console(width=120)
    console_out.print(f"{fmt} {out}: {len(report.done)} tiles built, {len(report.skipped)} already complete, "
                      f"{len(report.failed)} failed", highlight=False)
    print_plan_use(console_out, report)
    for name, reason in sorted(report.failed.items()):
        console_out.print(f"[red]failed[/] {escape(str(name))}: {escape(reason)}", highlight=False, soft_wrap=True)
    for name, reason in sorted(report.source_problems.items()):
        console_out.print(f"[yellow]left out[/] {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
    print_lost(console_out, report.lost)
    print_empty_splits(console_out, report)


def print_world(summary: dict, folder: Path) -> None:
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    console.print(f"world written to {folder} in {summary['seconds']['total']:.1f} s: {counts}", highlight=False)


def print_servers(servers) -> None:
    """`stac serve`: one JSON line for scripts (the API, the assets, an S3 endpoint's GDAL environment), then
    the same for people."""
    import json

    s3 = servers.s3.gdal_env() if servers.s3 is not None else None
    print(json.dumps({"stac_api": servers.api.url, "assets": servers.assets.url,
                      **({"s3_env": s3} if s3 else {})}), flush=True)
    console.print(f"STAC API {servers.api.url}  assets {servers.assets.url}  (Ctrl-C to stop)", highlight=False)
    if s3:
        console.print("s3:// assets: " + " ".join(f"{k}={v}" for k, v in s3.items()), highlight=False)
    shaping = servers.assets.shaping
    if shaping.delay_s or shaping.bytes_per_s:
        cap = f", at most {shaping.bytes_per_s / 1e6:g} MB/s each" if shaping.bytes_per_s else ""
        console.print(f"assets answer after {shaping.delay_s * 1000:g} ms{cap}", highlight=False)


def print_items(items: list, count: int) -> None:
    """`stac search`: id and datetime of the first items, then how many were found."""
    for item in items:
        print(item.id, item.datetime.isoformat() if item.datetime else "", sep="\t")
    console.print(f"{count} items")


def print_demo(result, cfg) -> None:
    """`omnisat-data demo`: each step's result in order, then how to run the same build through the API."""
    counts = ", ".join(f"{v} {k}" for k, v in result.world_counts.items())
    console.print(f"demo world {cfg.world}: {counts}", highlight=False)
    print_build_report(result.build, cfg.folder / "treesatai-ts")
    print_alignment(result.alignment)
    console.print("(the demo world moves a quarter of its Sentinel-2 scenes by up to 8 m on purpose: "
                  f"the scenes listed above are those; see {cfg.world / 'truth.json'})", highlight=False)
    r = result.pastis
    console.print(f"PASTIS-HD {cfg.folder / 'PASTIS-R'}: {len(r.done)} patches written, {len(r.skipped)} "
                  f"already there, {len(r.failed)} failed", highlight=False)
    if result.test is not None:
        t = result.test
        Console(width=120).print(
            f"fine-tuned on {cfg.folder / 'treesatai-ts'}: test F1 macro {t['f1_macro']:.3f} (over the 15 genera; "
            f"{t['f1_macro_present']:.3f} over those present), micro {t['f1_micro']:.3f}, weighted "
            f"{t['f1_weighted']:.3f}; runs, checkpoints and curves in {cfg.runs}/", highlight=False)
    console.print(f"Catalog: embedded ({cfg.catalog}); the same build through the pgstac API: "
                  f"`omnisat-data stac serve {cfg.world}`, then `omnisat-data build treesatai --source "
                  f"{cfg.source} --recipe {cfg.recipe} --out OUT --catalog URL`.", highlight=False)


# -- omnisat train / evaluate ---------------------------------------------------------------------------

def one_line(error: BaseException) -> str:
    """The message of an error, on one line; from a DataLoader worker (which wraps it with the worker's
    traceback), the original message."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split())


def epoch_bar() -> Progress:
    # transient: the bar leaves no frame behind, so that an error after it is the one line on stderr
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def epoch_progress(bar: Progress, task: str, epochs: int):
    """The training loop's progress callback (epoch, epochs, record): validation loss and speed on the bar
    (drawn at the first epoch: processes other than the main one draw none)."""
    jobs = []

    def report(done: int, total: int, record: dict) -> None:
        if not jobs:
            jobs.append(bar.add_task(f"{task} epochs", total=epochs))
        job = jobs[0]
        v = record["val"]
        extra = f" val F1 macro {v['f1_macro']:.3f}" if "f1_macro" in v else ""
        bar.update(job, completed=done, description=f"{task}: val loss {v['loss']:.4f}{extra}, "
                                                    f"{record['samples_per_s']:.1f} samples/s")
    return report


def print_environment(env: dict) -> None:
    typer.echo(f"omnisat {env['omnisat']}, torch {env['torch']}, devices: {', '.join(env['devices'])}")


def print_train_summary(result: dict, out: Path) -> None:
    """One JSON line on stdout: the run folder, epochs, best epoch and (fine-tuning, probing) test metrics."""
    import json

    summary = {"out": str(out), "epochs": len(result["history"]), "best": result["best"]}
    if "test" in result:
        summary["test"] = {k: result["test"][k] for k in ("f1_macro", "f1_macro_present", "f1_micro",
                                                          "f1_weighted", "loss")}
    typer.echo(json.dumps(summary))


def print_json(result: dict) -> None:
    import json

    typer.echo(json.dumps(result))


def print_evaluation(result: dict) -> None:
    print_json({k: result[k] for k in ("path", "split", "tiles", "f1_macro", "f1_micro", "f1_weighted",
                                       "f1_macro_present", "loss")})
