"""The repository explains itself: no tracked file names a file outside it (the project's private
notes) or an absolute path of a development machine. What the code relies on is in docs/paper.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Written in pieces so that this file does not match itself.
FORBIDDEN = (
    "LITEVAE" + ".md",
    "DESIGN" + ".md",
    "ENVIRONMENT" + ".md",
    ".." + "/shared",
    "/" + "work/",
    "/" + "home/",
    "/" + "root/",
    "/" + "Users/",
)
PATTERN = re.compile("|".join(re.escape(f) for f in FORBIDDEN))


def repo_files() -> list[Path]:
    """Tracked files and untracked ones git does not ignore (what the next commit can hold)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    names = [n for n in out.stdout.decode().split("\0") if n]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def offending_lines(root: Path, paths: list[Path]) -> list[str]:
    """``file:line: text`` for every line of ``paths`` (relative to ``root``) naming a forbidden path."""
    hits = []
    for path in paths:
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (figures): no text to cite anything
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if PATTERN.search(line):
                hits.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return hits


def test_no_file_names_a_file_outside_the_repo_or_a_machine_path():
    hits = offending_lines(ROOT, repo_files())
    assert not hits, "cite docs/paper.md or the repo's own docs instead:\n" + "\n".join(hits)


def test_the_check_finds_a_forbidden_reference(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Facts from ' + "LITEVAE" + '.md."""\nx = 1\nPATH = "/' + 'home/me/data"\n')
    good = tmp_path / "good.py"
    good.write_text('"""Facts from docs/paper.md."""\n')
    png = tmp_path / "figure.png"
    png.write_bytes(b"\x89PNG\0/" + b"home/")
    hits = [h.split(": ", 1)[0] for h in offending_lines(tmp_path, [bad, good, png])]
    assert hits == ["bad.py:1", "bad.py:3"]
