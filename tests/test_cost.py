"""Cost at `plan` (study/measure/cost.py): parameters and GMACs per variant, the GPU-hour estimate
steps x batch x the recorded seconds per image, "no figure for <device>" without one, the cache of
the counts on disk, and the step-time table that `benchmarks/bench_train.py --record` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import run_study
from study import config, store
from study.kinds.registry import step_time_key, works
from study.measure import complexity, cost, counts, macs
from study.studyfile.grid import expand
from study.studyfile.parse import load_study

REPO = Path(__file__).resolve().parent.parent
TABLE2A = REPO / "ablations" / "table2a.yaml"
SMOKE = REPO / "ablations" / "smoke.yaml"
DEVICE = "Test GPU 80GB"


def _plan(capsys, *args: str) -> dict:
    assert run_study.main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _table2a_settings() -> tuple[int, int]:
    """(steps, batch) of Table 2a's runs, read from its base file (not through study/)."""
    base = yaml.safe_load((TABLE2A.parent / "base" / "imagenet128.yaml").read_text())
    return base["train"]["steps"], base["train"]["batch_size"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    """A step-time table with a different figure for each of Table 2a's variants."""
    path = tmp_path_factory.mktemp("steps") / "step_times.json"
    seconds = {}
    for i, v in enumerate(expand(load_study(TABLE2A))):
        seconds[v.name] = 0.001 * (i + 1)
        key = cost.step_time_key(v.config, device=DEVICE)
        cost.record_step_time(path, DEVICE, key, seconds[v.name], {"host": "test"}, write_json=store.write_json_atomic)
    return {"path": path, "seconds": seconds}


def test_plan_json_of_table2a_carries_counts_estimate_and_total(capsys, tmp_path, table):
    doc = _plan(
        capsys, str(TABLE2A), "--device-class", DEVICE, "--step-times", str(table["path"]), "--results", str(tmp_path)
    )
    steps, batch = _table2a_settings()
    hours = {}
    for v in doc["variants"]:
        c = v["cost"]
        assert c["resolution"] == 128 and c["device"] == DEVICE
        assert c["encoder_params"] > 0 and c["decoder_params"] > 0
        assert c["encoder_gmacs"] > 0 and c["decoder_gmacs"] > 0
        hours[v["name"]] = c["gpu_hours"]
        assert c["gpu_hours"] == pytest.approx(steps * batch * table["seconds"][v["name"]] / 3600)
        assert [s["figure"]["host"] for s in c["stages"]] == ["test"]
    assert set(hours) == set(table["seconds"])
    assert doc["cost"]["gpu_hours"] == pytest.approx(sum(hours.values()))
    assert doc["cost"]["runs_without_figure"] == 0 and doc["cost"]["devices_in_table"] == [DEVICE]
    by = {v["name"]: v["cost"] for v in doc["variants"]}
    # LiteVAE-S's encoder (Tables 23/24: 1.036 M with 4 latent channels) is a few thousand more here with 12
    assert 1.0e6 < by["litevae-s"]["encoder_params"] < 1.1e6
    assert by["litevae-s"]["encoder_gmacs"] < by["litevae-b"]["encoder_gmacs"] < by["vae"]["encoder_gmacs"]
    lite = {c["decoder_gmacs"] for n, c in by.items() if n != "vae"}
    assert len(lite) == 1  # one decoder for the LiteVAE rows; SD-VAE's adds its 1x1 post-quant conv:
    assert by["vae"]["decoder_gmacs"] - lite.pop() == pytest.approx(12 * 12 * 16 * 16 / 1e9)  # nz^2 x (128/8)^2


def test_without_a_figure_the_estimate_says_so(capsys, tmp_path, table):
    doc = _plan(
        capsys,
        str(TABLE2A),
        "--device-class",
        "Nowhere GPU",
        "--step-times",
        str(table["path"]),
        "--results",
        str(tmp_path),
    )
    for v in doc["variants"]:
        assert v["cost"]["gpu_hours"] is None
        assert v["cost"]["why"].startswith("no figure for Nowhere GPU")
    assert doc["cost"]["gpu_hours"] is None and doc["cost"]["runs_without_figure"] == len(doc["variants"])
    assert (
        run_study.main(
            [
                "plan",
                str(TABLE2A),
                "--device-class",
                "Nowhere GPU",
                "--step-times",
                str(table["path"]),
                "--results",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "no figure for Nowhere GPU for 5 of 5 run(s)" in out and "GPU-h" in out


def test_text_plan_prints_the_total(capsys, tmp_path, table, monkeypatch):
    monkeypatch.setenv(cost.STEP_TIMES_ENV, str(table["path"]))  # the table by $LITEVAE_STEP_TIMES
    assert (
        run_study.main(
            [
                "plan",
                str(TABLE2A),
                "--device-class",
                DEVICE,
                "--results",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    steps, batch = _table2a_settings()
    total = steps * batch * sum(table["seconds"].values()) / 3600
    assert f"GPU-hours: {cost.hours_text(total)} for 5 run(s) on {DEVICE}" in out


def test_counts_are_cached_on_disk(capsys, tmp_path):
    args = (str(SMOKE), "--results", str(tmp_path), "--step-times", str(tmp_path / "none.json"))
    counts.clear_memory_cache()
    first = _plan(capsys, *args)["cost"]["cache"]
    assert first["counted"] > 0
    assert (tmp_path / ".cache" / "cost.json").is_file()
    counts.clear_memory_cache()  # a new process: only the disk cache is left
    again = _plan(capsys, *args)
    assert again["cost"]["cache"] == {"counted": 0, "cached": first["counted"] + first["cached"]}
    doc = json.loads((tmp_path / ".cache" / "cost.json").read_text())
    store.write_json_atomic(tmp_path / ".cache" / "cost.json", doc | {"code": "other model code"})
    counts.clear_memory_cache()
    assert _plan(capsys, *args)["cost"]["cache"]["counted"] == first["counted"]  # counted anew
    absent = tmp_path / "absent"
    _plan(capsys, str(SMOKE), "--results", str(absent))
    assert not absent.exists()  # plan creates no results folder, not even for its cache


def test_decoder_macs_scale_with_pixels():
    """Without attention every decoder op is a conv (or free): 4x the pixels, exactly 4x the MACs."""
    cfg = config.apply_overrides(
        config.ExperimentConfig(), {"model.decoder.mid_attention": False, "model.decoder.channels": 32}
    )
    assert complexity.decoder_macs(cfg.model, 64) == 4 * complexity.decoder_macs(cfg.model, 32)


def test_each_stage_is_costed_at_its_resolution(tmp_path):
    cfg = config.validate(
        config.apply_overrides(
            config.ExperimentConfig(),
            {
                "train.steps": 30,
                "train.batch_size": 4,
                "train.stages": [{"resolution": 128, "steps": 10}, {"resolution": 256, "steps": 20}],
            },
        )
    )
    key128, key256 = (cost.step_time_key(cfg, r, DEVICE) for r in (128, 256))
    assert key128.endswith("/128px/bf16") and key256.endswith("/256px/bf16")
    table = {DEVICE: {key128: {"seconds_per_image": 0.5}}}
    scaled = cost.estimate(works([cfg])[0], DEVICE, table)  # 256px from the 128px figure x 4 pixels
    assert scaled.gpu_hours == pytest.approx((10 * 4 * 0.5 + 20 * 4 * 0.5 * 4) / 3600)
    assert [s["basis"] for s in scaled.stages] == [
        "measured",
        "scaled from 128px",
    ] and scaled.basis == "scaled from 128px"
    table[DEVICE][key256] = {"seconds_per_image": 2.0}
    assert cost.estimate(works([cfg])[0], DEVICE, table).gpu_hours == pytest.approx(
        (10 * 4 * 0.5 + 20 * 4 * 2.0) / 3600
    )
    other = cost.estimate(works([cfg])[0], "Nowhere GPU", table)  # no figure, no known peak: no number
    assert other.gpu_hours is None and other.why.startswith(f"no figure for Nowhere GPU: {key128}")
    nothing = config.apply_overrides(cfg, {"train.steps": 0, "train.stages": []})
    assert cost.estimate(works([nothing])[0], None, {}).gpu_hours == 0.0  # Table 3: no training, nothing to cost


def test_record_step_time_keeps_the_table_and_checks_the_figure(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": 1, "about": "notes", "devices": {"A": {"k": {"seconds_per_image": 1.0}}}}))
    entry = cost.record_step_time(path, "B", "k2", 0.25, {"host": "h"}, write_json=store.write_json_atomic)
    assert entry["seconds_per_image"] == 0.25 and entry["host"] == "h" and "measured" in entry
    doc = json.loads(path.read_text())
    assert doc["about"] == "notes" and cost.read_step_times(path)["A"]["k"]["seconds_per_image"] == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(cost.CostError):
            cost.record_step_time(path, "B", "k2", bad, write_json=store.write_json_atomic)
    path.write_text('{"devices": {"A": {"k": {}}}}')
    with pytest.raises(cost.CostError, match="seconds_per_image"):
        cost.read_step_times(path)


def test_a_diffusion_run_counts_its_autoencoder_and_costs_its_own_steps(capsys, tmp_path):
    """Table 7 (smoke): a diffusion run's counts are those of the autoencoder run it waits for;
    its estimate is keyed and stepped by its diffusion section."""
    spec = REPO / "ablations" / "table7.yaml"
    configs = {v.run_id: v.config for v in expand(load_study(spec), "smoke")}
    path = tmp_path / "t.json"
    for cfg in configs.values():
        cost.record_step_time(path, DEVICE, step_time_key(cfg, DEVICE), 0.5, write_json=store.write_json_atomic)
    doc = _plan(capsys, str(spec), "--profile", "smoke", "--device-class", DEVICE, "--step-times", str(path),
                "--results", str(tmp_path))  # fmt: skip
    by_id = {v["id"]: v for v in doc["variants"]}
    diffusion = [v for v in doc["variants"] if v["task"] == "diffusion"]
    assert diffusion
    for v in diffusion:
        ae = by_id[v["needs"]["id"]]["cost"]
        assert {k: v["cost"][k] for k in cost.COUNTS} == {k: ae[k] for k in cost.COUNTS}
        d = configs[v["id"]].diffusion
        assert v["cost"]["stages"][0]["key"].startswith("diffusion-")
        assert v["cost"]["gpu_hours"] == pytest.approx(d.steps * d.batch_size * 0.5 / 3600)


def test_a_malformed_table_is_bad_input(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": 3}')
    assert run_study.main(["plan", str(SMOKE), "--step-times", str(bad), "--results", str(tmp_path)]) == 2
    assert "bad.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# the FLOP estimate (issue 22): a number for every run on a device class with a known peak
# --------------------------------------------------------------------------------------------
def _flop_counter_macs(module, *inputs) -> int:
    """FlopCounterMode's MACs (torch's own counter, with its module tracking): the reference."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() // 2


TINY = {"model.decoder.channels": 32, "model.decoder.channel_mult": [1, 1, 2, 2], "model.decoder.blocks_per_level": 1,
        "model.encoder.preset": "S", "loss.discriminator_channels": 16, "data.resolution": 64,
        "train.steps": 1000, "train.batch_size": 8}  # fmt: skip


def test_the_flop_estimate_is_3x_the_forward_flops_over_the_peak_at_35_percent(tmp_path):
    """By hand: steps x batch x 3 x 2 x (encoder + decoder + discriminator MACs of one 64x64
    image) / (989e12 x 0.35) seconds, the MACs from complexity and from FlopCounterMode."""
    import torch

    from study.models.discriminators import build_discriminator

    cfg = config.validate(config.apply_overrides(config.ExperimentConfig(), TINY))
    with torch.device("meta"):
        disc = build_discriminator("unet", 16)
    by_hand = complexity.encoder_macs(cfg.model, 64) + complexity.decoder_macs(cfg.model, 64)
    by_hand += _flop_counter_macs(disc, torch.empty(1, 3, 64, 64, device="meta"))
    hours = 1000 * 8 * 3 * 2 * by_hand / (989e12 * 0.35) / 3600
    e = cost.estimate(works([cfg])[0], "NVIDIA H100 80GB HBM3", {}, counts.CostCache())
    assert e.gpu_hours == pytest.approx(hours, rel=1e-12)
    assert e.basis == "FLOP estimate at 35% of 989 TFLOP/s"
    fp32 = config.apply_overrides(cfg, {"train.precision": "fp32"})  # TF32 peak: twice the hours
    assert cost.estimate(works([fp32])[0], "A100", {}, counts.CostCache()).gpu_hours == pytest.approx(hours * 989 / 156)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"model.encoder.aggregator": "vit"}, {"model.encoder.extractor": "nafnet"}, {"model.decoder.norm": "smc"},
     {"model.encoder.kind": "sdvae", "model.encoder.sd_width": "small", "model.quant_conv": True},
     {"model.encoder.kind": "dwt", "model.latent_channels": 12}],
)  # fmt: skip
def test_the_fast_counter_gives_flop_counter_modes_totals(overrides):
    import torch

    cfg = config.apply_overrides(config.ExperimentConfig(), TINY | overrides)
    encoder = macs.encoder_module(cfg.model)
    with torch.device("meta"):
        encoder = encoder.to("meta")
    forward = encoder.encode if hasattr(encoder, "encode") else encoder
    assert complexity.encoder_macs(cfg.model, 64) == _flop_counter_macs(
        forward, torch.empty(1, 3, 64, 64, device="meta")
    )
    decoder = macs.decoder_path(cfg.model)
    z = torch.empty(1, cfg.model.latent_channels, 8, 8, device="meta")
    assert complexity.decoder_macs(cfg.model, 64) == _flop_counter_macs(decoder, z) > 0


def test_every_paper_table_plans_a_gpu_hour_number_for_an_h100(capsys, tmp_path):
    for spec in sorted((REPO / "ablations").glob("table*.yaml")):
        doc = _plan(capsys, str(spec), "--device-class", "H100", "--results", str(tmp_path),
                    "--step-times", str(tmp_path / "none.json"))  # fmt: skip
        assert doc["cost"]["gpu_hours"] is not None, spec.name
        trains = [v for v in doc["variants"] if v["cost"]["gpu_hours"]]
        assert all(v["cost"]["basis"].startswith("FLOP estimate at 35% of") for v in trains), spec.name
    assert run_study.main(["plan", str(REPO / "ablations" / "table4.yaml"), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FLOP estimate at 35% of 989 TFLOP/s" in out and "on H100" in out


@pytest.mark.parametrize("overrides", [{}, {"model.encoder.aggregator": "vit"}, {"model.decoder.norm": "smc"}])
def test_counts_derived_from_two_resolutions_are_the_direct_counts(overrides):
    """Counted at r and 2r, 3r and 4r derived op by op (study/measure/macs.py: by_resolution);
    40 is no multiple of 32: counted. Each equal to counting that resolution alone."""
    import torch

    cfg = config.apply_overrides(config.ExperimentConfig(), TINY | overrides)
    wanted = [32, 64, 96, 128, 40]
    for side in (macs.encoder_counts, macs.decoder_counts):
        _, together = side(cfg.model, wanted)
        assert together == {r: side(cfg.model, [r])[1][r] for r in wanted}
    decoder = macs.decoder_path(cfg.model)
    nz = cfg.model.latent_channels
    at_one, at_two = (macs._traced(lambda s=s: decoder(torch.empty(1, nz, s, s))) for s in (4, 8))
    assert macs._powers(at_one, at_two)  # the decoder scales: 96 and 128 were derived, not counted


def test_counts_with_module_calls_shared_and_in_a_counting_process_are_the_direct_counts():
    """A plan counts with each module call seen before replayed (``macs._Calls``), weights not
    initialised, in a forked ``counts.Counter``: each count equal to counting the network alone."""
    variants = [{}, {"model.latent_channels": 8}, {"model.encoder.aggregator": "vit", "model.decoder.norm": "smc"}]
    models = [config.apply_overrides(config.ExperimentConfig(), TINY | o).model for o in variants]
    wanted = [32, 64, 96]  # 96 derived from 32 and 64
    for side in (macs.encoder_counts, macs.decoder_counts):
        for model in models:
            assert side(model, wanted, shared=True) == (
                side(model, [32])[0],
                {r: side(model, [r])[1][r] for r in wanted},
            )
    assert macs._CALLS.records  # calls were kept (and replayed for the models after the first)
    counter = counts.Counter()
    try:
        counts.clear_memory_cache()
        forked = counts.CostCache(counter=counter)
        forked.prefetch((m, 64) for m in models)
        assert counter._process is not None  # the process counted: it did not fail
        assert forked.discriminator("unet", 16, 64) == counts.CostCache().discriminator("unet", 16, 64)
    finally:
        counter.close()
    counts.clear_memory_cache()
    for model in models:
        assert forked.model(model, 64) == counts.CostCache().model(model, 64)
        assert forked.model(model, 64)["encoder_gmacs"] * 1e9 == pytest.approx(
            complexity.encoder_macs(model, 64), abs=0.5
        )


def test_a_counting_process_counts_what_it_is_asked_whatever_it_counted_ahead():
    """``Counter(ahead=...)`` runs ``ahead`` first (what it counts is kept per job); a guess that
    fails leaves the process counting what it is asked."""
    job = ("discriminator_counts", ("unet", 16, [64]))
    want = counts._count_job(job)
    for ahead in (lambda: counts._counted(job), lambda: 1 / 0):
        counts.clear_memory_cache()
        counter = counts.Counter(ahead=ahead)
        try:
            assert counter.count([job]) == [want]
            assert counter._process is not None  # the process answered: it did not fail
        finally:
            counter.close()
