"""The code explains itself in short and the docs point at real files: no module docstring in study/
is over 12 lines (the design text is in docs/), every study/ path the docs, the README or study/'s
own text names exists, and so does every ``study.x`` module the docs and the README name and every
heading they cite as ``docs/page.md, "Heading"``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_DOCSTRING_LINES = 12
# A path inside study/ (a .py file or a folder), not part of a longer path or a dotted name.
PATH = re.compile(r"(?<![\w/.-])(study(?:/\w+)*(?:\.py|/))")
# A dotted module name, study.x[.y...]; the words after the modules may be attributes.
MODULE = re.compile(r"(?<![\w/.-])(study(?:\.[A-Za-z_]\w*)+)")
# A cited section: docs/page.md, "Heading" (the heading's text may go on, e.g. with the module's path).
SECTION = re.compile(r'docs/(\w+\.md),?\s+"([^"]+)"')


def long_docstrings(root: Path) -> list[str]:
    """``path: N lines`` for every module below ``root`` whose docstring is over the limit."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if doc is not None and len(doc.splitlines()) > MAX_DOCSTRING_LINES:
            hits.append(f"{path.relative_to(root.parent)}: {len(doc.splitlines())} lines")
    return hits


def names_a_module(root: Path, dotted: str) -> bool:
    """Whether ``dotted``'s first two or more words are a module or package of ``root``."""
    parts = dotted.split(".")
    for k in range(len(parts), 1, -1):
        base = root.joinpath(*parts[:k])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def stale_mentions(root: Path, paths: list[Path]) -> list[str]:
    """``file:line: name`` for every study/ path named in ``paths`` that is not in ``root``, and every
    study.x module named in its Markdown files (in code, ``study.x`` may be a variable's attribute)."""
    hits = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(root)}:{number}"
            hits += [f"{where}: {m}" for m in PATH.findall(line) if not (root / m).exists()]
            if path.suffix == ".md":
                hits += [f"{where}: {m}" for m in MODULE.findall(line) if not names_a_module(root, m)]
    return hits


def missing_sections(root: Path, paths: list[Path]) -> list[str]:
    """``file: docs/page.md, "Heading"`` for every cited section whose page has no heading starting so."""
    headings = {
        page.name: [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]
        for page in (root / "docs").glob("*.md")
    }
    hits = []
    for path in paths:
        text = re.sub(r"\s*\n\s*(#\s*)?", " ", path.read_text())  # a citation may wrap, in a comment too
        for page, heading in SECTION.findall(text):
            if not any(h.startswith(heading) for h in headings.get(page, [])):
                hits.append(f'{path.relative_to(root)}: docs/{page}, "{heading}"')
    return hits


def texts(root: Path) -> list[Path]:
    """The docs, the README and study/'s modules."""
    return sorted((root / "docs").glob("*.md")) + [root / "README.md"] + sorted((root / "study").rglob("*.py"))


def test_no_module_docstring_in_study_is_over_twelve_lines():
    hits = long_docstrings(ROOT / "study")
    assert not hits, "say what the module is in a few lines; the design text goes to docs/:\n" + "\n".join(hits)


def test_every_study_path_the_docs_and_the_code_name_exists():
    hits = stale_mentions(ROOT, texts(ROOT))
    assert not hits, "these name files or modules that are not in study/:\n" + "\n".join(hits)


def test_every_section_the_docs_and_the_code_cite_is_a_heading():
    hits = missing_sections(ROOT, texts(ROOT))
    assert not hits, "these cite a heading their page does not have:\n" + "\n".join(hits)


def test_the_checks_find_a_long_docstring_and_stale_names(tmp_path):
    study = tmp_path / "study"
    (study / "pkg").mkdir(parents=True)
    (study / "__init__.py").write_text("")
    (study / "pkg" / "__init__.py").write_text("")
    (study / "pkg" / "short.py").write_text('"""One line, beside study/pkg/gone.py."""\nstudy.old = 1\n')
    long_text = "\n".join(f"line {i}" for i in range(MAX_DOCSTRING_LINES + 1))
    (study / "pkg" / "essay.py").write_text(f'"""{long_text}\n"""\n')
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "See study/pkg/short.py and `study.pkg.short.f`.\nGone: study/pkg/old.py, study/gone/, study.old.module.\n"
    )
    (tmp_path / "README.md").write_text("study/pkg/ holds it.\n")
    assert long_docstrings(study) == [f"study/pkg/essay.py: {MAX_DOCSTRING_LINES + 1} lines"]
    assert stale_mentions(tmp_path, texts(tmp_path)) == [
        "docs/a.md:2: study/pkg/old.py",
        "docs/a.md:2: study/gone/",
        "docs/a.md:2: study.old.module",
        "study/pkg/short.py:1: study/pkg/gone.py",
    ]


def test_the_section_check_finds_a_heading_that_is_not_there(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## The cache (`study/x.py`)\n")
    (tmp_path / "study" / "x.py").write_text(
        '"""Details: docs/a.md, "The cache"; docs/a.md,\n"The store"; docs/b.md, "The cache"."""\n'
    )
    (tmp_path / "README.md").write_text('# # see docs/a.md, "The\n# cache"\n')
    assert missing_sections(tmp_path, texts(tmp_path)) == [
        'study/x.py: docs/a.md, "The store"',
        'study/x.py: docs/b.md, "The cache"',
    ]
