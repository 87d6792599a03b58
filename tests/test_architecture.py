"""The import rules of docs/architecture.md, as import-linter contracts in pyproject.toml: they
hold for the code, and a forbidden import breaks them (so the check can fail)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(cwd / "pyproject.toml")],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT.exists():
        pytest.fail(f"import-linter is a dev dependency; {LINT} is missing (pip install -e '.[dev]')")


def test_the_code_keeps_every_contract(lint_available):
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" not in out.stdout.split("Contracts:")[-1].split("\n")[0].replace("0 broken", "")


@pytest.mark.parametrize(
    "module, imports, contract",
    [
        ("study/models/_probe.py", "import study.config", "layers"),
        ("study/measure/_probe.py", "import study.autoencoder.loop", "layers"),
        ("study/report/_probe.py", "import study.studyfile.grid", "reads records only"),
        ("study/models/_probe.py", "import pandas", "leaf"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(lint_available, tmp_path, module, imports, contract):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "study", copy / "study", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / module).write_text(f'"""A probe that breaks the rules."""\n{imports}\n')
    out = lint(copy)
    assert out.returncode == 1, out.stdout
    assert module[:-3].replace("/", ".") in out.stdout
    assert contract in out.stdout.replace("\n", " ")


def test_no_module_over_500_lines_and_no_function_over_80():
    long_modules, long_functions = [], []
    for path in sorted((ROOT / "study").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 500:
            long_modules.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions
