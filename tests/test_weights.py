"""Staging the metrics' weights for offline nodes (study/measure/weights.py, `run_study.py weights`).

No test touches the network: downloads go through an injected opener (a file:// URL served by
urllib itself, or one that fails the way an offline machine does)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from study.measure import weights as weight_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def wdir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(folder))
    for w in weight_files.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    return folder


def _local_registry(tmp_path: Path, payloads: dict[str, bytes], wrong: set[str] = frozenset()):
    """Registry entries served from file:// URLs; names in ``wrong`` pin a digest the file lacks."""
    reg = {}
    for name, data in payloads.items():
        src = tmp_path / "server" / f"{name}-0000.pth"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        digest = hashlib.sha256(data if name not in wrong else b"something else").hexdigest()
        reg[name] = weight_files.WeightFile(name, f"{name}-{digest[:8]}.pth", src.as_uri(), digest, len(data), "test")
    return reg


def _offline(url, timeout=None):
    raise urllib.error.URLError(OSError(101, "Network is unreachable"))


# --------------------------------------------------------------------------------------------
def test_registry_pins_full_sha256_consistent_with_the_file_names():
    for w in weight_files.REGISTRY.values():
        # vgg19 alone pins torch hub's 8-digit prefix (no full digest at hand; see weights.py)
        assert len(w.sha256) == (8 if w.name == "vgg19" else 64) and int(w.sha256, 16) >= 0
        prefix = w.filename.rsplit("-", 1)[1].split(".")[0]  # torch hub: <name>-<sha256[:8]>.pth
        assert w.sha256.startswith(prefix), w.name
        assert w.url.endswith("/" + w.filename)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import AlexNet_Weights, VGG16_Weights, VGG19_Weights

    assert weight_files.REGISTRY["inception"].url == URL_INCEPTION_V3
    assert weight_files.REGISTRY["alexnet"].url == AlexNet_Weights.IMAGENET1K_V1.url
    assert weight_files.REGISTRY["vgg16"].url == VGG16_Weights.IMAGENET1K_V1.url
    assert weight_files.REGISTRY["vgg19"].url == VGG19_Weights.IMAGENET1K_V1.url


def test_weights_dir_defaults_to_torch_hub_and_honours_env_and_argument(tmp_path, monkeypatch):
    monkeypatch.delenv(weight_files.WEIGHTS_ENV, raising=False)
    assert weight_files.weights_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(tmp_path / "a"))
    assert weight_files.weights_dir() == tmp_path / "a"
    assert weight_files.weights_dir(tmp_path / "b") == tmp_path / "b"


def test_check_reports_present_missing_and_corrupt(wdir, tmp_path, monkeypatch):
    reg = _local_registry(tmp_path, {"inception": b"I" * 1000, "alexnet": b"A" * 10, "vgg16": b"V" * 10})
    monkeypatch.setattr(weight_files, "REGISTRY", reg)
    wdir.mkdir()
    (wdir / reg["inception"].filename).write_bytes(b"I" * 1000)
    (wdir / reg["alexnet"].filename).write_bytes(b"A" * 9)  # torn download
    rows = weight_files.check()
    assert [(r.name, r.state) for r in rows] == [("inception", "present"), ("alexnet", "corrupt"), ("vgg16", "missing")]
    assert all(r.path.parent == wdir for r in rows)
    text = weight_files.format_check(rows)
    assert str(wdir) in text and weight_files.WEIGHTS_ENV in text
    assert "missing" in text and "corrupt" in text and "weights fetch" in text


def test_check_on_an_empty_cache_says_what_is_missing_and_where_it_looked(wdir):
    rows = weight_files.check()
    assert {r.state for r in rows} == {"missing"} and {r.name for r in rows} == set(weight_files.REGISTRY)
    text = weight_files.format_check(rows)
    assert f"weights directory: {wdir}" in text
    for w in weight_files.REGISTRY.values():
        assert str(wdir / w.filename) in text


def test_fetch_downloads_verifies_and_skips_what_is_present(wdir, tmp_path):
    payload = {"inception": bytes(range(256)) * 4000, "alexnet": b"alex" * 100}
    reg = _local_registry(tmp_path, payload)
    out = weight_files.fetch(registry=reg, progress=False)
    assert [(r.name, r.state) for r in out] == [("inception", "downloaded"), ("alexnet", "downloaded")]
    for name, data in payload.items():
        assert (wdir / reg[name].filename).read_bytes() == data
    assert [r.state for r in weight_files.fetch(registry=reg, progress=False)] == ["present", "present"]
    assert not list(wdir.glob(".*.part"))


