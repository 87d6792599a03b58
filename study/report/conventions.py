"""The field's evaluation conventions as our metric names: one entry per source, saying per metric
which of our metrics computes its number and how close that is (``exact``, ``nearest``, ...), its
resize and posterior, and the keys it was read from. Details: docs/reports.md, "The conventions
table".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["exact", "nearest", "not stated", "not reported", "not ours"]
METRICS = ("rfid", "psnr", "ssim", "lpips")  # the four a source publishes, in the paper's order
PREPROCESS = ("ldm", "adm", "torchvision", "pil_bicubic")  # eval.preprocess (study/config/sections.py)
NOT_STATED = "convention not stated"


@dataclass(frozen=True)
class Rule:
    """How a source computes one metric, as one of ours (``metric``: a registry name; None where
    none of ours computes it)."""

    status: Status
    metric: str | None = None
    why: str = ""  # where ours differs, or what the source does instead

    @property
    def shows_ours(self) -> bool:
        """Whether a number of ours stands for it (exactly, nearly, or as a labelled guess)."""
        return self.metric is not None and self.status in ("exact", "nearest", "not stated")

    def label(self) -> str:
        """The rule in a table cell: ``ssim@range2``, ``psnr@set (nearest: ...)``."""
        if self.status == "exact":
            return f"{self.metric}"
        if self.status == "nearest":
            return f"{self.metric} (nearest: {self.why})"
        if self.status == "not stated":
            guess = f"; nearest of ours: {self.metric}" if self.metric else ""
            return f"not stated ({self.why}){guess}" if self.why else f"not stated{guess}"
        if self.status == "not reported":
            return "not reported"
        return f"not ours: {self.why}"


def exact(metric: str) -> Rule:
    return Rule("exact", metric)


def nearest(metric: str, why: str) -> Rule:
    return Rule("nearest", metric, why)


def not_stated(guess: str | None, why: str = "") -> Rule:
    return Rule("not stated", guess, why)


def not_ours(why: str) -> Rule:
    return Rule("not ours", None, why)


NOT_REPORTED = Rule("not reported")


@dataclass(frozen=True)
class Convention:
    """One source's evaluation, as our options and metrics."""

    name: str
    files: str  # keys of docs/conventions.md's "The files read"
    rfid: Rule
    psnr: Rule
    ssim: Rule
    lpips: Rule
    preprocess: str  # an eval.preprocess name, or what the source does where none is
    posterior: str  # "mean", "sample", or what the source does / "not stated"
    spread: bool = False  # the source prints mean +- standard deviation over images

    def rule(self, metric: str) -> Rule:
        return {"rfid": self.rfid, "psnr": self.psnr, "ssim": self.ssim, "lpips": self.lpips}[metric]

    def name_of(self) -> str:
        """The convention's name in a table: the source, its resize and posterior, its metrics."""
        metrics = ", ".join(f"{m} {self.rule(m).metric}" for m in METRICS if self.rule(m).shows_ours)
        return f"{self.name} ({self.preprocess}, posterior {self.posterior}{'; ' + metrics if metrics else ''})"


