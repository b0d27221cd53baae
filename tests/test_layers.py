"""The house rules, read from the source: which package may import which (the layers of README "Layout"),
no import cycles, the network importing torch and numpy only, and ruff clean. Parses every module's
imports (top-level and inside functions) with `ast`; nothing is imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("omnisat_data", "omnisat_model", "omnisat_train", "cli")

# Who may import whom, by layer. A layer is a subpackage of omnisat_data (or a top-level package); each may
# import itself and the layers listed. geo is pure geometry; io the edges (files, pools); stac and the
# recipe describe what to search and how to read; formats the on-disk layouts; build and verify use them and
# never each other; sim (the synthetic world and its servers) is imported by no product code but the demo.
ALLOWED = {
    "omnisat_data.geo": set(),
    "omnisat_data.io": {"omnisat_data.geo"},
    "omnisat_data.recipe": {"omnisat_data.stac", "omnisat_data.io"},
    "omnisat_data.stac": {"omnisat_data.geo", "omnisat_data.io", "omnisat_data.recipe"},
    "omnisat_data.formats": {"omnisat_data.geo", "omnisat_data.io", "omnisat_data.stac"},
    "omnisat_data.build": {"omnisat_data.geo", "omnisat_data.io", "omnisat_data.stac", "omnisat_data.recipe",
                           "omnisat_data.formats"},
    "omnisat_data.verify": {"omnisat_data.geo", "omnisat_data.io", "omnisat_data.stac", "omnisat_data.formats"},
    "omnisat_data.sim": {"omnisat_data.geo", "omnisat_data.io", "omnisat_data.stac", "omnisat_data.formats"},
    # the main job on the embedded default: the demo world, both builds, the check, training
    "omnisat_data.demo": {"omnisat_data.build", "omnisat_data.verify", "omnisat_data.recipe", "omnisat_data.sim",
                          "omnisat_train"},
    "omnisat_model": set(),
    "omnisat_train": {"omnisat_model", "omnisat_data.formats", "omnisat_data.stac", "omnisat_data.io",
                      "omnisat_data.geo"},
    "cli": {"omnisat_data", "omnisat_model", "omnisat_train"},
}
# beyond the standard library, what the network may import
MODEL_THIRD_PARTY = {"torch", "numpy"}


def layer_of(module: str) -> str:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    if module == "omnisat_data":
        return "omnisat_data"
    raise AssertionError(f"{module}: in no layer of test_layers.ALLOWED (a new package needs its place there)")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every module `module` imports (absolute names; `from x import y` counts y when it is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {n for n in imports_of(m, p) if n in known and n != m} for m, p in known.items()}


def test_every_import_respects_the_layers():
    wrong = []
    for module, targets in graph().items():
        here = layer_of(module)
        for target in targets:
            there = layer_of(target)
            if there != here and there not in ALLOWED[here] and not (here == "cli" and there.startswith(
                    tuple(ALLOWED["cli"]))) and there != "omnisat_data":
                wrong.append(f"{module} imports {target} ({here} may import {sorted(ALLOWED[here]) or 'nothing'})")
    assert wrong == []


def test_no_import_cycles():
    edges = graph()
    # packages import their modules' names through __init__ only as documentation: a package's own
    # __init__ importing a submodule is not a cycle with that submodule
    for module in edges:
        edges[module] = {t for t in edges[module] if not t.startswith(module + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_network_imports_torch_and_numpy_only():
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for module, path in modules().items():
        if layer_of(module) != "omnisat_model":
            continue
        for name in imports_of(module, path):
            top = name.split(".")[0]
            if top not in stdlib and top not in MODEL_THIRD_PARTY and top != "omnisat_model":
                wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_a_wrong_import_is_caught(tmp_path, monkeypatch):
    """The rule test can fail: verify importing build is reported."""
    bad = {"omnisat_data.verify.run": {"omnisat_data.build.engine"}}
    monkeypatch.setattr(sys.modules[__name__], "graph", lambda: bad)
    with pytest.raises(AssertionError, match="omnisat_data.verify.run imports omnisat_data.build.engine"):
        test_every_import_respects_the_layers()


def test_ruff_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]


# -- the CLI: parse, config, one call, render -----------------------------------------------------------

COMMAND_MODULES = ("cli/data.py", "cli/model.py")
# what a command module may import: the CLI library, its renderer and the toolkit's own packages
CLI_IMPORTS = {"__future__", "pathlib", "sys", "json", "typer", "cli.render", "omnisat_data", "omnisat_model",
               "omnisat_train"}
# build the train commands' options from TrainConfig's fields (a loop over them, with inspect and typing)
OPTION_MAKERS = {"_command", "_option_type"}


def cli_problems(source: str, name: str) -> list[str]:
    """What makes a command module more than wiring: a loop or comprehension (work over data), file I/O, an
    import of anything but the CLI library and the toolkit, a command calling more than one toolkit
    function that does work (configs, `load_*` and `parse_*` are parsing; a --dry-run is a second mode)."""
    tree = ast.parse(source, name)
    problems = []
    makers = {id(n) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name in OPTION_MAKERS
              for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in makers:
            module = ("cli." if getattr(node, "level", 0) else "") + (
                node.module if isinstance(node, ast.ImportFrom) else node.names[0].name)
            if not module.startswith(tuple(CLI_IMPORTS)):
                problems.append(f"{name}:{node.lineno}: imports {module}")
        if isinstance(node, ast.Attribute) and node.attr in ("read_text", "write_text", "read_bytes", "write_bytes"):
            problems.append(f"{name}:{node.lineno}: file I/O ({node.attr})")
        if isinstance(node, ast.Name) and node.id == "open":
            problems.append(f"{name}:{node.lineno}: file I/O (open)")
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        if fn.name in OPTION_MAKERS:
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.For, ast.While, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)):
                problems.append(f"{name}:{node.lineno}: {fn.name} loops ({type(node).__name__})")
        toolkit = {alias.asname or alias.name for node in ast.walk(fn) if isinstance(node, ast.ImportFrom)
                   and (node.module or "").startswith(("omnisat_data", "omnisat_model", "omnisat_train"))
                   for alias in node.names}
        work = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id in toolkit and not n.id[0].isupper()
                and not n.id.startswith(("load_", "parse_"))}
        modes = 2 if "dry_run" in {a.arg for a in fn.args.args} else 1
        if len(work) > modes:
            problems.append(f"{name}:{fn.lineno}: {fn.name} calls {len(work)} toolkit functions ({sorted(work)})")
    return problems


def test_cli_commands_parse_call_and_render():
    problems = [p for module in COMMAND_MODULES for p in cli_problems((ROOT / module).read_text(), module)]
    assert problems == []


def test_logic_in_a_command_is_caught():
    """The rule test can fail: a command that loops over files and calls two library functions."""
    bad = '''
import numpy as np
from pathlib import Path

def build(folder: Path) -> None:
    from omnisat_data.build.plan import group_tiles, planned
    for tif in folder.glob("*.tif"):
        tif.read_bytes()
    planned(group_tiles([], 1.0, None))
'''
    problems = cli_problems(bad, "cli/bad.py")
    assert any("imports numpy" in p for p in problems) and any("loops (For)" in p for p in problems)
    assert any("file I/O (read_bytes)" in p for p in problems) and any("calls 2 toolkit functions" in p
                                                                        for p in problems)
