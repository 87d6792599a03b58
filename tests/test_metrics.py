"""Evaluation metrics and the protocol (study/metrics.py).

The Inception file is generated locally (torch-fidelity's architecture, random init with the
convolutions re-initialised Kaiming, so pool3 features vary with the image; see
study.weights.make_random_inception); the LPIPS backbone is a randomly initialised torchvision
AlexNet. Both are passed in as custom files ($LITEVAE_INCEPTION_WEIGHTS, $LITEVAE_ALEXNET_WEIGHTS).
The autoencoder is a stand-in with the real interface (encode -> posterior with mode()/sample(),
decode) whose reconstruction is the input plus a deterministic, batch-independent perturbation
of a chosen size: what is under test is the metric pipeline, not a model.
Feature extraction costs ~0.3-0.5 s per image on this CPU, so the sets are 8 images a side.
Agreement of the whole rFID pipeline with torch_fidelity.calculate_metrics on the same images is
printed by benchmarks/bench_eval.py (relative difference ~2e-6); here the Frechet distance is
checked against torch-fidelity's and scipy's on the same statistics.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch import nn
from torch.utils.data import Dataset

from study import config as C
from study.measure import metrics as M
from study import store
from study.measure import weights as W

N_IMAGES = 8
RES = 32


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def inception_file(tmp_path_factory) -> Path:
    return W.make_random_inception(tmp_path_factory.mktemp("weights") / "inception-random.pth", seed=0)


@pytest.fixture(scope="session")
def alexnet_file(tmp_path_factory) -> Path:
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path_factory.mktemp("weights") / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> Path:
    """An empty weights directory and no custom files: nothing can be loaded."""
    folder = tmp_path / "empty-weights"
    folder.mkdir()
    monkeypatch.setenv(W.WEIGHTS_ENV, str(folder))
    for w in W.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    return folder


@pytest.fixture
def test_weights(no_weights, monkeypatch, inception_file, alexnet_file) -> None:
    monkeypatch.setenv(W.REGISTRY["inception"].override_env, str(inception_file))
    monkeypatch.setenv(W.REGISTRY["alexnet"].override_env, str(alexnet_file))


class Images(Dataset):
    """Smooth random colour images (bicubic upsampling of 4x4 noise), float in [-1, 1]."""

    def __init__(self, n: int = N_IMAGES, seed: int = 0, res: int = RES):
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 3, 4, 4, generator=g)
        self.x = F.interpolate(low, size=res, mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


class Posterior:
    def __init__(self, z: torch.Tensor):
        self.z = z

    def mode(self) -> torch.Tensor:
        return self.z

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.z + 0.1 * torch.randn(self.z.shape, generator=generator, device=self.z.device)


class StandIn(nn.Module):
    """encode: identity posterior; decode: z + sigma * a pseudo-random pattern that is a function
    of each pixel's value and position only (so it does not depend on the batching)."""

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        self.sigma = sigma
        self.scale = nn.Parameter(torch.ones(()))  # a module with a parameter, as a real model

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(x * self.scale)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(z[0].numel(), dtype=z.dtype, device=z.device).view(z.shape[1:])
        return z + self.sigma * torch.sin(4321.0 * z + 1.37 * pos)


def cfg_for(**eval_overrides) -> C.ExperimentConfig:
    over = {"data.resolution": RES, "eval.num_images": N_IMAGES, "eval.batch_size": N_IMAGES}
    over.update({f"eval.{k}": v for k, v in eval_overrides.items()})
    return C.validate(C.apply_overrides(C.ExperimentConfig(), over))


def run_folder(root: Path, name: str) -> Path:
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    return folder