PSIM = "PSIM, an LPIPS-type distance whose network is not named"
CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        # the paper's protocol ("following the LDM pipeline"); LDM's README prints PSNR and PSIM
        # as mean +- std and no SSIM [L3]; its ImageNetValidation resize [L1, T1]
        Convention(
            "LDM",
            "L1-L4, T1",
            not_stated("rfid", "rFID vs val; implementation"),
            not_stated("psnr", "definition"),
            NOT_REPORTED,
            not_stated("lpips@vgg", PSIM + "; LDM trains with VGG LPIPS"),
            "ldm",
            "not stated",
            spread=True,
        ),
        Convention(
            "SD-VAE model cards",
            "S1",
            not_stated("rfid", "implementation"),
            not_stated("psnr", "definition"),
            not_stated("ssim", "implementation"),
            not_stated("lpips@vgg", PSIM),
            "not stated",
            "not stated",
            spread=True,
        ),
        Convention(
            "LightningDiT",
            "D1-D3",
            not_ours("pytorch-fid on PNG folders"),
            exact("psnr"),
            nearest("ssim", "theirs torchmetrics' on unquantised floats, per-batch means"),
            nearest("lpips@vgg", "their own VGG LPIPS file, on unquantised floats"),
            "torchvision",
            "sample",
        ),
        Convention(
            "TiTok",
            "K1-K4",
            nearest("rfid", "their uint8 cast truncates, ours rounds"),
            NOT_REPORTED,
            NOT_REPORTED,
            NOT_REPORTED,
            "torchvision bicubic on PIL (nearest: pil_bicubic)",
            "sample (VAE variant)",
        ),
        Convention(
            "LlamaGen",
            "G1, G3",
            not_ours("ADM's TensorFlow evaluator on .npz batches"),
            exact("psnr"),
            exact("ssim@range2"),
            NOT_REPORTED,
            "adm",
            "sample",
        ),
        Convention(
            "MAETok",
            "M1, M2",
            nearest("rfid", "torchmetrics' FID: the same features, another matrix square root"),
            exact("psnr"),
            exact("ssim@range2"),
            NOT_REPORTED,
            "adm",
            "not stated",
        ),
        Convention(
            "FlowMo",
            "F1-F5",
            not_ours("pytorch-fid on unquantised floats"),
            nearest("psnr@set", "theirs over batches of 5, averaged; ours over the whole set"),
            nearest("ssim@skimage", "their uint8 cast truncates, ours rounds"),
            nearest("lpips@alex", "they report AlexNet and VGG (lpips@vgg)"),
            "torchvision",
            "none (a flow decoder from seeded noise)",
        ),
        Convention(
            "DC-AE",
            "E1-E6",
            not_ours("precomputed ImageNet-512 statistics, pytorch-fid-style network"),
            exact("psnr"),
            nearest("ssim", "torchmetrics' SSIM: our window and constants, its border not compared"),
            nearest("lpips@alex", "torchmetrics' wrapper of the lpips network, not compared"),
            "adm",
            "not stated",
        ),
        # the two harnesses of results/paper/reference_autoencoders.csv
        Convention(
            "open-litevae",
            "R1",
            not_stated("rfid"),
            not_stated("psnr"),
            not_stated("ssim"),
            not_stated("lpips"),
            "bicubic resize and center crop, library not stated (nearest: pil_bicubic)",
            "not stated",
        ),
        Convention(
            "AutoencoderKL (lavinal712)",
            "V1-V3",
            not_ours("pytorch-fid on PNG folders of truncated uint8"),
            nearest("psnr", "theirs on unquantised floats"),
            not_ours("scikit-image with a uniform 11x11 window (win_size=11), data_range 1"),
            nearest("lpips@vgg", "taming's VGG LPIPS on unquantised floats"),
            "torchvision",
            "sample",
            spread=True,
        ),
    )
}
PAPER = "LDM"  # the convention of the paper's own numbers

# results/paper/reference_autoencoders.csv's ``source`` column -> its convention.
SOURCES = {
    "stabilityai/sd-vae-ft-mse model card": "SD-VAE model cards",
    "RGenDiff/open-litevae README": "open-litevae",
    "lavinal712/AutoencoderKL README": "AutoencoderKL (lavinal712)",
}


def convention_of(source: str) -> Convention | None:
    """The convention of a reference row's source (None: not recorded here, so not stated)."""
    name = SOURCES.get(source, source)
    return CONVENTIONS.get(name)


def preprocess_name(resize: str | None) -> str:
    """Our ``eval.preprocess`` behind a protocol's ``resize`` text (its descriptions start with
    the name; ``pil_bicubic`` keeps the older wording); the sample photos' grid crops otherwise."""
    text = str(resize or "")
    for name in PREPROCESS:
        if text.startswith(f"{name}:"):
            return name
    if text.startswith("shorter side to the resolution, PIL bicubic"):
        return "pil_bicubic"
    return "sample photos' grid crops" if text.startswith("square grid crops") else (text or "not recorded")


def mismatch(convention: Convention, preprocess: str, posterior: str) -> str:
    """Where the evaluated images differ, or may differ, from the source's, in words ("" where
    they match)."""
    out = []
    if convention.preprocess == "not stated":
        out.append(f"resize not stated, here {preprocess}")
    elif convention.preprocess != preprocess:
        out.append(f"resize {convention.preprocess}, here {preprocess}")
    if convention.posterior == "not stated":
        out.append(f"posterior not stated, here {posterior}")
    elif convention.posterior in ("mean", "sample") and convention.posterior != posterior:
        out.append(f"posterior {convention.posterior}, here {posterior}")
    return "; ".join(out)
