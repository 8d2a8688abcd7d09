"""The import contracts of docs/architecture.md hold, bite, and leave no import cycle.

``lint-imports`` (import-linter) reads the contracts from pyproject.toml. Static tools cannot
follow the editable install's import hook (pyproject's ``package-dir`` maps core/ to ``semon``
and each top-level folder to a sub-package), so the test lays the sources out as the wheel does
— ``semon/``, ``semon/ingest/``, … — in a temporary folder and points the tools at that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lay_out(dest: Path) -> Path:
    """Copy the package's folders into ``dest`` as the installed ``semon`` package; return dest."""
    mapping = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
        target = dest.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, dest / "pyproject.toml")
    return dest


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _lay_out(tmp_path_factory.mktemp("layout"))


def test_the_import_contracts_hold(tree: Path):
    run = _lint(tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_an_import_from_the_pure_rules_into_the_store_breaks_the_contract(tmp_path: Path):
    tree = _lay_out(tmp_path)
    expr = tree / "semon" / "rules" / "expr.py"
    expr.write_text(expr.read_text() + "\nfrom semon.store import db as _db  # noqa: E402,F401\n")
    run = _lint(tree)
    assert run.returncode != 0
    assert "semon.rules.expr -> semon.store" in run.stdout


def test_a_store_importing_the_api_breaks_the_layers(tmp_path: Path):
    tree = _lay_out(tmp_path)
    models = tree / "semon" / "store" / "models.py"
    models.write_text(models.read_text() + "\nfrom semon.api import auth as _auth  # noqa: E402,F401\n")
    run = _lint(tree)
    assert run.returncode != 0
    assert "semon.store is not allowed to import semon.api" in run.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycles(tree: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tree))
    for name in [m for m in sys.modules if m == "semon" or m.startswith("semon.")]:
        monkeypatch.delitem(sys.modules, name)  # grimp must find the laid-out copy
    graph = grimp.build_graph("semon", cache_dir=None)
    assert _cycles(graph) == []


def test_loading_the_pure_rules_loads_no_store_web_or_mqtt():
    """At run time too: no package ``__init__`` drags the store in behind a pure module."""
    contract = next(
        c for c in tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"] if c["type"] == "forbidden"
    )
    code = (
        "import importlib, json, sys\n"
        f"for m in {contract['source_modules']!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {{'sqlalchemy', 'fastapi', 'paho', 'httpx'}}"
        f" or m.startswith(('semon.store', 'semon.api', 'semon.ingest', 'semon.notify')))\n"
        "print(json.dumps(bad))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"
