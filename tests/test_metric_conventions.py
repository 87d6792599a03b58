"""The field's metric conventions (issue 20.3; study/measure/registry.py), each pinned against the
library its source calls: one evaluation of real photographs (crops of scikit-image's sample
photos) reconstructed through a JPEG round trip, every convention in ``eval.metrics``; its record
must equal scikit-image's ``peak_signal_noise_ratio`` / ``structural_similarity`` /
``rgb2ycbcr`` and an independently built ``lpips.LPIPS`` computed on the gallery's saved PNGs
(the originals and reconstructions exactly as the metrics saw them)."""

from __future__ import annotations

import io

import lpips
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from torch.utils.data import Dataset

from study.config import metric_specs
from study.evaluation import evaluate as ev_mod
from study.evaluation import gallery as galleries
from study.report.columns import columns_for
from study.store.media import gallery_dir
from tests.metric_helpers import Posterior, cfg_for, independent_lpips, run_folder

pytest_plugins = ["tests.metric_fixtures"]

CONVENTIONS = ("psnr", "psnr@set", "psnr@luma", "ssim", "ssim@skimage", "ssim@luma", "ssim@range2")
LPIPS_NETS = {"lpips": "alex", "lpips@alex": "alex", "lpips@vgg": "vgg"}
SPREADS = ("psnr_std", "ssim_std", "lpips_std", "psnr@luma_std", "ssim@skimage_std", "lpips@vgg_std")


class Photos(Dataset):
    """48 x 64 crops of four of scikit-image's photographs, float in [-1, 1]."""

    def __init__(self) -> None:
        crops = [
            skimage.data.astronaut()[60:108, 180:244],
            skimage.data.chelsea()[100:148, 150:214],
            skimage.data.coffee()[150:198, 250:314],
            skimage.data.rocket()[200:248, 300:364],
        ]
        self.x = torch.stack([torch.from_numpy(c).permute(2, 0, 1) for c in crops]).float() / 127.5 - 1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


