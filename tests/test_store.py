"""The run store: atomic writes, corrupt records reported and skipped, torn metrics lines,
collect's tidy rows, and status updates from two processes under the lock."""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from study import config, store
from study.kinds.registry import run_id
from study.studyfile.grid import expand
from study.studyfile.parse import load_study


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "rec.json"
    store.write_json_atomic(target, {"a": 1})
    store.write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert _leftovers(target.parent) == [] and os.listdir(target.parent) == ["rec.json"]


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_atomic_write_failure_keeps_old_record_and_no_temp(tmp_path, monkeypatch, failing):
    target = tmp_path / "status.json"
    store.write_json_atomic(target, {"state": "running"})

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing.split(".")[1], boom)
    with pytest.raises(OSError):
        store.write_json_atomic(target, {"state": "completed"})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"state": "running"}  # the old record, whole
    assert _leftovers(tmp_path) == [] and os.listdir(tmp_path) == ["status.json"]


def test_atomic_write_interrupted_leaves_no_temp(tmp_path, monkeypatch):
    """A KeyboardInterrupt (not only an OSError) mid-write cleans up too."""
    target = tmp_path / "x.json"

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_text_atomic(target, "new")
    monkeypatch.undo()
    assert not target.exists() and os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# corrupt and torn records
# --------------------------------------------------------------------------------------------
def test_read_json_corrupt_warns_with_path(tmp_path):
    path = tmp_path / "status.json"
    path.write_text('{"state": "comp')
    with pytest.warns(store.CorruptRecord, match=str(path)):
        assert store.read_json(path) is None
    assert store.read_json(tmp_path / "absent.json") is None  # absent: no warning
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(store.CorruptRecord, match=str(path)):
        assert store.read_json(path) is None


