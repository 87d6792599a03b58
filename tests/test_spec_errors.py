"""Malformed study files: exit code 2, the file and the key path in the message, something of the
allowed set, nothing on stdout for --json, and nothing written under the results folder.

Most cases run ``run_study.main`` in process (fast); a few run the real command in a subprocess.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

import run_study
from study.studyfile.parse import StudyFileError, load_study

REPO = Path(__file__).resolve().parent.parent

# (id, files {name: text} (study.yaml is the study), command, key path, fragments of the message)
CASES = [
    (
        "unknown-top-key",
        {"study.yaml": "study: t\ngird: {model.decoder.norm: [smc]}\n"},
        "plan",
        "gird",
        ["did you mean 'grid'", "top-level keys"],
    ),
    (
        "baseline-not-a-variant",
        {
            "study.yaml": "study: t\npaper: {table: '4', baseline: norm=sm}\ngrid: {model.decoder.norm: [groupnorm, smc]}\n"
        },
        "plan",
        "paper.baseline",
        ["a variant name: norm=groupnorm, norm=smc"],
    ),
    (
        "unknown-config-key",
        {"study.yaml": "study: t\nset: {model.decoder.nrom: smc}\n"},
        "plan",
        "set.model.decoder.nrom",
        ["did you mean 'model.decoder.norm'"],
    ),
    (
        "unknown-axis-key",
        {"study.yaml": "study: t\ngrid: {train.batchsize: [1, 2]}\n"},
        "status",
        "grid.train.batchsize",
        ["did you mean 'train.batch_size'"],
    ),
    (
        "unknown-nested-key",
        {"study.yaml": "study: t\nset: {model: {decoder: {nrom: smc}}}\n"},
        "plan",
        "set.model.decoder.nrom",
        ["did you mean 'model.decoder.norm'"],
    ),
    (
        "section-as-leaf",
        {"study.yaml": "study: t\nset: {model.decoder: smc}\n"},
        "plan",
        "set.model.decoder",
        ["a leaf key below this section"],
    ),
    (
        "string-for-int",
        {"study.yaml": "study: t\nset: {train.batch_size: '16'}\n"},
        "plan",
        "set.train.batch_size",
        ["got '16'", "an integer"],
    ),
    (
        "int-for-bool",
        {"study.yaml": "study: t\nset: {data.hflip: 1}\n"},
        "collect",
        "set.data.hflip",
        ["true or false"],
    ),
    (
        "non-integral-float-for-int",
        {"study.yaml": "study: t\nset: {train.steps: 10.5}\n"},
        "plan",
        "set.train.steps",
        ["got 10.5", "an integer"],
    ),
    (
        "list-item-type",
        {"study.yaml": "study: t\nset: {model.encoder.levels: [1, a]}\n"},
        "plan",
        "set.model.encoder.levels[1]",
        ["got 'a'", "an integer"],
    ),
    (
        "stage-unknown-field",
        {"study.yaml": "study: t\nset: {train.stages: [{resolution: 64, stepz: 1}]}\n"},
        "plan",
        "set.train.stages[0].stepz",
        ["did you mean 'steps'"],
    ),
    (
        "value-outside-literal",
        {"study.yaml": "study: t\ngrid: {model.decoder.norm: [groupnorm, batchnorm]}\n"},
        "plan",
        "grid.model.decoder.norm[1]",
        ["got 'batchnorm'", "'groupnorm', 'smc'"],
    ),
    (
        "zip-unequal-lengths",
        {"study.yaml": "study: t\nzip: [{model.decoder.norm: [groupnorm, smc], train.batch_size: [1]}]\n"},
        "plan",
        "zip[0]",
        ["equal length"],
    ),
    (
        "exclude-unknown-key",
        {
            "study.yaml": "study: t\ngrid: {model.decoder.norm: [groupnorm, smc]}\nexclude: [{model.decoder.nrom: smc}]\n"
        },
        "plan",
        "exclude[0].model.decoder.nrom",
        ["an axis of grid or zip: model.decoder.norm", "did you mean"],
    ),
    (
        "exclude-non-axis-key",
        {"study.yaml": "study: t\ngrid: {model.decoder.norm: [groupnorm, smc]}\nexclude: [{train.steps: 5}]\n"},
        "plan",
        "exclude[0].train.steps",
        ["an axis of grid or zip: model.decoder.norm"],
    ),
    (
        "exclude-value-not-on-axis",
        {"study.yaml": "study: t\ngrid: {train.steps: [1, 2]}\nexclude: [{train.steps: 3}]\n"},
        "plan",
        "exclude[0].train.steps",
        ["got 3", "the axis values 1, 2"],
    ),
    (
        "exclude-removes-everything",
        {"study.yaml": "study: t\ngrid: {train.steps: [1, 2]}\nexclude: [{train.steps: 1}, {train.steps: 2}]\n"},
        "status",
        "exclude",
        ["at least one row"],
    ),
    ("empty-grid", {"study.yaml": "study: t\ngrid: {}\n"}, "plan", "grid", ["non-empty mapping"]),
    (
        "empty-axis",
        {"study.yaml": "study: t\ngrid: {model.decoder.norm: []}\n"},
        "plan",
        "grid.model.decoder.norm",
        ["at least one value"],
    ),
    (
        "axis-not-a-list",
        {"study.yaml": "study: t\ngrid: {train.steps: 5}\n"},
        "plan",
        "grid.train.steps",
        ["a list of values"],
    ),
    (
        "yaml-duplicate-key",
        {"study.yaml": "study: t\ngrid:\n  model.decoder.norm: [smc]\n  model.decoder.norm: [groupnorm]\n"},
        "plan",
        "model.decoder.norm",
        ["line 4", "each key once per mapping"],
    ),
    (
        "nested-and-dotted-same-key",
        {"study.yaml": "study: t\nset:\n  model.decoder.norm: smc\n  model: {decoder: {norm: groupnorm}}\n"},
        "plan",
        "set.model.decoder.norm",
        ["each key once per mapping"],
    ),
    ("study-name-uppercase", {"study.yaml": "study: Tee\n"}, "plan", "study", ["got 'Tee'", "lowercase"]),
    ("study-name-traversal", {"study.yaml": "study: ../x\n"}, "collect", "study", ["got '../x'", "lowercase"]),
    ("study-name-spaces", {"study.yaml": "study: a b\n"}, "status", "study", ["got 'a b'", "lowercase"]),
    (
        "missing-study",
        {"study.yaml": "grid: {model.decoder.norm: [smc]}\n"},
        "plan",
        "study",
        ["got None", "lowercase"],
    ),
    ("top-level-list", {"study.yaml": "- study\n- t\n"}, "plan", "<top>", ["a mapping with keys study"]),
    ("empty-file", {"study.yaml": ""}, "plan", "<top>", ["got None", "a mapping with keys study"]),
    ("invalid-yaml", {"study.yaml": "study: t\ngrid: {model.decoder.norm: [smc\n"}, "plan", "line 3", ["valid YAML"]),
    (
        "base-missing",
        {"study.yaml": "study: t\nbase: nope/base.yaml\n"},
        "plan",
        "base",
        ["got 'nope/base.yaml'", "an existing file"],
    ),
    (
        "variant-bad-name",
        {"study.yaml": "study: t\nvariants: {Bad Name: {model.decoder.norm: smc}}\n"},
        "plan",
        "variants.Bad Name",
        ["a variant name of lowercase"],
    ),
    (
        "variant-bad-key",
        {"study.yaml": "study: t\nvariants: {a: {model.decoder.norn: smc}}\n"},
        "plan",
        "variants.a.model.decoder.norn",
        ["did you mean 'model.decoder.norm'"],
    ),
    (
        "unknown-preset",
        {"study.yaml": "study: t\nvariants: {a: {preset: LiteVAE-X}}\n"},
        "plan",
        "variants.a.preset",
        ["SD-VAE", "did you mean 'LiteVAE-"],
    ),
    (
        "misspelt-preset-key",
        {"study.yaml": "study: t\nvariants: {a: {presett: SD-VAE}}\n"},
        "plan",
        "variants.a.presett",
        ["did you mean 'preset'"],
    ),
    ("seeds-not-a-list", {"study.yaml": "study: t\nseeds: 3\n"}, "plan", "seeds", ["non-negative integers"]),
    ("seeds-negative", {"study.yaml": "study: t\nseeds: [0, -1]\n"}, "plan", "seeds", ["non-negative integers"]),
    ("seeds-duplicate", {"study.yaml": "study: t\nseeds: [1, 1]\n"}, "plan", "seeds", ["distinct seeds"]),
    ("seeds-bool", {"study.yaml": "study: t\nseeds: [true]\n"}, "plan", "seeds", ["non-negative integers"]),
    (
        "resources-unknown-key",
        {"study.yaml": "study: t\nresources: {gpu: 1}\n"},
        "plan",
        "resources.gpu",
        ["did you mean 'gpus'", "cpus_per_gpu"],
    ),
    (
        "resources-negative",
        {"study.yaml": "study: t\nresources: {mem_gb: -1}\n"},
        "plan",
        "resources.mem_gb",
        ["got -1", "an integer >= 1"],
    ),
    (
        "resources-gpus-negative",
        {"study.yaml": "study: t\nresources: {gpus: -2}\n"},
        "plan",
        "resources.gpus",
        ["an integer >= 0"],
    ),
    (
        "bad-sbatch-option",
        {"study.yaml": "study: t\nresources: {sbatch: ['--qos=x', exclusive]}\n"},
        "plan",
        "resources.sbatch[1]",
        ["got 'exclusive'", "--key=value"],
    ),
    (
        "paper-table-unknown",
        {"study.yaml": "study: t\npaper: {table: '99'}\n"},
        "plan",
        "paper.table",
        ["got '99'", "2a"],
    ),
    (
        "paper-unknown-key",
        {"study.yaml": "study: t\npaper: {table: '4', row: {}}\n"},
        "plan",
        "paper.row",
        ["keys table, rows"],
    ),
    (
        "cross-resolution-not-multiple-of-8",
        {"study.yaml": "study: t\nset: {data.resolution: 30}\n"},
        "plan",
        "set: data.resolution",
        ["got 30", "multiple of 8"],
    ),
    (
        "cross-levels-4",
        {"study.yaml": "study: t\nset: {model.encoder.levels: [4]}\n"},
        "plan",
        "set: model.encoder.levels",
        ["got [4]", "from 1, 2, 3"],
    ),
    (
        "cross-levels-decreasing",
        {"study.yaml": "study: t\nset: {model.encoder.levels: [3, 2]}\n"},
        "status",
        "set: model.encoder.levels",
        ["got [3, 2]", "increasing order"],
    ),
    (
        "cross-stages-sum",
        {
            "study.yaml": "study: t\nset: {train.steps: 100, train.stages: [{resolution: 128, steps: 50},"
            " {resolution: 256, steps: 40}]}\n"
        },
        "plan",
        "set: train.stages",
        ["add up to train.steps (100)"],
    ),
    (
        "cross-in-grid-row",
        {"study.yaml": "study: t\ngrid: {data.resolution: [32, 36]}\n"},
        "collect",
        "grid: data.resolution",
        ["got 36", "multiple of 8"],
    ),
    (
        "axis-duplicate-values",
        {"study.yaml": "study: t\ngrid: {train.lr: [1.0e-4, 0.0001]}\n"},
        "plan",
        "grid.train.lr[1]",
        ["distinct values per axis"],
    ),
    (
        "axis-duplicate-int-spellings",
        {"study.yaml": "study: t\ngrid: {train.steps: [1, 1.0]}\n"},
        "plan",
        "grid.train.steps[1]",
        ["distinct values per axis"],
    ),
    (
        "axis-in-grid-and-zip",
        {
            "study.yaml": "study: t\ngrid: {train.steps: [1, 2]}\nzip: [{train.steps: [3, 4], train.batch_size: [1, 2]}]\n"
        },
        "plan",
        "zip[0].train.steps",
        ["an axis varied in one place only"],
    ),
    (
        "axis-in-grid-and-set",
        {"study.yaml": "study: t\nset: {train.steps: 5}\ngrid: {train.steps: [1, 2]}\n"},
        "plan",
        "grid.train.steps",
        ["not also fixed under `set`"],
    ),
    (
        "zip-duplicate-rows",
        {"study.yaml": "study: t\nzip: [{train.steps: [1, 1], train.batch_size: [2, 2]}]\n"},
        "plan",
        "zip[0][1]",
        ["distinct rows"],
    ),
    ("description-not-string", {"study.yaml": "study: t\ndescription: [a]\n"}, "plan", "description", ["a string"]),
    (
        "bad-key-in-base-file",
        {"study.yaml": "study: t\nbase: base/b.yaml\n", "base/b.yaml": "model: {decoder: {nrom: smc}}\n"},
        "plan",
        "base.model.decoder.nrom",
        ["did you mean 'model.decoder.norm'"],
    ),
    (
        "bad-value-in-base-file",
        {"study.yaml": "study: t\nbase: base/b.yaml\n", "base/b.yaml": "train: {steps: many}\n"},
        "status",
        "base.train.steps",
        ["got 'many'", "an integer"],
    ),
    (
        "profile-bad-value",
        {"study.yaml": "study: t\nprofiles: {smoke: {data.resolution: thirty}}\n"},
        "plan",
        "profiles.smoke.data.resolution",
        ["an integer"],
    ),
    # `seeds` would silently replace a seed set anywhere else in the file
    (
        "seed-in-set",
        {"study.yaml": "study: t\nset: {seed: 3}\nseeds: [0, 1]\n"},
        "plan",
        "set.seed",
        ["top-level `seeds` list"],
    ),
    (
        "seed-as-axis",
        {"study.yaml": "study: t\ngrid: {seed: [1, 2]}\n"},
        "plan",
        "grid.seed",
        ["top-level `seeds` list"],
    ),
    (
        "seed-in-variant",
        {"study.yaml": "study: t\nvariants: {a: {seed: 4, train.steps: 2}}\n"},
        "plan",
        "variants.a.seed",
        ["top-level `seeds` list"],
    ),
    (
        "seed-in-base-file",
        {"study.yaml": "study: t\nbase: base/b.yaml\n", "base/b.yaml": "seed: 9\n"},
        "plan",
        "base.seed",
        ["top-level `seeds` list"],
    ),
    (
        "negative-seed-in-profile",
        {"study.yaml": "study: t\nprofiles: {p: {seed: -3}}\n"},
        "plan",
        "profiles.p.seed",
        ["got -3", "a non-negative integer"],
    ),
]

# Cases whose error names a file other than study.yaml
ERROR_FILE = {
    "bad-key-in-base-file": "base/b.yaml",
    "bad-value-in-base-file": "base/b.yaml",
    "seed-in-base-file": "base/b.yaml",
}


def _write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "study.yaml"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _argv(command: str, spec: Path, results: Path, *extra: str) -> list[str]:
    argv = [command, str(spec), "--results", str(results), *extra]
    return argv + ["--json"] if command in ("plan", "status") else argv


def test_at_least_25_cases_with_distinct_ids():
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_study_exits_2_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    name, files, command, key, fragments = case
    spec = _write(tmp_path, files)
    monkeypatch.chdir(tmp_path)  # a default ./results would land here too
    monkeypatch.delenv("LITEVAE_RESULTS", raising=False)
    before = _snapshot(tmp_path)

    rc = run_study.main(_argv(command, spec, tmp_path / "results"))
    out, err = capsys.readouterr()

    assert rc == 2
    assert out == ""  # --json: nothing on stdout; the other commands print nothing either
    assert err.startswith("error: ") and err.count("\n") == 1, err
    bad_file = (tmp_path / ERROR_FILE[name]).resolve() if name in ERROR_FILE else spec
    assert f"{bad_file}: {key}: " in err, err  # the file, then the exact key path
    assert "allowed: " in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "results").exists()
    assert _snapshot(tmp_path) == before  # nothing written anywhere under the tmp dir


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_carries_key_path(case, tmp_path):
    """The library raises StudyFileError whose .key is the key path the CLI prints."""
    from study.studyfile.grid import expand

    name, files, _, key, _ = case
    spec = _write(tmp_path, files)
    with pytest.raises(StudyFileError) as info:
        expand(load_study(spec))
    assert info.value.key == key
    expected_path = (tmp_path / ERROR_FILE[name]).resolve() if name in ERROR_FILE else spec
    assert Path(info.value.path) == expected_path


def test_unknown_profile_names_the_defined_ones(tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path, {"study.yaml": "study: t\nprofiles: {smoke: {train.steps: 2}, tiny: {train.steps: 1}}\n"})
    monkeypatch.chdir(tmp_path)
    rc = run_study.main(_argv("plan", spec, tmp_path / "results", "--profile", "nope"))
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert f"{spec}: profiles: got 'nope'" in err and "smoke, tiny" in err
    assert list(tmp_path.iterdir()) == [spec]


def test_profile_breaking_a_cross_field_check(tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path, {"study.yaml": "study: t\nprofiles: {smoke: {data.resolution: 36}}\n"})
    monkeypatch.chdir(tmp_path)
    assert run_study.main(_argv("plan", spec, tmp_path / "results")) == 0  # fine without it
    capsys.readouterr()
    rc = run_study.main(_argv("collect", spec, tmp_path / "results", "--profile", "smoke"))
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert "with profile smoke" in err and "data.resolution: got 36" in err
    assert not (tmp_path / "results").exists()


def test_missing_study_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "absent.yaml"
    rc = run_study.main(_argv("plan", spec, tmp_path / "results"))
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert f"{spec}: <file>:" in err and "a readable study file" in err
    assert list(tmp_path.iterdir()) == []


# the bytes of a file that is not UTF-8 text: random bytes (a binary file given by mistake), and
# text saved in Latin-1 (an "é" in the description, on line 2)
UNDECODABLE = {
    "binary": (random.Random(0).randbytes(2048), "line 1"),
    "latin-1": ("study: t\ndescription: caf\u00e9 au lait\n".encode("latin-1"), "line 2"),
}


@pytest.mark.parametrize("kind", list(UNDECODABLE))
def test_a_file_that_is_not_utf8_text_exits_2_naming_it(kind, tmp_path, monkeypatch, capsys):
    data, where = UNDECODABLE[kind]
    spec = tmp_path / "study.yaml"
    spec.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    rc = run_study.main(_argv("plan", spec, tmp_path / "results"))
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith(f"error: {spec}: {where}: ") and err.count("\n") == 1, err
    assert "not UTF-8 text" in err and "allowed: a UTF-8 text file" in err
    assert list(tmp_path.iterdir()) == [spec]


def test_a_base_file_that_is_not_utf8_text_is_named(tmp_path):
    spec = _write(tmp_path, {"study.yaml": "study: t\nbase: b.yaml\n"})
    (tmp_path / "b.yaml").write_bytes("train: {steps: 5}\n# r\u00e9sum\u00e9\n".encode("latin-1"))
    with pytest.raises(StudyFileError, match="not UTF-8 text") as info:
        load_study(spec)
    assert Path(info.value.path) == (tmp_path / "b.yaml").resolve() and info.value.key == "line 2"


def test_utf8_text_with_a_byte_order_mark_and_accents_is_read(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_bytes("\ufeffstudy: t\ndescription: caf\u00e9\n".encode("utf-8"))
    assert load_study(spec).description == "caf\u00e9"


def test_a_control_character_is_one_line_naming_its_line(tmp_path, monkeypatch, capsys):
    spec = _write(tmp_path, {"study.yaml": "study: t\ndescription: a\x00b\n"})
    monkeypatch.chdir(tmp_path)
    assert run_study.main(_argv("plan", spec, tmp_path / "results")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec}: line 2: ") and err.count("\n") == 1, err


# --------------------------------------------------------------------------------------------
# --set seed=N replaces the study's seeds list
# --------------------------------------------------------------------------------------------
def _plan(spec: Path, *extra: str, capsys) -> dict:
    import json

    assert run_study.main(["plan", str(spec), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_set_seed_replaces_the_seeds_list(tmp_path, capsys):
    grid = "grid: {model.decoder.norm: [groupnorm, smc]}\n"
    spec = _write(tmp_path, {"study.yaml": "study: t\n" + grid + "seeds: [0, 1]\n"})
    (tmp_path / "s77.yaml").write_text("study: t\n" + grid + "seeds: [77]\n")
    plain = _plan(spec, capsys=capsys)
    assert plain["count"] == 4 and {v["seed"] for v in plain["variants"]} == {0, 1}
    plan = _plan(spec, "--set", "seed=77", capsys=capsys)
    assert plan["count"] == 2 and [v["seed"] for v in plan["variants"]] == [77, 77]
    # the same runs as a study that lists seed 77 itself
    assert [v["id"] for v in plan["variants"]] == [
        v["id"] for v in _plan(tmp_path / "s77.yaml", capsys=capsys)["variants"]
    ]
    assert not {v["id"] for v in plan["variants"]} & {v["id"] for v in plain["variants"]}


def test_set_seed_on_the_embedded_default_in_a_subprocess(tmp_path):
    """The reported bug: `plan ablations/smoke.yaml --set seed=77` kept seed 0."""
    import json

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "run_study.py"),
            "plan",
            str(REPO / "ablations" / "smoke.yaml"),
            "--set",
            "seed=77",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert {v["seed"] for v in json.loads(proc.stdout)["variants"]} == {77}
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "run_study.py"),
            "plan",
            str(REPO / "ablations" / "smoke.yaml"),
            "--set",
            "seed=-2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == "" and "--set seed: got -2" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_profile_seed_replaces_the_list_and_set_seed_wins_over_it(tmp_path, capsys):
    spec = _write(tmp_path, {"study.yaml": "study: t\nseeds: [0, 1, 2]\nprofiles: {one: {seed: 5}}\n"})
    assert [v["seed"] for v in _plan(spec, "--profile", "one", capsys=capsys)["variants"]] == [5]
    assert [v["seed"] for v in _plan(spec, "--profile", "one", "--set", "seed=6", capsys=capsys)["variants"]] == [6]


def test_valid_study_still_plans(tmp_path, monkeypatch, capsys):
    """The control: the minimal study the cases mutate is accepted (so they fail for their reason)."""
    spec = _write(
        tmp_path,
        {
            "study.yaml": "study: t\ngrid: {model.decoder.norm: [groupnorm, smc]}\n"
            "seeds: [0, 1]\nresources: {sbatch: ['--exclusive']}\n"
        },
    )
    monkeypatch.chdir(tmp_path)
    assert run_study.main(_argv("plan", spec, tmp_path / "results")) == 0
    import json

    assert json.loads(capsys.readouterr().out)["count"] == 4
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------------------------
# the real command, in subprocesses (started together: each pays Python's and the imports' start)
# --------------------------------------------------------------------------------------------
SUBPROCESS_CASES = ["unknown-top-key", "bad-key-in-base-file"]  # and a missing and a binary study file


def test_real_command_in_subprocesses(tmp_path):
    by_name = {c[0]: c for c in CASES}
    procs = []
    for name in SUBPROCESS_CASES + ["missing-file", "binary-file"]:
        folder = tmp_path / name
        folder.mkdir()
        if name == "missing-file":
            spec, command, key = folder / "absent.yaml", "status", "<file>"
        elif name == "binary-file":
            spec, command, key = folder / "study.yaml", "plan", UNDECODABLE["binary"][1]
            spec.write_bytes(UNDECODABLE["binary"][0])
        else:
            _, files, command, key, _ = by_name[name]
            spec = _write(folder, files)
        before = _snapshot(folder)
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "run_study.py"), *_argv(command, spec, folder / "results")],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        bad_file = (folder / ERROR_FILE[name]).resolve() if name in ERROR_FILE else spec
        procs.append((name, folder, before, bad_file, key, proc))
    for name, folder, before, bad_file, key, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert out == "", name
        assert "Traceback" not in err
        assert f"{bad_file}: {key}: " in err, (name, err)
        assert not (folder / "results").exists()
        assert _snapshot(folder) == before
