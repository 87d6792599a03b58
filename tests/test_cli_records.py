"""Reports and indexes a wrong flag cannot wipe (issue 21, item 4): one index per study and
profile; `collect`, `report` and `status` of variants without a record exit 1, say what exists
instead and leave every file as it was; a report of another results folder goes to that folder's
own reports; a corrupt record is one line naming its file; `paper.rows` keys are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import run_study
from study import store
from tests.launch_helpers import cli_env, run_cli, write_study

STUDY = "records"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A one-variant tiny study run under its `smoke` profile with the debug executor, its
    results and reports in a folder of their own: (study file, results, reports)."""
    base = tmp_path_factory.mktemp("records")
    spec = write_study(base, STUDY, profiles={"smoke": {"train.steps": 2, "eval.num_images": 4}})
    results = base / "results"
    argv = ["run", str(spec), "--profile", "smoke", "--executor", "debug", "--results", str(results), "--poll", "0.1"]
    assert run_study.main(argv) == 0
    return spec, results, base / "reports"


def _snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def test_profiles_keep_their_own_index_and_reports_go_beside_the_results(finished):
    spec, results, reports = finished
    assert store.index_path(results, STUDY, "smoke") == results / STUDY / "index-smoke.json"
    assert json.loads((results / STUDY / "index-smoke.json").read_text())["profile"] == "smoke"
    assert not (results / STUDY / "index.json").exists()  # the plain study was never launched
    assert (reports / STUDY / "report.html").is_file() and (reports / "index.html").is_file()
    assert not (Path(run_study.__file__).parent / "reports" / STUDY).exists()  # not this checkout's


@pytest.mark.parametrize(
    "command, flags",
    [
        ("report", []),  # the plain study: never launched
        ("report", ["--profile", "smoke", "--set", "train.steps=3"]),  # a changed --set
        ("collect", []),
        ("status", ["--profile", "smoke", "--set", "train.batch_size=2"]),
    ],
)
def test_variants_without_a_record_exit_1_and_overwrite_nothing(finished, command, flags, capsys):
    spec, results, reports = finished
    before = _snapshot(results / STUDY, reports)
    assert run_study.main([command, str(spec), "--results", str(results), *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "no run of these 1 variant(s)" in err[0] and "1 completed run(s) exist under `--profile smoke`" in err[0]
    assert _snapshot(results / STUDY, reports) == before


def test_a_study_never_run_anywhere_says_so(tmp_path, capsys):
    spec = write_study(tmp_path, "never")
    assert run_study.main(["report", str(spec), "--results", str(tmp_path / "results")]) == 1
    assert "the study was never launched there" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()


def test_a_corrupt_record_is_one_line_naming_the_file(finished, tmp_path):
    import shutil

    spec, results, _ = finished
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    broken = next(copy.glob("runs/*/eval/*.json"))
    broken.write_text('{"metrics": ')
    proc = run_cli("collect", str(spec), "--profile", "smoke", env=cli_env(copy))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert warnings == [w for w in warnings if w.startswith("warning: corrupt record skipped: ")], warnings
    assert len(warnings) == 1 and str(broken) in warnings[0]


def test_paper_rows_must_name_variants(tmp_path, capsys):
    spec = write_study(
        tmp_path, "rows", zip=[{"train.lr": [1e-4, 2e-4]}], paper={"table": "4", "rows": {"nope": "SMC"}}
    )
    assert run_study.main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "paper.rows.nope" in err and "a variant name" in err
