"""One registry of metrics (issue 19.4; study/measure/registry.py and study/config/metric_specs.py):
a metric added through the registry alone, a toy mean absolute error, is accepted by the config,
computed and defined by the evaluation, and shown in the study's table with its heading, digits
and direction; the registry's facts are what the config, the protocol and the report read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from study import config, store
from study.config import metric_specs
from study.evaluation import evaluate as ev_mod
from study.evaluation.protocol import protocol
from study.kinds.registry import run_id
from study.measure import metrics as metric_fns
from study.measure import registry as metric_registry
from study.report import references
from study.report.columns import METRIC_COLUMNS, metric_column
from study.report.records import read_study
from study.report.tables import main_table
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record
from tests.metric_helpers import Images, StandIn

REPO = Path(__file__).resolve().parent.parent
SIGMA = {"near": 0.02, "far": 0.2}
STUDY = f"""
study: toy_metric
description: A metric added through the registry alone.
base: {REPO / "ablations" / "base" / "smoke_cpu.yaml"}
set: {{eval.metrics: [psnr, mae, mae_std], eval.num_images: 8, eval.batch_size: 5, eval.gallery_images: 0}}
variants:
  near: {{model.decoder.channels: 32}}
  far: {{model.decoder.channels: 64}}
"""


def _mae(a: torch.Tensor, b: torch.Tensor, tools: metric_registry.Tools) -> torch.Tensor:
    return (a.double() - b.double()).abs().flatten(1).mean(1)


MAE = metric_registry.Metric(
    metric_specs.MetricSpec("mae", "MAE", "grey levels", "lower", 2, about="mean absolute error"),
    define=lambda ev: ("uint8 [0, 255]; per image mean |x - y| over CxHxW; mean over images", ()),
    per_image=_mae,
)


@pytest.fixture
def with_mae(monkeypatch):
    """The registry with the toy metric added (both halves restored after the test)."""
    monkeypatch.setattr(metric_specs, "SPECS", dict(metric_specs.SPECS))
    monkeypatch.setattr(metric_registry, "REGISTRY", dict(metric_registry.REGISTRY))
    metric_registry.register(MAE)


def _expected_mae(sigma: float) -> tuple[float, float]:
    """The per-image mean absolute error of the stand-in's reconstructions, with numpy."""
    x = Images().x
    a = metric_fns.to_uint8(x).numpy().astype(np.float64)
    b = metric_fns.to_uint8(StandIn(sigma).decode(x).detach()).numpy().astype(np.float64)
    per_image = np.abs(a - b).mean(axis=(1, 2, 3))
    return float(per_image.mean()), float(per_image.std())


def test_an_unregistered_metric_is_refused_by_the_config():
    with pytest.raises(config.ConfigError, match="eval.metrics"):
        config.validate(config.apply_overrides(config.ExperimentConfig(), {"eval.metrics": ["psnr", "mae"]}))


def test_a_metric_added_through_the_registry_reaches_the_record_and_the_table(with_mae, tmp_path):
    spec_path = tmp_path / "toy.yaml"
    spec_path.write_text(STUDY)
    study = load_study(spec_path)
    variants = expand(study)
    root = tmp_path / "results"
    for v in variants:  # each variant's "trained model": a stand-in of a known error
        folder = store.init_run(root, v.config, run_id(v.config))
        record = ev_mod.evaluate(StandIn(SIGMA[v.name]), v.config, folder, dataset=Images(), progress=False)
        mean, std = _expected_mae(SIGMA[v.name])
        assert record["metrics"]["mae"] == pytest.approx(mean, abs=1e-9)
        assert record["metrics"]["mae_std"] == pytest.approx(std, abs=1e-9)
        assert record["protocol"]["mae"].startswith("uint8 [0, 255]; per image mean |x - y|")
        assert record["protocol"]["mae_std"]["of"] == "mae"
        store.mark_done(folder)
    store.write_index(root, study.study, variants, **study_record(study, variants))

    table = main_table(read_study(root, study.study)).set_index("Variant")
    near, far = _expected_mae(SIGMA["near"])[0], _expected_mae(SIGMA["far"])[0]
    assert table.loc["near", "MAE ↓"] == f"{near:.2f}"  # its heading, direction and digits
    assert table.loc["far", "MAE ↓"] == f"{far:.2f}"
    assert table.loc["far", "MAE σ"] == f"{_expected_mae(SIGMA['far'])[1]:.2f}"  # a spread: no direction
    assert list(table.columns).index("MAE ↓") > list(table.columns).index("SSIM ↑")  # after the paper's four


def test_a_registered_metric_changes_the_protocol_only_when_asked_for(with_mae):
    base = config.ExperimentConfig()
    p = protocol(base, fingerprint="fp")
    assert "mae" not in p and p["metrics"] == sorted(metric_specs.PAPER_METRICS)
    with_it = protocol(config.apply_overrides(base, {"eval.metrics": ["psnr", "mae"]}), fingerprint="fp")
    assert with_it["mae"] and with_it["psnr"] == p["psnr"]


def test_a_metric_needs_exactly_the_function_of_its_kind():
    set_spec = metric_specs.MetricSpec("toy@set", "Toy", "", "lower", 2, kind="set")
    with pytest.raises(ValueError, match="needs exactly its function"):
        metric_registry.register(metric_registry.Metric(set_spec, MAE.define, per_image=_mae))
    with pytest.raises(ValueError, match="taken"):
        metric_specs.add(metric_specs.SPECS["psnr"])
    assert "toy@set" not in metric_specs.SPECS


def test_the_report_reads_the_registry_facts():
    for col in METRIC_COLUMNS:
        spec = metric_specs.spec(col.key)
        assert (col.label, col.digits, col.lower_is_better, col.paper) == (
            spec.heading,
            spec.digits,
            spec.lower_is_better,
            spec.paper,
        )
    assert references.METRICS == metric_specs.PAPER_METRICS
    assert metric_column("psnr_std").heading == "PSNR σ" and not metric_column("psnr_std").ranked
    assert metric_specs.spec("lpips@vgg").needs == ("lpips:vgg",)
    assert set(metric_specs.names()) == set(metric_registry.REGISTRY) | {
        n + "_std" for n, s in metric_specs.SPECS.items() if s.kind == "per_image"
    }
