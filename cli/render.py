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
          "aerial": "aerial images (scene x tiles)"}


def fail(message: str, code: int = 2) -> None:
    """Bad input: one clear line on stderr and a non-zero exit."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def staged_progress(bar: Progress):
    """A progress callback (stage, done, total) drawing one bar per stage."""
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(STAGES[stage], total=total)
        bar.update(tasks[stage], completed=done, total=total)
    return report


def print_build_report(report, out_dir: Path) -> None:
    out = Console(width=120)
    table = Table(title=f"TreeSatAI-TS build: {out_dir}")
    for col in ("tiles", "built", "already complete", "failed", "tile-dates", "units", "MB of blocks read", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(str(report.tiles_total), str(len(report.done)), str(len(report.skipped)), str(len(report.failed)),
                  str(report.tile_dates), str(report.units), f"{report.bytes_read / 1e6:.1f}", f"{report.seconds:.1f}")
    out.print(table)
    for tile, reason in sorted(report.failed.items()):
        out.print(f"[red]failed[/] {escape(tile)}: {escape(reason)}", highlight=False, soft_wrap=True)
    print_lost(out, report.lost)
    for _, reason in sorted(report.refused_items.items()):
        out.print(f"[yellow]refused[/] {escape(reason)}", highlight=False, soft_wrap=True)
    for where, reason in sorted(report.source_problems.items()):
        out.print(f"[yellow]source[/] {escape(where)}: {escape(reason)}", highlight=False, soft_wrap=True)


def print_lost(out: Console, lost: dict[str, list[dict]]) -> None:
    for tile, dates in sorted(lost.items()):
        out.print(f"[yellow]date lost[/] {escape(tile)}: {len(dates)} acquisition(s) unreadable, written without "
                  f"(rerun to retry): {escape(dates[0]['reason'])}", highlight=False, soft_wrap=True)


def print_alignment(report: dict) -> None:
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
    out.print(("[green]PASSED[/]" if s["passed"] else "[red]FAILED[/]") + f"  report {report.get('report_path', '')}"
              + (f"  pictures {', '.join(report['pictures'])}" if report.get("pictures") else ""), highlight=False,
              soft_wrap=True)


def print_plan(rows: list, report) -> None:
    """`build treesatai --dry-run`: the searches per group and what they find."""
    table = Table(title=f"Plan: {report.tiles_total} tiles, {len(report.skipped)} already complete, "
                        f"{len(rows)} groups (one search per group and modality)")
    for col in ("year", "tiles", "S2", "S1 asc", "S1 des", "units", "asset MB (upper bound)"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.year), str(r.tiles), str(r.acquisitions["s2"]), str(r.acquisitions["s1-asc"]),
                      str(r.acquisitions["s1-des"]), str(r.units), f"{r.asset_bytes / 1e6:.1f}")
    Console(width=120).print(table)


def print_pastis_report(report, out: Path, sentinel: bool) -> None:
    console_out = Console(width=120)
    r = report.to_dict()
    console_out.print(
        f"PASTIS-HD {out}: {r['patches']['done']} patches written, {r['patches']['skipped']} already there, "
        f"{r['patches']['failed']} failed; "
        + (f"Sentinel series of {len(report.series_done)} patches re-fetched; " if sentinel else "")
        + f"{', '.join(report.norm_written) or 'no'} NORM files written; {r['seconds']:.1f} s", highlight=False)
    for name, reason in sorted(report.failed.items()):
        console_out.print(f"[red]failed[/] patch {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
    for name, reason in sorted(report.source_problems.items()):
        console_out.print(f"[yellow]source[/] {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
    print_lost(console_out, report.lost)


def print_grid_report(report, fmt: str, out: Path) -> None:
    console_out = Console(width=120)
    console_out.print(f"{fmt} {out}: {len(report.done)} tiles built, {len(report.skipped)} already complete, "
                      f"{len(report.failed)} failed", highlight=False)
    for name, reason in sorted(report.failed.items()):
        console_out.print(f"[red]failed[/] {escape(str(name))}: {escape(reason)}", highlight=False, soft_wrap=True)
    for name, reason in sorted(report.source_problems.items()):
        console_out.print(f"[yellow]left out[/] {escape(name)}: {escape(reason)}", highlight=False, soft_wrap=True)
    print_lost(console_out, report.lost)


def print_demo_result(test: dict, dataset: Path, runs: Path) -> None:
    Console(width=120).print(
        f"fine-tuned on {dataset}: test F1 macro {test['f1_macro']:.3f} (over the 15 genera; "
        f"{test['f1_macro_present']:.3f} over those present), micro {test['f1_micro']:.3f}, weighted "
        f"{test['f1_weighted']:.3f}; runs, checkpoints and curves in {runs}/", highlight=False)
