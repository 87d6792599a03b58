"""The evaluation job (study/evaluation/evaluate.py): the protocol and its id, one record per
(run, protocol), reuse and recomputation, the reference statistics cache, missing weights,
the `evaluate SPEC` command. Weights, images and the stand-in autoencoder: tests/metric_helpers.py.
Feature extraction costs ~0.3-0.5 s per image on this CPU, so the sets are 8 images a side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from study import config, store
from study.evaluation import evaluate as E
from study.evaluation import protocol
from study.kinds.registry import run_id
from study.measure import metrics as metric_fns
from study.measure import weights as weight_files
from tests.metric_helpers import N_IMAGES, Images, StandIn, cfg_for, run_folder

pytest_plugins = ["tests.metric_fixtures"]  # the weights fixtures


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------
def test_protocol_defaults_follow_ldm_and_every_field_changes_the_id(no_weights):
    base = config.apply_overrides(
        config.ExperimentConfig(), {"data.kind": "folder", "data.path": "/imagenet", "data.name": "imagenet"}
    )
    p = protocol.protocol(base, fingerprint="fp")
    assert p["posterior"] == "mean" and p["crop"] == "center" and p["num_images"] == 50_000
    assert p["resize"].startswith("ldm:") and p["dataset"]["split"] == "held-out"  # eval.preprocess
    assert p["rfid"]["weights_sha256"] == weight_files.REGISTRY["inception"].sha256
    assert p["lpips"]["net"] == "alex" and p["lpips"]["backbone_sha256"] == weight_files.REGISTRY["alexnet"].sha256
    assert set(p["versions"]) >= {"torch", "torch-fidelity", "lpips"}
    json.dumps(p, allow_nan=False)
    pid = protocol.protocol_id(p)
    assert pid == protocol.protocol_id(protocol.protocol(base, fingerprint="fp")) and len(pid) == 12
    changed = [protocol.protocol(base, fingerprint="other")]
    for key, value in [
        ("eval.num_images", 1000),
        ("eval.resolution", 128),
        ("eval.posterior", "sample"),
        ("eval.preprocess", "adm"),
        ("eval.lpips_net", "vgg"),
        ("eval.metrics", ["psnr", "ssim"]),
        ("data.kind", "samples"),
        ("data.name", "imagenet-val"),
        ("data.val_fraction", 0.2),
    ]:
        changed.append(protocol.protocol(config.apply_overrides(base, {key: value}), fingerprint="fp"))
    ids = {protocol.protocol_id(q) for q in changed}
    assert pid not in ids and len(ids) == len(changed)
    # the batch size and training fields are not part of it
    same = config.apply_overrides(base, {"eval.batch_size": 3, "train.steps": 7, "model.latent_channels": 12})
    assert protocol.protocol_id(protocol.protocol(same, fingerprint="fp")) == pid


def test_protocol_records_a_custom_inception_file_by_its_own_sha256(test_weights, inception_file):
    p = protocol.protocol(config.ExperimentConfig(), fingerprint="fp")
    assert (
        p["rfid"]["weights_sha256"]
        == weight_files.sha256_file(inception_file)
        != weight_files.REGISTRY["inception"].sha256
    )


# --------------------------------------------------------------------------------------------
# evaluate: records, reuse, rFID behaviour
# --------------------------------------------------------------------------------------------
def test_evaluate_identity_gives_zero_fid_and_reuses_its_record(test_weights, tmp_path):
    cfg = cfg_for()
    folder = run_folder(tmp_path, "identity")
    rec = E.evaluate(StandIn(0.0), cfg, folder, "cpu", progress=False, dataset=Images())
    assert not rec["reused"] and rec["unavailable"] == {}
    assert set(rec["metrics"]) == {"rfid", "psnr", "ssim", "lpips"}
    assert abs(rec["metrics"]["rfid"]) < 1e-6
    assert math.isinf(rec["metrics"]["psnr"]) and rec["metrics"]["ssim"] == pytest.approx(1.0)
    assert rec["metrics"]["lpips"] == pytest.approx(0.0, abs=1e-7)
    assert rec["num_images"] == N_IMAGES and rec["reference_cache"] == "computed"
    path = folder / "eval" / f"{rec['protocol_id']}.json"
    assert store.read_json(path)["protocol"] == rec["protocol"]

    # the same protocol again: the stored record, untouched
    mtime = path.stat().st_mtime_ns
    again = E.evaluate(StandIn(0.5), cfg, folder, "cpu", progress=False, dataset=Images())
    assert again["reused"] and again["metrics"] == pytest.approx(rec["metrics"])
    assert path.stat().st_mtime_ns == mtime

    # another protocol: a second record beside the first (psnr/ssim only, no Inception needed)
    other = E.evaluate(StandIn(0.0), cfg_for(metrics=["psnr", "ssim"]), folder, "cpu", progress=False, dataset=Images())
    assert other["protocol_id"] != rec["protocol_id"] and not other["reused"]
    assert set(store.read_evals(folder)) == {rec["protocol_id"], other["protocol_id"]}
    assert set(other["metrics"]) == {"psnr", "ssim"}

    # force recomputes under the same id
    forced = E.evaluate(
        StandIn(0.1), cfg_for(metrics=["psnr", "ssim"]), folder, "cpu", progress=False, dataset=Images(), force=True
    )
    assert not forced["reused"] and forced["protocol_id"] == other["protocol_id"]
    assert forced["metrics"]["psnr"] < 60 and store.read_evals(folder)[other["protocol_id"]][
        "metrics"
    ] == pytest.approx(forced["metrics"])


@pytest.fixture(scope="module")
def noise_series(tmp_path_factory, inception_file, alexnet_file):
    """Records at three perturbation sizes sharing one reference cache (batch size 8)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(weight_files.REGISTRY["inception"].override_env, str(inception_file))
    mp.setenv(weight_files.REGISTRY["alexnet"].override_env, str(alexnet_file))
    root = tmp_path_factory.mktemp("results")
    try:
        records = {}
        for sigma in (0.02, 0.08, 0.25):
            folder = run_folder(root, f"noise{sigma}")
            records[sigma] = E.evaluate(StandIn(sigma), cfg_for(), folder, "cpu", progress=False, dataset=Images())
        yield root, records
    finally:
        mp.undo()