class Jpeg(nn.Module):
    """A stand-in autoencoder whose reconstruction is a JPEG round trip (quality 20): real
    compression artefacts, the same for an image in any batch."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(x * self.scale)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = []
        for img in ((z.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8):
            buf = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=20)
            back = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            out.append(torch.from_numpy(back).permute(2, 0, 1))
        return torch.stack(out).float() / 127.5 - 1


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, alexnet_file, vgg16_file):
    from study.measure import weights as weight_files

    tmp = tmp_path_factory.mktemp("conventions")
    wanted = CONVENTIONS + tuple(LPIPS_NETS) + SPREADS
    cfg = cfg_for(metrics=list(wanted), num_images=4, batch_size=3, gallery_images=4)  # two batches
    folder = run_folder(tmp, "jpeg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weight_files.WEIGHTS_ENV, str(tmp / "no-weights"))
        mp.setenv(weight_files.REGISTRY["alexnet"].override_env, str(alexnet_file))
        mp.setenv(weight_files.REGISTRY["vgg16"].override_env, str(vgg16_file))
        record = ev_mod.evaluate(Jpeg(), cfg, folder, dataset=Photos(), progress=False, cache_dir=tmp / "cache")
    saved = gallery_dir(folder, record["protocol_id"])

    def read(kind: str, i: int) -> np.ndarray:
        return np.array(Image.open(saved / galleries.file_name(kind, i)).convert("RGB"))

    pairs = [(read("original", i), read("reconstruction", i)) for i in range(4)]
    return record, pairs, {net: independent_lpips(net, f) for net, f in (("alex", alexnet_file), ("vgg", vgg16_file))}


def _y(image: np.ndarray) -> np.ndarray:
    return rgb2ycbcr(image)[..., 0]


def _per_image(name: str, o: np.ndarray, r: np.ndarray) -> float:
    """Each convention as its source computes it, with scikit-image."""
    if name == "psnr":
        return peak_signal_noise_ratio(o, r, data_range=255)
    if name == "psnr@luma":
        return peak_signal_noise_ratio(_y(o), _y(r), data_range=255)
    gaussian = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    if name == "ssim":
        return structural_similarity(o, r, channel_axis=-1, **gaussian)
    if name == "ssim@luma":
        return structural_similarity(_y(o), _y(r), **gaussian)
    if name == "ssim@skimage":  # every default: 7x7 uniform window, sample covariance, range of uint8
        return structural_similarity(o, r, channel_axis=-1)
    if name == "ssim@range2":  # LlamaGen / MAETok: images in [0, 1], data_range=2.0
        return structural_similarity(o / 255.0, r / 255.0, data_range=2.0, channel_axis=-1)
    raise KeyError(name)


def _lpips(model: torch.nn.Module, o: np.ndarray, r: np.ndarray) -> float:
    with torch.no_grad():
        return float(model(lpips.im2tensor(o), lpips.im2tensor(r)))


def test_every_convention_equals_its_reference_library(evaluated):
    record, pairs, references = evaluated
    got = record["metrics"]
    assert record["unavailable"] == {} and set(got) == set(CONVENTIONS + tuple(LPIPS_NETS) + SPREADS)
    values: dict[str, list[float]] = {}
    for name in CONVENTIONS:
        if name != "psnr@set":
            values[name] = [_per_image(name, o, r) for o, r in pairs]
            assert got[name] == pytest.approx(np.mean(values[name]), abs=1e-9), name
    for name, net in LPIPS_NETS.items():
        values[name] = [_lpips(references[net], o, r) for o, r in pairs]
        assert got[name] == pytest.approx(np.mean(values[name]), abs=1e-6), name
    for name in SPREADS:  # numpy's std: the population standard deviation over the images
        assert got[name] == pytest.approx(np.std(values[name.removesuffix("_std")]), abs=1e-6), name
    # PSNR over the set: one MSE over every value of the stacked images (FlowMo's batch PSNR)
    stacked = np.stack([o for o, _ in pairs]), np.stack([r for _, r in pairs])
    assert got["psnr@set"] == pytest.approx(peak_signal_noise_ratio(*stacked, data_range=255), abs=1e-9)
    # the conventions are not the same numbers: the table would be useless otherwise
    assert got["psnr@set"] != pytest.approx(got["psnr"], abs=1e-3)
    assert len({round(got[n], 4) for n in ("ssim", "ssim@skimage", "ssim@luma", "ssim@range2")}) == 4
    assert got["lpips"] == got["lpips@alex"] != pytest.approx(got["lpips@vgg"], abs=1e-4)


def test_each_convention_is_defined_in_the_protocol_and_shown_by_the_report(evaluated):
    record, _, _ = evaluated
    p = record["protocol"]
    for name in record["metrics"]:
        assert p[name], name
    assert p["ssim@range2"]["data_range"].startswith("2.0") and p["ssim@skimage"]["covariance"] == "sample"
    assert p["lpips@vgg"]["net"] == "vgg" and p["psnr_std"]["of"] == "psnr"
    headings = [c.heading for c in columns_for(None, record["metrics"])]
    assert headings[:4] == ["rFID ↓", "LPIPS ↓", "PSNR ↑", "SSIM ↑"]  # the paper's four first
    for shown in ("PSNR (luma) ↑", "PSNR (set) ↑", "SSIM (7x7) ↑", "SSIM (range 2) ↑", "LPIPS (VGG) ↓", "PSNR σ"):
        assert shown in headings


def test_the_paper_defaults_keep_the_protocol_and_unknown_names_are_refused():
    from study import config

    assert config.EvalConfig().metrics == metric_specs.PAPER_METRICS == ("rfid", "psnr", "ssim", "lpips")
    with pytest.raises(config.ConfigError, match="eval.metrics"):
        cfg_for(metrics=["psnr@lumaa"])
    with pytest.raises(config.ConfigError, match="eval.metrics"):
        cfg_for(metrics=["rfid_std"])  # a set metric has no per-image spread
