"""Table 3 measurement: keys and units, MAC scaling, the CPU live-tensor memory tracker, the
table with the paper's numbers beside ours, named errors."""

from __future__ import annotations

import json

import pytest
import torch

from study.measure.complexity import (
    KEYS,
    MODELS,
    ComplexityError,
    LiveTensorTracker,
    complexity_rows,
    encoder_macs,
    format_table,
    measure,
    model_config,
    paper_rows,
    parameter_counts,
    to_json,
)
from study.models.registry import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_models_are_the_six_presets():
    assert MODELS == tuple(PRESETS) and len(MODELS) == 6


def test_paper_rows_are_table3_found_by_the_registry_labels():
    rows = paper_rows()
    assert set(rows) == set(MODELS) - {"VAE-Small"}  # Table 3 has no VAE-Small
    assert rows["SD-VAE"]["encoder"] == "VAE (SD-VAE encoder)"
    assert (rows["SD-VAE"]["params_m"], rows["LiteVAE-B"]["params_m"]) == (34.16, 6.75)


def test_measure_returns_the_documented_keys_and_units():
    row = measure("LiteVAE-S", resolution=32, batch=2, repeats=2, warmup=0)
    assert set(KEYS) <= set(row)
    enc, dec = parameter_counts(model_config("LiteVAE-S"))
    assert (row["encoder_params"], row["decoder_params"]) == (enc, dec)
    assert row["encoder_gmacs"] == pytest.approx(encoder_macs(model_config("LiteVAE-S"), 32) / 1e9)
    assert row["throughput_img_s"] > 0
    # live memory holds at least the parameters and the input batch
    assert row["peak_mem_mb"] * 2**20 >= enc * 4 + 2 * 3 * 32 * 32 * 4
    assert (row["device"], row["resolution"], row["batch"]) == ("cpu", 32, 2)


def test_convolutional_macs_scale_with_the_image_area():
    cfg = model_config("LiteVAE-B")
    assert encoder_macs(cfg, 128) == 4 * encoder_macs(cfg, 64)
    # the SD-VAE's mid attention is quadratic in the positions: a little more than 4x
    sd = model_config("SD-VAE")
    assert encoder_macs(sd, 128) > 4 * encoder_macs(sd, 64)


def test_live_tensor_tracker_counts_the_peak_of_live_storage():
    x = torch.ones(1000)  # 4000 bytes, held throughout
    tracker = LiveTensorTracker()
    tracker.hold(x)
    with tracker:
        y = x * 2  # +4000 -> 8000
        z = y + 1  # +4000 -> 12000 (peak)
        del y  # -4000 -> 8000
        w = z * 3  # +4000 -> 12000
        v = w.view(10, 100)  # a view: no new storage
        del z, w
        assert tracker.live == 8000  # x and the storage of v
    assert tracker.peak == 12000
    assert v.shape == (10, 100)


def test_rows_table_and_json_for_every_model():
    rows = complexity_rows(list(MODELS), resolution=32, batch=1, device="cpu", precision="fp32", repeats=1, warmup=0)
    assert [r["model"] for r in rows] == list(MODELS)
    doc = json.loads(to_json(rows))
    assert all(set(KEYS) <= set(r) for r in doc)
    table = format_table(rows)
    for name in MODELS:
        assert f"| {name} |" in table
    sd = next(line for line in table.splitlines() if line.startswith("| SD-VAE |"))
    assert "135.59" in sd and "34.16" in sd and "68.0" in sd and "8860" in sd
    small = next(line for line in table.splitlines() if line.startswith("| VAE-Small |"))
    assert "| - |" in small  # no paper row for VAE-Small in Table 3


def test_named_errors():
    with pytest.raises(ComplexityError):
        measure("LiteVAE-XL")
    with pytest.raises(ComplexityError):
        measure("LiteVAE-S", resolution=30)
    with pytest.raises(ComplexityError):
        measure("LiteVAE-S", resolution=32, batch=1, precision="fp16")
    with pytest.raises(ComplexityError):
        complexity_rows(["LiteVAE-S", "nope"], 32, 1, "cpu", "fp32")


def test_command_line_prints_all_six_models_as_json(capsys):
    import run_study

    code = run_study.main(["complexity", "--json", "--device", "cpu", "--resolution", "32", "--batch", "1"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)  # stdout holds the JSON document and nothing else
    assert [r["model"] for r in doc] == list(MODELS)
    for r in doc:
        assert set(KEYS) <= set(r) and r["resolution"] == 32 and r["batch"] == 1 and r["device"] == "cpu"
        assert r["encoder_params"] > 0 and r["throughput_img_s"] > 0
