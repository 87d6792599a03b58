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


# --------------------------------------------------------------------------------------------
# no import circle in study/, function-local imports included
# --------------------------------------------------------------------------------------------
def module_names(root: Path) -> dict[str, Path]:
    """Every module below ``root`` (the folder holding the ``study`` package): name -> file."""
    out = {}
    for path in sorted((root / "study").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` if it is a module of ours, else its longest prefix that is (None: not ours)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules of ours it imports anywhere in its body (``from study.x import y``:
    ``study.x.y`` when that is a module, else ``study.x``)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_target(a.name, modules) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    targets.append(full if full in modules else _target(base, modules))
            graph[name].update(t for t in targets if t and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_circle_in_study_counting_function_local_imports():
    found = circles(import_graph(ROOT))
    assert not found, "import circles (function-local imports count): " + "; ".join(" <-> ".join(c) for c in found)


def test_the_circle_check_finds_a_circle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "study" / "probe"
    pkg.mkdir(parents=True)
    (tmp_path / "study" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from study.probe import b\n")
    (pkg / "b.py").write_text("def f():\n    from study.probe.c import g\n")
    (pkg / "c.py").write_text("def g():\n    from . import a\n")
    (pkg / "d.py").write_text("import study.probe.a\n")  # imports the circle, is not part of it
    assert circles(import_graph(tmp_path)) == [["study.probe.a", "study.probe.b", "study.probe.c"]]


# --------------------------------------------------------------------------------------------
# no package over 20% of study/'s lines
# --------------------------------------------------------------------------------------------
MAX_PACKAGE_SHARE = 0.20


def package_lines(root: Path) -> dict[str, int]:
    """Lines of code per top-level package of study/ (a top-level module counts as its own)."""
    out: dict[str, int] = {}
    for path in (root / "study").rglob("*.py"):
        top = path.relative_to(root / "study").parts[0].removesuffix(".py")
        out[top] = out.get(top, 0) + path.read_text().count("\n")
    return out


def test_no_package_over_a_fifth_of_the_code():
    lines = package_lines(ROOT)
    total = sum(lines.values())
    over = {p: f"{n / total:.1%}" for p, n in lines.items() if n > MAX_PACKAGE_SHARE * total}
    assert not over, (
        f"packages over {MAX_PACKAGE_SHARE:.0%} of study/'s {total} lines: {over} (issue 19: split by concept)"
    )
