"""Table 6 in the evaluation job: with ``eval.latent_stats`` the record holds the MMD of the
posterior-mean latents per bandwidth and their per-channel statistics, the protocol says so (and
only then), the collected frame has the columns and the report compares them with the paper."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from study import config, store
from study.evaluation import evaluate, protocol
from study.kinds.registry import run_id
from study.measure import latent_stats
from study.models.autoencoder import build_autoencoder
from study.report.columns import columns_for
from study.report.paper_rows import paper_row
from tests.launch_helpers import TINY_MODEL
from tests.metric_helpers import N_IMAGES, RES, Images

pytest_plugins = ["tests.metric_fixtures"]  # the weights fixtures

LATENT = {"eval.latent_stats": True, "eval.mmd_samples": 6, "eval.mmd_repeats": 3, "eval.mmd_bandwidths": [25.0, 500.0]}


def dwt_cfg(**overrides) -> config.ExperimentConfig:
    over = TINY_MODEL | {
        "model.encoder.kind": "dwt",
        "model.latent_channels": 12,
        "data.resolution": RES,
        "eval.num_images": N_IMAGES,
        "eval.batch_size": 3,
        "eval.metrics": ["psnr"],
    }
    return config.validate(config.apply_overrides(config.ExperimentConfig(), over | overrides))


def test_protocol_gains_latent_stats_only_when_on(no_weights):
    off, on = dwt_cfg(), dwt_cfg(**LATENT)
    assert "latent_stats" not in protocol.protocol(off, fingerprint="fp")
    p = protocol.protocol(on, fingerprint="fp")
    assert p["latent_stats"]["mmd_bandwidths"] == [25.0, 500.0] and p["latent_stats"]["mmd_samples"] == 6
    assert protocol.protocol_id(p) != protocol.protocol_id(protocol.protocol(off, fingerprint="fp"))
    more = dwt_cfg(**LATENT | {"eval.mmd_repeats": 4})
    assert protocol.protocol_id(protocol.protocol(more, fingerprint="fp")) != protocol.protocol_id(p)


def test_eval_record_holds_the_mmd_and_channel_stats(no_weights, tmp_path):
    cfg = dwt_cfg(**LATENT)
    torch.manual_seed(0)
    ae = build_autoencoder(config.autoencoder_args(cfg.model))
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    images = Images()
    rec = evaluate.evaluate(ae, cfg, folder, "cpu", progress=False, dataset=images)
    metrics = rec["metrics"]
    assert {"mmd_25", "mmd_25_std", "mmd_500", "mmd_500_std", "latent_scale_factor", "psnr"} <= set(metrics)
    # the fixed DWT latent of the images, computed directly: the record's statistics are its own
    with torch.no_grad():
        z = ae.encoder(images.x)
    want_metrics, want_details = latent_stats.table6_summary(z, (25.0, 500.0), 3, 6)
    assert metrics["mmd_25"] == pytest.approx(want_metrics["mmd_25"])
    assert metrics["latent_scale_factor"] == pytest.approx(1.0 / z.double().std().item())
    stats = rec["latent_stats"]
    assert len(stats["channel_mean"]) == 12 and stats["num_latents"] == N_IMAGES
    assert stats["channel_mean"] == pytest.approx(want_details["channel_mean"])
    assert stats["channel_mean"][0] == pytest.approx(z[:, 0].double().mean().item())

    variant = {"index": 0, "name": "dwt", "run_id": folder.name, "seed": 0, "axes": {}}
    frame = store.collect(tmp_path, "s", [variant])
    assert frame.loc[0, "mmd_25"] == pytest.approx(metrics["mmd_25"])


def test_table6_report_columns_carry_the_papers_numbers():
    cols = columns_for("6")
    assert [c.key for c in cols] == ["mmd_25", "mmd_50", "mmd_100", "mmd_250", "mmd_500"]
    assert [c.key for c in cols] == [latent_stats.metric_name(h) for h in latent_stats.TABLE6_BANDWIDTHS]
    lite, sd = paper_row("6", "LiteVAE"), paper_row("6", "SD-VAE")
    # results/paper/litevae_latent_mmd.csv (Table 6)
    assert (lite["mmd_25"], lite["mmd_25_std"], sd["mmd_50"], sd["mmd_500"]) == (1.44, 0.28, 28.90, 0.44)
    assert all(pd.notna(lite[c.paper]) and pd.notna(sd[c.paper]) for c in cols)
