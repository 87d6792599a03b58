"""The metric registry: each metric an evaluation can compute, by name, with how it is computed
from a batch of originals and reconstructions (uint8 N x 3 x H x W) and the definition its
protocol records. Its facts (heading, unit, direction, digits, what it needs) are
study/config/metric_specs.py, which the config and the report read; ``register`` adds both
halves, so a new metric is one ``Metric`` entry plus its function.

Every metric here is computed from the same reconstructions, decoded once per evaluation; the
conventions beside the paper's (PSNR over the set, on luma; SSIM with scikit-image's default
window, on luma, with ``data_range=2``; LPIPS on AlexNet or VGG; per-image spreads) are the
field's, each with its source in a comment and docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import Tensor

from study.config import EvalConfig, metric_specs
from study.config.metric_specs import MetricSpec
from study.measure import metrics as metric_fns
from study.measure import weights as weight_files


class SetMetric(Protocol):
    """A metric of the whole set, fed every batch."""

    def update(self, a: Tensor, b: Tensor) -> None: ...

    def value(self) -> float: ...


@dataclass
class Tools:
    """What the wanted metrics loaded, by the need a spec names ("inception", "lpips",
    "lpips:alex", ...; one network per ``need_key``), and the originals' cached Inception
    statistics when the evaluation has them."""

    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    reference: tuple[np.ndarray, np.ndarray] | None = None


PerImage = Callable[[Tensor, Tensor, Tools], Tensor]  # (originals, reconstructions, tools) -> N values
# (eval config) -> (the protocol's entry for the metric, the packages whose versions it records)
Define = Callable[[EvalConfig], tuple[Any, tuple[str, ...]]]


@dataclass(frozen=True)
class Metric:
    spec: MetricSpec
    define: Define
    per_image: PerImage | None = None  # spec.kind "per_image"
    accumulate: Callable[[Tools], SetMetric] | None = None  # spec.kind "set"
    min_images: int = 1


# --------------------------------------------------------------------------------------------
# what metrics load
# --------------------------------------------------------------------------------------------
def need_key(need: str, ev: EvalConfig) -> str:
    """A spec's need as the key of what is loaded: "lpips" is the net ``eval.lpips_net`` names."""
    return f"lpips:{ev.lpips_net}" if need == "lpips" else need


def weights_of(key: str) -> str:
    """The weights file (study.measure.weights) a need key loads."""
    return weight_files.LPIPS_BACKBONES[key.split(":", 1)[1]] if key.startswith("lpips:") else key


def load(key: str, device: Any, weights_dir: Any) -> torch.nn.Module:
    """The network of a need key; MissingWeightsError where its weights are not staged."""
    if key == "inception":
        return metric_fns.inception_extractor(weight_files.resolve("inception", weights_dir).path, device)
    if key.startswith("lpips:"):
        return weight_files.load_lpips(key.split(":", 1)[1], device, weights_dir)
    raise KeyError(f"no loader for {key!r}")


# --------------------------------------------------------------------------------------------
# rFID: Inception statistics of both sets (the originals' may come from the evaluation's cache)
# --------------------------------------------------------------------------------------------
class FidTally:
    """rFID of the set: the reconstructions' pool3 statistics against the originals', which are
    accumulated too unless ``tools.reference`` holds them; ``computed`` says which."""

    def __init__(self, tools: Tools):
        self.extractor = tools.models["inception"]
        self.reference = tools.reference
        self.real = metric_fns.FeatureStats() if self.reference is None else None
        self.fake = metric_fns.FeatureStats()
        self.computed = False

    def update(self, a: Tensor, b: Tensor) -> None:
        if self.real is not None:
            self.real.update(metric_fns.inception_features(self.extractor, a))
        self.fake.update(metric_fns.inception_features(self.extractor, b))

    def value(self) -> float:
        if self.reference is None:
            assert self.real is not None
            self.reference, self.computed = (self.real.mean(), self.real.cov()), True
        return metric_fns.frechet_distance(*self.reference, self.fake.mean(), self.fake.cov())


# --------------------------------------------------------------------------------------------
# the protocol's definitions
# --------------------------------------------------------------------------------------------
def _rfid(ev: EvalConfig) -> tuple[Any, tuple[str, ...]]:
    return {
        "extractor": f"torch-fidelity {metric_fns.FID_EXTRACTOR}",
        "features": f"pool3 ({metric_fns.FID_LAYER})",
        "weights_sha256": weight_files.expected_sha256("inception"),
        "statistics": "float64 mean and unbiased covariance; all originals vs all reconstructions",
    }, ("torch-fidelity",)


def _lpips(net: str | None) -> Define:
    def define(ev: EvalConfig) -> tuple[Any, tuple[str, ...]]:
        name = net or ev.lpips_net
        linear = weight_files.lpips_linear_path(name)
        return {
            "net": name,
            "version": "0.1",
            "backbone_sha256": weight_files.expected_sha256(weight_files.LPIPS_BACKBONES[name]),
            "linear_sha256": weight_files.sha256_file(linear) if linear.is_file() else None,
            "input": "uint8-quantised images scaled to [-1, 1]",
            "reduce": "mean over images",
        }, ("lpips", "torchvision")

    return define