# --------------------------------------------------------------------------------------------
# PSNR and SSIM
# --------------------------------------------------------------------------------------------
def test_psnr_equals_the_formula_on_hand_made_images():
    x = torch.zeros(3, 3, 16, 16, dtype=torch.uint8)
    y = x.clone()
    y[0, :, :8, :] = 10            # half the values off by 10: MSE 50
    y[1, 0, 0, 0] = 255            # one value off by 255: MSE 255^2 / 768
    y[2] = x[2]                    # identical: +inf
    got = M.psnr(x, y)
    assert got.dtype == torch.float64 and got.shape == (3,)
    assert got[0].item() == pytest.approx(10 * math.log10(255**2 / 50.0), abs=1e-12)
    assert got[1].item() == pytest.approx(10 * math.log10(768), abs=1e-12)
    assert math.isinf(got[2].item()) and got[2] > 0
    # uint8 wrap-around must not happen: 0 vs 255 is a difference of 255, not 1
    a = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert M.psnr(a, torch.zeros_like(a)).item() == pytest.approx(0.0, abs=1e-12)


def test_psnr_and_ssim_refuse_floats():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(TypeError):
        M.psnr(x, x)
    with pytest.raises(TypeError):
        M.ssim(x, x)


@pytest.mark.parametrize("shape,noise", [((3, 3, 40, 33), 20.0), ((2, 3, 11, 11), 60.0),
                                         ((2, 1, 64, 48), 5.0), ((1, 3, 24, 24), 0.0)])
def test_ssim_matches_scikit_image(shape, noise):
    g = torch.Generator().manual_seed(sum(shape))
    smooth = F.interpolate(torch.rand(shape[0], shape[1], 5, 5, generator=g), size=shape[2:], mode="bilinear")
    x = (smooth * 255).round().to(torch.uint8)
    y = (x.double() + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 255).round().to(torch.uint8)
    got = M.ssim(x, y)
    for i in range(shape[0]):
        want = structural_similarity(x[i].numpy(), y[i].numpy(), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255, channel_axis=0)
        assert abs(got[i].item() - want) < 1e-4, (i, got[i].item(), want)
    if noise == 0:
        assert torch.allclose(got, torch.ones_like(got))
    else:
        assert (got < 0.999).all()


def test_ssim_needs_the_window_to_fit():
    x = torch.zeros(1, 3, 10, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match="11x11"):
        M.ssim(x, x)