def test_torn_last_metrics_line_is_skipped_silently(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for step in (10, 20, 30):
        store.append_jsonl(path, {"step": step, "loss": 1.0 / step})
    with open(path, "ab") as f:
        f.write(b'{"step": 40, "lo')  # a kill during the append
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected torn tail must not warn
        records = store.read_jsonl(path)
    assert [r["step"] for r in records] == [10, 20, 30]


def test_corrupt_middle_metrics_line_warns_and_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, oops\n{"step": 3}\n')
    with pytest.warns(store.CorruptRecord, match="line 2"):
        records = store.read_jsonl(path)
    assert [r["step"] for r in records] == [1, 3]


def test_truncate_jsonl_keeps_steps_up_to_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for step in (1, 2, 3, 4):
        store.append_jsonl(path, {"step": step})
    store.truncate_jsonl(path, 2)
    assert [r["step"] for r in store.read_jsonl(path)] == [1, 2]


# --------------------------------------------------------------------------------------------
# collect
# --------------------------------------------------------------------------------------------
STUDY = """study: st
grid:
  model.decoder.norm: [groupnorm, smc]
  train.steps: [10]
variants:
  levels23: {model.encoder.levels: [2, 3]}
seeds: [0, 1]
"""


@pytest.fixture()
def study(tmp_path):
    path = tmp_path / "st.yaml"
    path.write_text(STUDY)
    variants = expand(load_study(path))
    root = tmp_path / "results"
    return root, variants, [store.variant_record(v) for v in variants]


def _eval(i: int) -> dict:
    return {"metrics": {"rfid": 1.0 + i, "psnr": 30.0 + i, "ssim": 0.9, "lpips": 0.1}}


def test_collect_rows_axes_metrics_and_failures(study):
    root, variants, records = study
    assert len(variants) == 6
    done, failed, pending = variants[0], variants[1], variants[2]
    folder = store.init_run(root, done.config, run_id(done.config))
    store.write_eval(folder, "evA", _eval(0))
    store.write_eval(folder, "evB", {"metrics": {"psnr": 31.5}, "unavailable": {"rfid": "no Inception weights"}})
    store.write_complexity(folder, {"encoder_params": 6_000_000, "encoder_gmacs": 4.2})
    store.mark_done(folder)
    folder = store.init_run(root, failed.config, run_id(failed.config))
    store.update_status(folder, state="failed", error="RuntimeError: CUDA out of memory", attempts=2)
    store.init_run(root, pending.config, run_id(pending.config))
    # variants[3:] were never launched

    frame = store.collect(root, "st", records)
    assert isinstance(frame, pd.DataFrame)
    # one row per (variant, seed, eval protocol): two evals for `done`, one row for every other run
    assert len(frame) == len(variants) + 1
    assert frame.groupby(["name", "seed", "eval_id"], dropna=False).size().max() == 1
    assert {"model.decoder.norm", "name", "seed", "state", "reason", "eval_id", "psnr", "rfid"} <= set(frame.columns)
    assert "train.steps" in frame.columns  # an axis, though single-valued

    rows = frame[frame.run_id == done.run_id].set_index("eval_id")
    assert list(rows.index) == ["evA", "evB"]
    assert (rows.state == "completed").all() and rows.loc["evA", "rfid"] == 1.0
    assert rows.loc["evB", "psnr"] == 31.5 and pd.isna(rows.loc["evB", "rfid"])
    assert rows.loc["evB", "rfid_unavailable"] == "no Inception weights"
    assert (rows.encoder_params == 6_000_000).all()
    assert rows.loc["evA", "model.decoder.norm"] == done.axes["model.decoder.norm"]

    row = frame[frame.run_id == failed.run_id].iloc[0]
    assert row.state == "failed" and row.reason == "RuntimeError: CUDA out of memory" and row.attempts == 2
    assert pd.isna(row.eval_id) and pd.isna(row.psnr)
    assert frame[frame.run_id == pending.run_id].iloc[0].state == "pending"
    never = frame[frame.run_id.isin([v.run_id for v in variants[3:]])]
    assert len(never) == 3 and (never.state == "missing").all()
    named = frame[frame.name == "levels23"]
    assert len(named) == 2 and named["model.decoder.norm"].isna().all()  # not an axis of theirs


def test_collect_skips_corrupt_records_by_path(study):
    root, variants, records = study
    a, b = variants[0], variants[1]
    fa = store.init_run(root, a.config, run_id(a.config))
    store.write_eval(fa, "good", _eval(1))
    (fa / "eval" / "torn.json").write_text('{"metrics": {"psnr": 3')
    store.mark_done(fa)
    fb = store.init_run(root, b.config, run_id(b.config))
    store.write_eval(fb, "evA", _eval(2))
    (fb / "status.json").write_text('{"state": "runn')  # truncated status
    (fb / "complexity.json").write_bytes(b"\x00\x01")

    with pytest.warns(store.CorruptRecord) as caught:
        frame = store.collect(root, "st", records)
    messages = " ".join(str(w.message) for w in caught)
    for bad in (fa / "eval" / "torn.json", fb / "status.json", fb / "complexity.json"):
        assert str(bad) in messages
    ra = frame[frame.run_id == a.run_id]
    assert list(ra.eval_id) == ["good"] and ra.iloc[0].state == "completed"
    rb = frame[frame.run_id == b.run_id]
    assert list(rb.eval_id) == ["evA"] and rb.iloc[0].psnr == 32.0
    assert len(frame) == len(variants)


def test_collect_ignores_temp_files_of_a_writer(study):
    root, variants, records = study
    folder = store.init_run(root, variants[0].config, run_id(variants[0].config))
    store.write_eval(folder, "evA", _eval(0))
    (folder / "eval" / ".evB.json.123.tmp").write_text('{"metrics": {')  # a write in flight
    frame = store.collect(root, "st", records)
    assert list(frame[frame.run_id == variants[0].run_id].eval_id) == ["evA"]


def test_write_results_and_index(study):
    root, variants, records = study
    store.write_index(root, "st", variants, spec="st.yaml")
    index = store.read_index(root, "st")
    assert [v["run_id"] for v in index["variants"]] == [v.run_id for v in variants]
    assert index["variants"][0]["axes"] == {k: v for k, v in variants[0].axes.items()}
    path = store.write_results(root, "st", store.collect(root, "st", records))
    assert path == root / "st" / "results.csv"
    assert len(pd.read_csv(path)) == len(variants)


def test_init_run_round_trips_config(tmp_path):
    cfg = config.apply_overrides(
        config.ExperimentConfig(),
        {"train.stages": [{"resolution": 64, "steps": 10}], "train.steps": 10, "data.path": "/x"},
    )
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    assert folder == store.run_dir(tmp_path, run_id(cfg))
    assert store.read_config(folder) == cfg
    assert store.read_status(folder)["state"] == "pending"
    store.update_status(folder, state="running", step=3)
    store.init_run(tmp_path, cfg, run_id(cfg))  # re-init keeps the status
    assert store.read_status(folder)["state"] == "running"


# --------------------------------------------------------------------------------------------
# concurrent status updates
# --------------------------------------------------------------------------------------------
N = 50


def _set_own_fields(folder: str, who: str) -> None:
    """update_status merges fields under the lock: another process's fields must survive."""
    for i in range(N):
        store.update_status(Path(folder), **{f"{who}{i}": i})


def _increment(folder: str) -> None:
    """A counter increment: read-modify-write of status.json under the store's lock."""
    folder = Path(folder)
    for _ in range(N):
        with store.locked(folder):
            status = store.read_status(folder)
            status["count"] = status.get("count", 0) + 1
            store.write_json_atomic(folder / "status.json", status)


def _run_two(target, *args_per_proc) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=args) for args in args_per_proc]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_update_status_from_two_processes_loses_no_field(tmp_path):
    folder = tmp_path / "run"
    store.update_status(folder, state="running")
    _run_two(_set_own_fields, (str(folder), "a"), (str(folder), "b"))
    status = store.read_status(folder)
    assert status["state"] == "running"
    assert {k: v for k, v in status.items() if k[0] in "ab" and k[1:].isdigit()} == (
        {f"a{i}": i for i in range(N)} | {f"b{i}": i for i in range(N)}
    )
    assert _leftovers(folder) == []


def test_counter_under_the_lock_from_two_processes(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    _run_two(_increment, (str(folder),), (str(folder),))
    assert store.read_status(folder)["count"] == 2 * N