def test_rfid_grows_monotonically_with_the_perturbation(noise_series):
    _, records = noise_series
    sigmas = sorted(records)
    for name in ("rfid", "lpips"):
        values = [records[s]["metrics"][name] for s in sigmas]
        assert all(a < b for a, b in zip(values, values[1:])), (name, values)
    for name in ("psnr", "ssim"):
        values = [records[s]["metrics"][name] for s in sigmas]
        assert all(a > b for a, b in zip(values, values[1:])), (name, values)
    assert records[sigmas[0]]["metrics"]["rfid"] > 1e-4  # far above the 1e-6 of a set against itself
    assert [records[s]["reference_cache"] for s in sigmas] == ["computed", "reused", "reused"]


def test_results_do_not_depend_on_the_batch_size(noise_series, test_weights, tmp_path):
    root, records = noise_series
    want = records[0.08]
    got = E.evaluate(
        StandIn(0.08),
        cfg_for(batch_size=3),
        run_folder(tmp_path, "b3"),
        "cpu",
        progress=False,
        dataset=Images(),
        cache_dir=root / "cache" / "fid_ref",
    )
    assert got["protocol_id"] == want["protocol_id"] and got["batch_size"] == 3
    for name, value in want["metrics"].items():
        assert got["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_reference_cache_equals_the_statistics_of_the_originals_read_from_png(noise_series, tmp_path, inception_file):
    root, records = noise_series
    ref_files = list((root / "cache" / "fid_ref").glob("*.npz"))
    assert len(ref_files) == 1
    metric_fns.write_pngs(metric_fns.to_uint8(Images().x), tmp_path / "png")
    stats = metric_fns.feature_stats(tmp_path / "png", metric_fns.inception_extractor(inception_file), batch_size=4)
    with np.load(ref_files[0]) as z:
        np.testing.assert_allclose(z["mu"], stats.mean(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(z["sigma"], stats.cov(), rtol=0, atol=1e-9)
        assert int(z["n"]) == N_IMAGES


# --------------------------------------------------------------------------------------------
# missing weights
# --------------------------------------------------------------------------------------------
def test_missing_weights_make_metrics_unavailable_not_numbers(no_weights, tmp_path):
    folder = run_folder(tmp_path, "noweights")
    rec = E.evaluate(StandIn(0.05), cfg_for(), folder, "cpu", progress=False, dataset=Images(4))
    assert set(rec["metrics"]) == {"psnr", "ssim"}
    assert set(rec["unavailable"]) == {"rfid", "lpips"}
    assert rec["missing_weights"] == ["inception", "alexnet"]
    for reason in rec["unavailable"].values():
        assert reason.startswith("unavailable: ") and "weights fetch" in reason
        assert str(no_weights) in reason
    assert "weights-inception-2015-12-05-6726825d.pth" in rec["unavailable"]["rfid"]
    assert "alexnet-owt-7be5be79.pth" in rec["unavailable"]["lpips"]
    stored = store.read_json(folder / "eval" / f"{rec['protocol_id']}.json")
    assert stored["unavailable"] == rec["unavailable"] and "rfid" not in stored["metrics"]
    # the collected table shows the reason in place of a number
    frame = store.collect(tmp_path, "s", [{"index": 0, "name": "v", "run_id": "noweights", "seed": 0, "axes": {}}])
    assert frame.loc[0, "rfid_unavailable"].startswith("unavailable: ")
    assert "rfid" not in frame.columns

    # still missing: the record is reused as it is
    assert E.evaluate(StandIn(0.05), cfg_for(), folder, "cpu", progress=False, dataset=Images(4))["reused"]


def test_a_record_is_completed_once_the_weights_are_staged(no_weights, tmp_path, monkeypatch, inception_file):
    # (for this test) the pinned digest of the official file name is that of our random Inception
    entry = weight_files.REGISTRY["inception"]
    monkeypatch.setitem(
        weight_files.REGISTRY,
        "inception",
        weight_files.WeightFile(
            entry.name, entry.filename, entry.url, weight_files.sha256_file(inception_file), entry.size, entry.used_by
        ),
    )
    cfg = cfg_for(metrics=["rfid", "psnr"])
    folder = run_folder(tmp_path, "later")
    first = E.evaluate(StandIn(0.05), cfg, folder, "cpu", progress=False, dataset=Images(4))
    assert "rfid" in first["unavailable"] and "rfid" not in first["metrics"]
    (no_weights / entry.filename).write_bytes(inception_file.read_bytes())  # `weights fetch`
    second = E.evaluate(StandIn(0.05), cfg, folder, "cpu", progress=False, dataset=Images(4))
    assert second["protocol_id"] == first["protocol_id"] and not second["reused"]
    assert second["unavailable"] == {} and second["metrics"]["rfid"] > 0
    assert list(store.read_evals(folder)) == [first["protocol_id"]]


def test_real_model_and_eval_set_without_weights(no_weights, tmp_path):
    """The project's own data and autoencoder through evaluate, as the job calls it."""
    from study.models.autoencoder import build_autoencoder

    cfg = config.validate(
        config.apply_overrides(
            config.model_preset("LiteVAE-S"),
            {
                "data.resolution": 32,
                "eval.num_images": 4,
                "eval.batch_size": 4,
                "model.decoder.channels": 32,
                "model.decoder.channel_mult": [1, 1, 2, 2],
                "model.decoder.blocks_per_level": 1,
                "model.decoder.mid_attention": False,
            },
        )
    )
    torch.manual_seed(0)
    ae = build_autoencoder(config.autoencoder_args(cfg.model)).train()
    folder = run_folder(tmp_path, "real")
    rec = E.evaluate(ae, cfg, folder, torch.device("cpu"), progress=False)
    assert ae.training  # the caller's mode is restored
    assert set(rec["metrics"]) == {"psnr", "ssim"} and set(rec["unavailable"]) == {"rfid", "lpips"}
    assert 0 < rec["metrics"]["psnr"] < 60 and -1 < rec["metrics"]["ssim"] < 1
    assert rec["protocol"]["dataset"]["fingerprint"].startswith("data-v")
    assert rec["num_images"] == 4


def test_protocol_overrides_accept_eval_keys_only():
    from study.cli.evaluation import protocol_overrides

    assert protocol_overrides(["num_images=1000", "eval.posterior=sample"]) == {
        "eval.num_images": 1000,
        "eval.posterior": "sample",
    }
    with pytest.raises(config.ConfigError, match="did you mean"):
        protocol_overrides(["num_image=3"])
    with pytest.raises(config.ConfigError):
        protocol_overrides(["model.latent_channels=4"])


def test_posterior_sample_is_its_own_protocol_and_reproducible(no_weights, tmp_path):
    folder = run_folder(tmp_path, "sample")
    mean = E.evaluate(StandIn(0.0), cfg_for(metrics=["psnr", "ssim"]), folder, "cpu", progress=False, dataset=Images(4))
    cfg = cfg_for(metrics=["psnr", "ssim"], posterior="sample")
    a = E.evaluate(StandIn(0.0), cfg, folder, "cpu", progress=False, dataset=Images(4))
    b = E.evaluate(StandIn(0.0), cfg, folder, "cpu", progress=False, dataset=Images(4), force=True)
    assert a["protocol_id"] != mean["protocol_id"] and a["protocol"]["sample_seed"] == protocol.SAMPLE_SEED
    assert math.isinf(mean["metrics"]["psnr"]) and a["metrics"]["psnr"] < 40  # the sample differs
    assert a["metrics"] == b["metrics"]


def test_evaluate_command_evaluates_completed_runs_once(no_weights, tmp_path, capsys):
    import run_study
    from study.autoencoder.loop import save_checkpoint
    from study.models.autoencoder import build_autoencoder
    from study.studyfile.grid import expand
    from study.studyfile.parse import load_study
    from study.trainer.ema import EMA

    spec_path = Path(__file__).resolve().parents[1] / "ablations" / "smoke.yaml"
    variants = expand(load_study(spec_path), None)
    root = tmp_path / "results"
    done = variants[0]
    folder = store.init_run(root, done.config, run_id(done.config))
    ae = build_autoencoder(config.autoencoder_args(done.config.model))  # an untrained model is enough here
    ema = EMA(ae, done.config.train.ema_decay)  # the demo evaluates its weights' EMA (eval.weights: ema)
    save_checkpoint(folder, 0, ae, None, torch.optim.Adam(ae.parameters()), None, ema)
    store.mark_done(folder)
    argv = [
        "evaluate",
        str(spec_path),
        "--results",
        str(root),
        "--device",
        "cpu",
        "--protocol",
        "num_images=4",
        "batch_size=4",
        "metrics=[psnr,ssim,rfid]",
    ]
    assert run_study.main(argv) == 0
    out = capsys.readouterr().out
    assert f"1 evaluated, 0 reused, {len(variants) - 1} skipped, 0 failed" in out
    assert "rfid: unavailable: " in out
    (record,) = store.read_evals(store.run_dir(root, done.run_id)).values()
    assert record["num_images"] == 4 and set(record["metrics"]) == {"psnr", "ssim"}
    assert run_study.main(argv) == 0
    assert "0 evaluated, 1 reused" in capsys.readouterr().out
    assert run_study.main(argv[:-3] + ["num_images=4", "posterior=sample", "metrics=[psnr]"]) == 0
    assert len(store.read_evals(store.run_dir(root, done.run_id))) == 2
    assert run_study.main(argv[:-3] + ["num_imagez=4"]) == 2
    capsys.readouterr()

    # a completed run without a checkpoint is a failure of its own, never random weights
    store.mark_done(store.init_run(root, variants[1].config, run_id(variants[1].config)))
    assert run_study.main(argv) == 1
    out = capsys.readouterr().out
    assert f"{variants[1].name} ({variants[1].run_id}): failed, " in out and "no checkpoint" in out
    assert "0 evaluated, 1 reused" in out and "1 failed" in out
    assert store.read_evals(store.run_dir(root, variants[1].run_id)) == {}