# --------------------------------------------------------------------------------------------
# Frechet distance and statistics
# --------------------------------------------------------------------------------------------
def _direct_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The textbook computation with scipy's matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_equals_a_direct_scipy_computation():
    rng = np.random.default_rng(0)
    d = 24
    f1 = rng.normal(size=(400, d)) @ rng.normal(size=(d, d))
    f2 = 0.5 + rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) * 0.8
    mu1, s1, mu2, s2 = f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False)
    ours = M.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_direct_fid(f1, f2), rel=1e-9)
    assert ours > 1.0
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    tf = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    assert ours == pytest.approx(tf["frechet_inception_distance"], rel=1e-9)
    assert abs(M.frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_feature_stats_do_not_depend_on_batching():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(37, 16)) * 3 + 100  # a large offset: a naive sum of squares would lose digits
    want_mu, want_cov = f.mean(0), np.cov(f, rowvar=False)
    for sizes in ([37], [1] * 37, [5, 11, 2, 19], [36, 1]):
        stats, start = M.FeatureStats(), 0
        for s in sizes:
            stats.update(torch.from_numpy(f[start:start + s]))
            start += s
        np.testing.assert_allclose(stats.mean(), want_mu, rtol=0, atol=1e-10)
        np.testing.assert_allclose(stats.cov(), want_cov, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------
def test_protocol_defaults_follow_ldm_and_every_field_changes_the_id(no_weights):
    base = C.apply_overrides(C.ExperimentConfig(), {"data.kind": "folder", "data.path": "/imagenet",
                                                     "data.name": "imagenet"})
    p = M.protocol(base, fingerprint="fp")
    assert p["posterior"] == "mean" and p["crop"] == "center" and p["num_images"] == 50_000
    assert p["resize"].startswith("shorter side") and p["dataset"]["split"] == "held-out"
    assert p["rfid"]["weights_sha256"] == W.REGISTRY["inception"].sha256
    assert p["lpips"]["net"] == "alex" and p["lpips"]["backbone_sha256"] == W.REGISTRY["alexnet"].sha256
    assert set(p["versions"]) >= {"torch", "torch-fidelity", "lpips"}
    json.dumps(p, allow_nan=False)
    pid = M.protocol_id(p)
    assert pid == M.protocol_id(M.protocol(base, fingerprint="fp")) and len(pid) == 12
    changed = [M.protocol(base, fingerprint="other")]
    for key, value in [("eval.num_images", 1000), ("eval.resolution", 128), ("eval.posterior", "sample"),
                       ("eval.lpips_net", "vgg"), ("eval.metrics", ["psnr", "ssim"]),
                       ("data.kind", "samples"), ("data.name", "imagenet-val"),
                       ("data.val_fraction", 0.2)]:
        changed.append(M.protocol(C.apply_overrides(base, {key: value}), fingerprint="fp"))
    ids = {M.protocol_id(q) for q in changed}
    assert pid not in ids and len(ids) == len(changed)
    # the batch size and training fields are not part of it
    same = C.apply_overrides(base, {"eval.batch_size": 3, "train.steps": 7, "model.latent_channels": 12})
    assert M.protocol_id(M.protocol(same, fingerprint="fp")) == pid


def test_protocol_records_a_custom_inception_file_by_its_own_sha256(test_weights, inception_file):
    p = M.protocol(C.ExperimentConfig(), fingerprint="fp")
    assert p["rfid"]["weights_sha256"] == W.sha256_file(inception_file) != W.REGISTRY["inception"].sha256


# --------------------------------------------------------------------------------------------
# evaluate: records, reuse, rFID behaviour
# --------------------------------------------------------------------------------------------
def test_evaluate_identity_gives_zero_fid_and_reuses_its_record(test_weights, tmp_path):
    cfg = cfg_for()
    folder = run_folder(tmp_path, "identity")
    rec = M.evaluate(StandIn(0.0), cfg, folder, "cpu", progress=False, dataset=Images())
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
    again = M.evaluate(StandIn(0.5), cfg, folder, "cpu", progress=False, dataset=Images())
    assert again["reused"] and again["metrics"] == pytest.approx(rec["metrics"])
    assert path.stat().st_mtime_ns == mtime

    # another protocol: a second record beside the first (psnr/ssim only, no Inception needed)
    other = M.evaluate(StandIn(0.0), cfg_for(metrics=["psnr", "ssim"]), folder, "cpu", progress=False,
                       dataset=Images())
    assert other["protocol_id"] != rec["protocol_id"] and not other["reused"]
    assert set(store.read_evals(folder)) == {rec["protocol_id"], other["protocol_id"]}
    assert set(other["metrics"]) == {"psnr", "ssim"}

    # force recomputes under the same id
    forced = M.evaluate(StandIn(0.1), cfg_for(metrics=["psnr", "ssim"]), folder, "cpu", progress=False,
                        dataset=Images(), force=True)
    assert not forced["reused"] and forced["protocol_id"] == other["protocol_id"]
    assert forced["metrics"]["psnr"] < 60 and store.read_evals(folder)[other["protocol_id"]]["metrics"] == \
        pytest.approx(forced["metrics"])


@pytest.fixture(scope="module")
def noise_series(tmp_path_factory, inception_file, alexnet_file):
    """Records at three perturbation sizes sharing one reference cache (batch size 8)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(W.REGISTRY["inception"].override_env, str(inception_file))
    mp.setenv(W.REGISTRY["alexnet"].override_env, str(alexnet_file))
    root = tmp_path_factory.mktemp("results")
    try:
        records = {}
        for sigma in (0.02, 0.08, 0.25):
            folder = run_folder(root, f"noise{sigma}")
            records[sigma] = M.evaluate(StandIn(sigma), cfg_for(), folder, "cpu", progress=False,
                                        dataset=Images())
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
    got = M.evaluate(StandIn(0.08), cfg_for(batch_size=3), run_folder(tmp_path, "b3"), "cpu",
                     progress=False, dataset=Images(), cache_dir=root / "cache" / "fid_ref")
    assert got["protocol_id"] == want["protocol_id"] and got["batch_size"] == 3
    for name, value in want["metrics"].items():
        assert got["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_reference_cache_equals_the_statistics_of_the_originals_read_from_png(noise_series, tmp_path,
                                                                           inception_file):
    root, records = noise_series
    ref_files = list((root / "cache" / "fid_ref").glob("*.npz"))
    assert len(ref_files) == 1
    M.write_pngs(M.to_uint8(Images().x), tmp_path / "png")
    stats = M.feature_stats(tmp_path / "png", M.inception_extractor(inception_file), batch_size=4)
    with np.load(ref_files[0]) as z:
        np.testing.assert_allclose(z["mu"], stats.mean(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(z["sigma"], stats.cov(), rtol=0, atol=1e-9)
        assert int(z["n"]) == N_IMAGES


# --------------------------------------------------------------------------------------------
# missing weights
# --------------------------------------------------------------------------------------------
def test_missing_weights_make_metrics_unavailable_not_numbers(no_weights, tmp_path):
    folder = run_folder(tmp_path, "noweights")
    rec = M.evaluate(StandIn(0.05), cfg_for(), folder, "cpu", progress=False, dataset=Images(4))
    assert set(rec["metrics"]) == {"psnr", "ssim"}
    assert set(rec["unavailable"]) == {"rfid", "lpips"}
    assert rec["missing_weights"] == ["inception", "alexnet"]
    for name, reason in rec["unavailable"].items():
        assert reason.startswith("unavailable: ") and "weights fetch" in reason
        assert str(no_weights) in reason
    assert "weights-inception-2015-12-05-6726825d.pth" in rec["unavailable"]["rfid"]
    assert "alexnet-owt-7be5be79.pth" in rec["unavailable"]["lpips"]
    stored = store.read_json(folder / "eval" / f"{rec['protocol_id']}.json")
    assert stored["unavailable"] == rec["unavailable"] and "rfid" not in stored["metrics"]
    # the collected table shows the reason in place of a number
    frame = store.collect(tmp_path, "s", [{"index": 0, "name": "v", "run_id": "noweights", "seed": 0,
                                           "axes": {}}])
    assert frame.loc[0, "rfid_unavailable"].startswith("unavailable: ")
    assert "rfid" not in frame.columns

    # still missing: the record is reused as it is
    assert M.evaluate(StandIn(0.05), cfg_for(), folder, "cpu", progress=False, dataset=Images(4))["reused"]


def test_a_record_is_completed_once_the_weights_are_staged(no_weights, tmp_path, monkeypatch, inception_file):
    # (for this test) the pinned digest of the official file name is that of our random Inception
    entry = W.REGISTRY["inception"]
    monkeypatch.setitem(W.REGISTRY, "inception", W.WeightFile(
        entry.name, entry.filename, entry.url, W.sha256_file(inception_file), entry.size, entry.used_by))
    cfg = cfg_for(metrics=["rfid", "psnr"])
    folder = run_folder(tmp_path, "later")
    first = M.evaluate(StandIn(0.05), cfg, folder, "cpu", progress=False, dataset=Images(4))
    assert "rfid" in first["unavailable"] and "rfid" not in first["metrics"]
    (no_weights / entry.filename).write_bytes(inception_file.read_bytes())  # `weights fetch`
    second = M.evaluate(StandIn(0.05), cfg, folder, "cpu", progress=False, dataset=Images(4))
    assert second["protocol_id"] == first["protocol_id"] and not second["reused"]
    assert second["unavailable"] == {} and second["metrics"]["rfid"] > 0
    assert list(store.read_evals(folder)) == [first["protocol_id"]]


def test_real_model_and_eval_set_without_weights(no_weights, tmp_path):
    """The project's own data and autoencoder through evaluate, as the job calls it."""
    from study.models.autoencoder import build_autoencoder

    cfg = C.validate(C.apply_overrides(C.model_preset("LiteVAE-S"), {
        "data.resolution": 32, "eval.num_images": 4, "eval.batch_size": 4,
        "model.decoder.channels": 32, "model.decoder.channel_mult": [1, 1, 2, 2],
        "model.decoder.blocks_per_level": 1, "model.decoder.mid_attention": False}))
    torch.manual_seed(0)
    ae = build_autoencoder(cfg.model).train()
    folder = run_folder(tmp_path, "real")
    rec = M.evaluate(ae, cfg, folder, torch.device("cpu"), progress=False)
    assert ae.training  # the caller's mode is restored
    assert set(rec["metrics"]) == {"psnr", "ssim"} and set(rec["unavailable"]) == {"rfid", "lpips"}
    assert 0 < rec["metrics"]["psnr"] < 60 and -1 < rec["metrics"]["ssim"] < 1
    assert rec["protocol"]["dataset"]["fingerprint"].startswith("data-v")
    assert rec["num_images"] == 4


def test_protocol_overrides_accept_eval_keys_only():
    assert M.parse_protocol_overrides(["num_images=1000", "eval.posterior=sample"]) == {
        "eval.num_images": 1000, "eval.posterior": "sample"}
    with pytest.raises(C.ConfigError, match="did you mean"):
        M.parse_protocol_overrides(["num_image=3"])
    with pytest.raises(C.ConfigError):
        M.parse_protocol_overrides(["model.latent_channels=4"])


def test_posterior_sample_is_its_own_protocol_and_reproducible(no_weights, tmp_path):
    folder = run_folder(tmp_path, "sample")
    mean = M.evaluate(StandIn(0.0), cfg_for(metrics=["psnr", "ssim"]), folder, "cpu", progress=False,
                      dataset=Images(4))
    cfg = cfg_for(metrics=["psnr", "ssim"], posterior="sample")
    a = M.evaluate(StandIn(0.0), cfg, folder, "cpu", progress=False, dataset=Images(4))
    b = M.evaluate(StandIn(0.0), cfg, folder, "cpu", progress=False, dataset=Images(4), force=True)
    assert a["protocol_id"] != mean["protocol_id"] and a["protocol"]["sample_seed"] == M.SAMPLE_SEED
    assert math.isinf(mean["metrics"]["psnr"]) and a["metrics"]["psnr"] < 40  # the sample differs
    assert a["metrics"] == b["metrics"]


def test_evaluate_command_evaluates_completed_runs_once(no_weights, tmp_path, capsys):
    import run_study
    from study.spec.grid import expand
    from study.spec.studyfile import load_spec

    spec_path = Path(run_study.ROOT) / "ablations" / "smoke.yaml"
    variants = expand(load_spec(spec_path), None)
    root = tmp_path / "results"
    done = variants[0]
    store.mark_done(store.init_run(root, done.config))  # an untrained model is enough here
    argv = ["evaluate", str(spec_path), "--results", str(root), "--device", "cpu",
            "--protocol", "num_images=4", "batch_size=4", "metrics=[psnr,ssim,rfid]"]
    assert run_study.main(argv) == 0
    out = capsys.readouterr().out
    assert f"1 evaluated, 0 reused, {len(variants) - 1} skipped" in out
    assert "rfid: unavailable: " in out
    (record,) = store.read_evals(store.run_dir(root, done.run_id)).values()
    assert record["num_images"] == 4 and set(record["metrics"]) == {"psnr", "ssim"}
    assert run_study.main(argv) == 0
    assert "0 evaluated, 1 reused" in capsys.readouterr().out
    assert run_study.main(argv[:-3] + ["num_images=4", "posterior=sample", "metrics=[psnr]"]) == 0
    assert len(store.read_evals(store.run_dir(root, done.run_id))) == 2
    assert run_study.main(argv[:-3] + ["num_imagez=4"]) == 2
