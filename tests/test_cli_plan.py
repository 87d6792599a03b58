"""`run_study.py plan ablations/example_sweep.yaml --json`: the count is product x zip length -
excluded + named variants, times seeds; ids are the same across runs, across a reordering of
the YAML keys and across spellings of the same numbers (1e-4 / 0.0001, 1 / 1.0)."""

from __future__ import annotations

import gc
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import run_study
from study.studyfile.grid import expected_count
from study.studyfile.parse import load_study

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "ablations" / "example_sweep.yaml"


def _count_from_yaml(doc: dict) -> int:
    """An independent reading of the study file's arithmetic (no study/ code)."""
    axes = [[{k: v} for v in vals] for k, vals in doc.get("grid", {}).items()]
    for group in doc.get("zip", []):
        (length,) = {len(v) for v in group.values()}
        axes.append([{k: vals[i] for k, vals in group.items()} for i in range(length)])
    rows = [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*axes)]
    kept = [r for r in rows if not any(all(r[k] == v for k, v in e.items()) for e in doc.get("exclude", []))]
    return (len(kept) + len(doc.get("variants", {}))) * len(doc.get("seeds", [0]))


def _reverse_keys(node):
    """Every mapping's keys in reverse order (lists keep theirs: they are ordered data)."""
    if isinstance(node, dict):
        return {k: _reverse_keys(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [_reverse_keys(v) for v in node]
    return node


def _copy_study(folder: Path, doc: dict, base_doc: dict | None = None) -> Path:
    """The study ``doc`` in ``folder`` with its base file (reordered or not) beside it."""
    base_rel = doc["base"]
    (folder / base_rel).parent.mkdir(parents=True, exist_ok=True)
    if base_doc is None:
        shutil.copy(SWEEP.parent / base_rel, folder / base_rel)
    else:
        (folder / base_rel).write_text(yaml.safe_dump(base_doc, sort_keys=False))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _plan(capsys, spec: Path, *extra: str) -> dict:
    assert run_study.main(["plan", str(spec), "--json", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def _id_to_axes(plan: dict) -> dict[str, tuple]:
    return {v["id"]: (v["seed"], v["source"], tuple(sorted(v["axes"].items(), key=str))) for v in plan["variants"]}


# --------------------------------------------------------------------------------------------
# the real command, in subprocesses
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_plans(tmp_path_factory):
    """The real command on example_sweep.yaml and on a key-reordered copy, started together,
    each from an empty working directory (its own process: its own hash seed)."""
    tmp = tmp_path_factory.mktemp("cli")
    doc = yaml.safe_load(SWEEP.read_text())
    base_doc = yaml.safe_load((SWEEP.parent / doc["base"]).read_text())
    copy = _copy_study(tmp / "reordered", _reverse_keys(doc), _reverse_keys(base_doc))
    jobs = [("first", SWEEP), ("reordered", copy)]
    procs = []
    for name, spec in jobs:
        cwd = tmp / f"cwd-{name}"
        cwd.mkdir()
        procs.append(
            (
                name,
                cwd,
                subprocess.Popen(
                    [sys.executable, str(REPO / "run_study.py"), "plan", str(spec), "--json"],
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    out = {}
    for name, cwd, proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert list(cwd.iterdir()) == [], "plan must not write anything"
        out[name] = json.loads(stdout)  # stdout is exactly one JSON document
    return out


def test_plan_json_count_is_the_study_arithmetic(cli_plans):
    plan = cli_plans["first"]
    doc = yaml.safe_load(SWEEP.read_text())
    # Sanity: the example uses every feature the count formula has a term for.
    assert doc["grid"] and doc["zip"] and doc["exclude"] and doc["variants"] and len(doc["seeds"]) > 1
    expected = _count_from_yaml(doc)
    assert plan["count"] == len(plan["variants"]) == expected
    assert expected == expected_count(load_study(SWEEP))
    assert [v["index"] for v in plan["variants"]] == list(range(expected))
    assert plan["study"] == doc["study"]


def test_plan_json_variants_are_complete_and_distinct(cli_plans):
    variants = cli_plans["first"]["variants"]
    doc = yaml.safe_load(SWEEP.read_text())
    ids = [v["id"] for v in variants]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)
    assert {v["seed"] for v in variants} == set(doc["seeds"])
    named = [v for v in variants if v["source"] == "variant"]
    assert sorted({v["name"] for v in named}) == sorted(doc["variants"])
    assert len(named) == len(doc["variants"]) * len(doc["seeds"])
    for v in variants:
        assert set(v) >= {"index", "id", "name", "seed", "source", "aliases", "axes"}
        for entry in doc["exclude"]:  # no excluded row is planned
            assert not all(v["axes"].get(k) == x for k, x in entry.items()), v


def _without_cache_counts(plan: dict) -> dict:
    """The plan without how many model sides this call counted or found cached (a diagnostic of
    the cost cache, which a process that planned before has warm)."""
    return plan | {"cost": {k: v for k, v in plan["cost"].items() if k != "cache"}}


def test_plan_ids_identical_across_two_runs(cli_plans, capsys):
    """The subprocess's plan and this process's plan (another hash seed) are the same document."""
    assert _without_cache_counts(_plan(capsys, SWEEP)) == _without_cache_counts(cli_plans["first"])


def test_plan_ids_identical_after_reordering_keys(cli_plans):
    first, reordered = cli_plans["first"], cli_plans["reordered"]
    assert reordered["count"] == first["count"]
    assert _id_to_axes(reordered) == _id_to_axes(first)
    # the reordering really changed the file order (grid axes reversed -> a different row order)
    assert [v["id"] for v in reordered["variants"]] != [v["id"] for v in first["variants"]]


# --------------------------------------------------------------------------------------------
# in process: spellings of the same values
# --------------------------------------------------------------------------------------------
def test_number_spellings_give_the_same_ids(tmp_path, capsys):
    original = _plan(capsys, SWEEP)
    doc = yaml.safe_load(SWEEP.read_text())

    # The defaults (lr 1e-4, l1 weight 1.0, kl 1e-6) written out: the same configs, the same ids.
    a = dict(doc, set={**doc["set"], "train.lr": "__LR__", "loss.l1_weight": 1, "loss.kl_weight": "__KL__"})
    path_a = _copy_study(tmp_path / "a", a)
    path_a.write_text(path_a.read_text().replace("__LR__", "1e-4").replace("__KL__", "1e-6"))
    # Reordered, every number spelt differently: 0.0001, 1.0, 0.000001, batch sizes as 32.0.
    b = _reverse_keys(a)
    b["zip"] = [{k: ([float(x) for x in v] if k == "train.batch_size" else v) for k, v in g.items()} for g in b["zip"]]
    path_b = _copy_study(tmp_path / "b", b)
    path_b.write_text(
        path_b.read_text()
        .replace("__LR__", "0.0001")
        .replace("__KL__", "0.000001")
        .replace("loss.l1_weight: 1\n", "loss.l1_weight: 1.0\n")
    )
    assert "1e-4" in path_a.read_text() and "0.0001" in path_b.read_text()
    assert "loss.l1_weight: 1.0" in path_b.read_text() and "32.0" in path_b.read_text()

    plan_a, plan_b = _plan(capsys, path_a), _plan(capsys, path_b)
    ids = sorted(v["id"] for v in original["variants"])
    assert sorted(v["id"] for v in plan_a["variants"]) == ids
    assert sorted(v["id"] for v in plan_b["variants"]) == ids


def test_a_changed_value_changes_the_ids(tmp_path, capsys):
    """The control of the identity tests: a real change is seen."""
    original = {v["id"] for v in _plan(capsys, SWEEP)["variants"]}
    doc = yaml.safe_load(SWEEP.read_text())
    changed = _plan(capsys, _copy_study(tmp_path, dict(doc, set={**doc["set"], "train.lr": 2.0e-4})))
    assert original.isdisjoint(v["id"] for v in changed["variants"])


def test_non_identity_settings_keep_the_ids(tmp_path, capsys):
    original = _plan(capsys, SWEEP)
    doc = yaml.safe_load(SWEEP.read_text())
    doc = dict(
        doc,
        set={**doc["set"], "train.log_every": 7, "data.path": "/elsewhere", "eval.num_images": 10},
        resources={"gpus": 8, "mem_gb": 500},
    )
    again = _plan(capsys, _copy_study(tmp_path, doc))
    assert [v["id"] for v in again["variants"]] == [v["id"] for v in original["variants"]]


def test_profile_changes_ids_and_keeps_count(capsys):
    plain, smoke = _plan(capsys, SWEEP), _plan(capsys, SWEEP, "--profile", "smoke")
    assert smoke["profile"] == "smoke" and smoke["count"] == plain["count"]
    assert {v["id"] for v in smoke["variants"]}.isdisjoint(v["id"] for v in plain["variants"])


def test_plan_text_output(capsys):
    assert run_study.main(["plan", str(SWEEP)]) == 0
    out = capsys.readouterr().out
    count = expected_count(load_study(SWEEP))
    assert out.startswith(f"study example_sweep: {count} run(s)")
    assert "sd-vae" in out and "vit-aggregator" in out


# --------------------------------------------------------------------------------------------
# a plan a person reads (issue 22)
# --------------------------------------------------------------------------------------------
def test_table4_plan_names_what_differs_and_the_runs_other_tables_share(capsys):
    assert run_study.main(["plan", str(REPO / "ablations" / "table4.yaml")]) == 0
    out = capsys.readouterr().out
    assert "varies: model.decoder.norm" in out and "model.decoder.norm=smc" in out
    assert "200,000 steps x batch 16" in out and "2 GPU(s)" in out and "1440 min" in out and "imagenet" in out
    groupnorm = next(line for line in out.splitlines() if line.startswith("groupnorm "))
    assert "table8_adversarial_weight" in groupnorm  # Table 8's adaptive row is Table 4's baseline


def test_seeds_on_one_line(capsys):
    assert run_study.main(["plan", str(SWEEP)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sd-vae ")]
    assert len(rows) == 1 and " 0,1 " in rows[0]


def test_keys_and_one_variants_config(capsys):
    assert run_study.main(["plan", "--keys"]) == 0
    out = capsys.readouterr().out
    assert 'model.decoder.norm = "groupnorm"  (groupnorm | smc)\n    Table 4:' in out
    assert run_study.main(["plan", str(SWEEP), "--config", "sd-vae"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["model"]["encoder"]["kind"] == "sdvae" and set(doc) == {"model", "loss", "train", "data", "eval", "seed"}
    assert run_study.main(["plan", str(SWEEP), "--config", "nothing"]) == 2


def test_output_to_a_closed_pipe_is_quiet():
    proc = subprocess.run(
        f"{sys.executable} run_study.py plan {SWEEP} | head -1", shell=True, cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("study example_sweep") and proc.stderr == ""


def test_a_grids_counts_are_complexitys(tmp_path, capsys):
    """A 2^9 grid of the ten axes' kinds (the 131 072-variant benchmark's, fewer values): the
    counts of 20 variants drawn at random equal study.measure.complexity's."""
    import random

    from study.measure import complexity
    from study.studyfile.grid import expand

    axes = {"data.resolution": [64, 128], "preset": ["LiteVAE-S", "LiteVAE-B"], "model.encoder.aggregator": ["unet", "vit"],
            "model.encoder.shared_extractors": [False, True], "model.latent_channels": [4, 12],
            "model.decoder.norm": ["groupnorm", "smc"], "loss.kl_weight": [1e-6, 1e-5], "train.batch_size": [8, 16],
            "train.lr": [1e-4, 2e-4]}  # fmt: skip
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump({"study": "grid", "set": {"model.decoder.channels": 32}, "grid": axes})
    )
    doc = _plan(capsys, tmp_path / "s.yaml", "--results", str(tmp_path))
    assert doc["count"] == 2**9 and all(v["cost"]["gpu_hours"] > 0 for v in doc["variants"])
    configs = {v.run_id: v.config for v in expand(load_study(tmp_path / "s.yaml"))}
    for v in random.Random(0).sample(doc["variants"], 20):
        cfg, c = configs[v["id"]], v["cost"]
        encoder, decoder = complexity.parameter_counts(cfg.model)
        assert (c["encoder_params"], c["decoder_params"]) == (encoder, decoder)
        assert round(c["encoder_gmacs"] * 1e9) == complexity.encoder_macs(cfg.model, cfg.data.resolution)
        assert round(c["decoder_gmacs"] * 1e9) == complexity.decoder_macs(cfg.model, cfg.data.resolution)


def test_plan_json_lines_spelled_from_kept_parts_are_json_dumps_of_each_variant():
    """``plan --json`` spells each variant from parts kept per value (``JsonLines``): the text of
    ``json.dumps`` of the variant's dict, for autoencoder and generating runs, needs, aliases, shares."""
    from study.cli import plan
    from study.kinds.registry import works
    from study.measure import cost, counts
    from study.studyfile.grid import expand

    for name in ("table7.yaml", "table4.yaml"):
        variants = expand(load_study(REPO / "ablations" / name))
        costs = cost.study_cost(works([v.config for v in variants]), "H100", REPO / "none.json", counts.CostCache())
        lines = plan.JsonLines()
        for i, (v, c) in enumerate(zip(variants, costs.variants)):
            need = {"id": "abc", "name": None, "label": "run", "state": "pending", "reason": ""} if i % 2 else None
            shared = ["other", "études"] if i % 3 else []
            v = v if i % 4 else type(v)(**{**v.__dict__, "aliases": ("alias-1",)})
            assert lines.variant(v, need, c, shared) == json.dumps(plan._variant_json(v, need, c, shared))
        assert any(v.config.task == "diffusion" for v in variants) or name != "table7.yaml"


def test_a_large_grids_plan_counted_ahead_by_a_forked_process_is_the_same(tmp_path, capsys, monkeypatch):
    """A grid of ``COUNT_AHEAD`` rows or more is counted by a forked process that counts ahead
    what its cut-down grid needs (``plan._cost_ahead``): the plan is the one counted here."""
    from study.cli import plan
    from study.measure import counts

    axes = {"data.resolution": [64, 128], "preset": ["LiteVAE-S", "LiteVAE-B"], "model.decoder.norm": ["groupnorm", "smc"],
            "loss.kl_weight": [1e-6, 1e-5], "train.lr": [1e-4, 2e-4]}  # fmt: skip
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump({"study": "grid", "set": {"model.decoder.channels": 32}, "grid": axes})
    )
    docs = []
    try:
        for ahead in (10**9, 1):
            monkeypatch.setattr(plan, "COUNT_AHEAD", ahead)
            counts.clear_memory_cache()
            results = tmp_path / f"results-{ahead}"
            results.mkdir()
            docs.append(_plan(capsys, tmp_path / "s.yaml", "--results", str(results)))
    finally:
        gc.unfreeze()  # a large grid's plan froze what was alive (``plan.plan``): the test process's objects
    assert docs[0] == docs[1] and docs[0]["cost"]["cache"]["counted"] > 0