def test_fetch_refuses_a_file_with_the_wrong_digest(wdir, tmp_path):
    reg = _local_registry(tmp_path, {"inception": b"tampered"}, wrong={"inception"})
    (r,) = weight_files.fetch(registry=reg, progress=False)
    assert r.state == "failed" and "sha256" in r.reason and "discarded" in r.reason
    assert not (wdir / reg["inception"].filename).exists()
    assert not list(wdir.glob(".*"))


def test_fetch_offline_fails_per_file_with_a_clear_reason(wdir):
    out = weight_files.fetch(progress=False, opener=_offline)
    assert [r.state for r in out] == ["failed"] * len(weight_files.REGISTRY)
    for r in out:
        assert "cannot download" in r.reason and "Network is unreachable" in r.reason
        assert weight_files.WEIGHTS_ENV in r.reason
    text = weight_files.format_fetch(out)
    assert f"{len(out)} of {len(out)} file(s) failed" in text
    assert not any(wdir.glob("*.pth"))


def test_resolve_and_load_lpips_raise_naming_file_directory_and_command(wdir):
    with pytest.raises(weight_files.MissingWeightsError) as e:
        weight_files.inception_weights_path()
    msg = str(e.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and str(wdir) in msg
    assert "python run_study.py weights fetch" in msg
    with pytest.raises(weight_files.MissingWeightsError) as e:
        weight_files.load_lpips("vgg", "cpu")
    assert "vgg16-397923af.pth" in str(e.value) and str(wdir) in str(e.value)
    wdir.mkdir()
    (wdir / "alexnet-owt-7be5be79.pth").write_bytes(b"not the weights")
    with pytest.raises(weight_files.CorruptWeightsError, match="corrupt"):
        weight_files.load_lpips("alex", "cpu")


def test_load_lpips_puts_the_backbone_tensors_into_lpips(wdir, tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alex.pth"
    torch.save(tv.state_dict(), path)
    monkeypatch.setenv(weight_files.REGISTRY["alexnet"].override_env, str(path))
    model = weight_files.load_lpips("alex", "cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    feats = dict(tv.features.named_parameters())
    for slice_name in ("slice1", "slice2", "slice5"):
        for name, p in getattr(model.net, slice_name).named_parameters():
            assert torch.equal(p, feats[name]), (slice_name, name)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    d = model(x, x.flip(0)).flatten()
    assert d.shape == (2,) and (d > 0).all() and model(x, x).abs().max() < 1e-6


def test_cli_weights_check_and_offline_fetch(tmp_path):
    """`run_study.py weights check|fetch --dir D`: a listing, and a clear failure (no traceback)."""
    d = tmp_path / "w"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LITEVAE_WEIGHTS_DIR": str(tmp_path / "unused")}
    chk = subprocess.run(
        [sys.executable, "run_study.py", "weights", "check", "--dir", str(d)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert chk.returncode == 1, chk.stderr
    assert f"weights directory: {d}" in chk.stdout and "missing" in chk.stdout
    # a proxy that refuses connections: offline on any machine, fails fast
    env_off = env | {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    fetch = subprocess.run(
        [sys.executable, "run_study.py", "weights", "fetch", "--dir", str(d), "--only", "inception", "--timeout", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env_off,
        timeout=120,
    )
    assert fetch.returncode == 1
    assert "Traceback" not in fetch.stderr + fetch.stdout
    assert "cannot download" in fetch.stdout and "failed" in fetch.stdout
    assert not list(d.glob("*.pth"))


def test_fetch_from_a_folder_verifies_and_copies(wdir, tmp_path, monkeypatch):
    reg = _local_registry(tmp_path, {"inception": b"good inception", "alexnet": b"bad alexnet"}, wrong={"alexnet"})
    monkeypatch.setattr(weight_files, "REGISTRY", reg)
    src = tmp_path / "carried"
    src.mkdir()
    (src / reg["inception"].filename).write_bytes(b"good inception")
    (src / reg["alexnet"].filename).write_bytes(b"bad alexnet")
    out = {r.name: r for r in weight_files.copy_into(src)}
    assert out["inception"].state == "downloaded" and out["alexnet"].state == "failed"
    assert (wdir / reg["inception"].filename).read_bytes() == b"good inception"
    assert not (wdir / reg["alexnet"].filename).exists()
    assert [r.state for r in weight_files.check()] == ["present", "missing"]
