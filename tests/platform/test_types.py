"""The type checker over the package as it is installed: mypy, with the settings of
``[tool.mypy]`` in pyproject.toml, finds no error (README "Development")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.platform.test_architecture import _lay_out


def _mypy(tree: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "-p", "semon"],
        cwd=tree, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def test_mypy_finds_no_error_in_the_package(tmp_path: Path, cache: Path):
    run = _mypy(_lay_out(tmp_path), cache)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout


def test_a_type_error_fails_the_check(tmp_path: Path, cache: Path):
    tree = _lay_out(tmp_path)
    timeutil = tree / "semon" / "timeutil.py"
    timeutil.write_text(timeutil.read_text() + "\n\ndef _broken() -> int:\n    return 'not an int'\n")
    run = _mypy(tree, cache)
    assert run.returncode == 1
    assert "semon/timeutil.py" in run.stdout and "[return-value]" in run.stdout