def _ssim(window: str, covariance: str, data_range: Any, **extra: Any) -> Define:
    text = {"window": window, "k1": metric_fns.SSIM_K1, "k2": metric_fns.SSIM_K2, "data_range": data_range}
    text |= extra | {"covariance": covariance, "reduce": "mean over valid window positions, channels, images"}
    return lambda ev: (dict(text), ())


def _text(text: str) -> Define:
    return lambda ev: (text, ())


GAUSSIAN = f"gaussian {metric_fns.SSIM_WINDOW}x{metric_fns.SSIM_WINDOW} sigma {metric_fns.SSIM_SIGMA}"
UNIFORM = f"uniform {metric_fns.SSIM_UNIFORM_WINDOW}x{metric_fns.SSIM_UNIFORM_WINDOW} (scikit-image's default)"
LUMA = "BT.601 luma 16+(65.481R+128.553G+24.966B)/255 of the uint8 images, float64, not rounded"


def _lpips_per_image(need: str) -> PerImage:
    return lambda a, b, tools: metric_fns.lpips_distance(tools.models[need], a, b)


REGISTRY: dict[str, Metric] = {
    m.spec.name: m
    for m in (
        # the paper's four (LDM's protocol; docs/evaluation.md)
        Metric(metric_specs.SPECS["rfid"], _rfid, accumulate=FidTally, min_images=2),
        Metric(
            metric_specs.SPECS["psnr"],
            _text("uint8 [0, 255]; per image 10*log10(255^2/MSE over CxHxW); mean over images"),
            lambda a, b, tools: metric_fns.psnr(a, b),
        ),
        Metric(
            metric_specs.SPECS["ssim"],
            _ssim(GAUSSIAN, "population", 255),
            lambda a, b, tools: metric_fns.ssim(a, b),
        ),
        Metric(metric_specs.SPECS["lpips"], _lpips(None), _lpips_per_image("lpips")),
        # PSNR of the whole set, one MSE over every image (FlowMo's evaluate.py computes it per batch)
        Metric(
            metric_specs.SPECS["psnr@set"],
            _text("uint8 [0, 255]; 10*log10(255^2/MSE over every value of every image); one number"),
            accumulate=lambda tools: metric_fns.SetPsnr(),
        ),
        # on luma: scikit-image's rgb2ycbcr Y (the channel super-resolution harnesses measure, e.g.
        # BasicSR's calculate_psnr/calculate_ssim with test_y_channel=True), peak 255
        Metric(
            metric_specs.SPECS["psnr@luma"],
            _text(f"{LUMA}; per image 10*log10(255^2/MSE over HxW); mean over images"),
            lambda a, b, tools: metric_fns.psnr_luma(a, b),
        ),
        Metric(
            metric_specs.SPECS["ssim@luma"],
            _ssim(GAUSSIAN, "population", 255, input=LUMA),
            lambda a, b, tools: metric_fns.ssim_luma(a, b),
        ),
        # scikit-image's structural_similarity with its defaults (win_size 7, uniform, sample covariance)
        Metric(
            metric_specs.SPECS["ssim@skimage"],
            _ssim(UNIFORM, "sample", 255),
            lambda a, b, tools: metric_fns.ssim_skimage(a, b),
        ),
        # the same with data_range=2.0 on [0, 1] images, as LlamaGen's reconstruction_vae_ddp.py and
        # MAETok's reconstruct_vq.py call it (510 on [0, 255]: SSIM is unchanged by scaling both)
        Metric(
            metric_specs.SPECS["ssim@range2"],
            _ssim(UNIFORM, "sample", "2.0 on [0, 1] images (510 on [0, 255])"),
            lambda a, b, tools: metric_fns.ssim_skimage(a, b, data_range=510.0),
        ),
        Metric(metric_specs.SPECS["lpips@alex"], _lpips("alex"), _lpips_per_image("lpips:alex")),
        Metric(metric_specs.SPECS["lpips@vgg"], _lpips("vgg"), _lpips_per_image("lpips:vgg")),
    )
}


# --------------------------------------------------------------------------------------------
# by name
# --------------------------------------------------------------------------------------------
def metric(name: str) -> Metric:
    """The metric ``eval.metrics`` names; a spread ``<name>_std`` is its base's per-image values
    reduced by the population standard deviation (ddof 0, numpy's ``std``) instead of the mean."""
    base, reduce = metric_specs.split_name(name)
    m = REGISTRY[base]
    if reduce != "std":
        return m

    def define(ev: EvalConfig) -> tuple[Any, tuple[str, ...]]:
        of, packages = m.define(ev)
        return {"of": base, "per_image": of, "reduce": "population standard deviation over images (ddof 0)"}, packages

    return Metric(metric_specs.spec(name), define, m.per_image, min_images=m.min_images)


def register(m: Metric) -> None:
    """Add a metric: its facts to study.config.metric_specs (what ``eval.metrics`` accepts and the
    report shows) and its function here."""
    if (m.per_image is None) == (m.accumulate is None) or (m.per_image is None) != (m.spec.kind == "set"):
        raise ValueError(f"metric {m.spec.name!r}: a {m.spec.kind} metric needs exactly its function")
    metric_specs.add(m.spec)
    REGISTRY[m.spec.name] = m
