"""Pretrained autoencoders: initialise a variant's weights from a checkpoint (``model.init``), a
diffusers folder, an LDM/CompVis or torch file, a safetensors file or one of our runs, mapping
between the three namings of one structure (``MODULES``). Formats, name rules and the matching
rule: docs/evaluation.md, "Checkpoint formats, names and matching".
"""

from __future__ import annotations

import functools
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from study.models.sdvae import SDEncoder
from study.store.checkpoint_files import Checkpoint, CheckpointError, checkpoint_sha256, resolve

Naming = Literal["ours", "ldm", "diffusers"]
NAMINGS: tuple[Naming, ...] = ("ours", "ldm", "diffusers")
LDM_PREFIX = "first_stage_model."
LDM_LOSS_PREFIX = "loss."
DECODER_SIDE = ("decoder.", "post_quant_conv.")
SHOW = 5  # keys named per kind of difference in a mismatch message


class CheckpointMismatch(CheckpointError):
    """A checkpoint whose tensors do not match the variant's model: the message names the first
    keys that differ and their shapes."""


# --------------------------------------------------------------------------------------------
# names: one table, read both ways
# --------------------------------------------------------------------------------------------
class Module(NamedTuple):
    """One module's path in each naming; ``linear``: diffusers stores its weight as (C, C)."""

    ours: str
    ldm: str
    diffusers: str
    linear: bool = False


# Placeholders: {part} encoder or decoder; {i} a stage in the order of application; {r} the same
# decoder stage in LDM's numbering (L-1-i); {j} a residual block of the stage; {n} our index of
# the stage's resampler (= its block count); {R} a residual block's sub-module (RESBLOCK).
MODULES = (
    Module("{part}.conv_in", "{part}.conv_in", "{part}.conv_in"),
    Module("encoder.down.{i}.{j}.{R}", "encoder.down.{i}.block.{j}.{R}", "encoder.down_blocks.{i}.resnets.{j}.{R}"),
    Module(
        "encoder.down.{i}.{n}.conv", "encoder.down.{i}.downsample.conv", "encoder.down_blocks.{i}.downsamplers.0.conv"
    ),
    Module("{part}.mid.0.{R}", "{part}.mid.block_1.{R}", "{part}.mid_block.resnets.0.{R}"),
    Module("{part}.mid.1.norm", "{part}.mid.attn_1.norm", "{part}.mid_block.attentions.0.group_norm"),
    Module("{part}.mid.1.q", "{part}.mid.attn_1.q", "{part}.mid_block.attentions.0.to_q", True),
    Module("{part}.mid.1.k", "{part}.mid.attn_1.k", "{part}.mid_block.attentions.0.to_k", True),
    Module("{part}.mid.1.v", "{part}.mid.attn_1.v", "{part}.mid_block.attentions.0.to_v", True),
    Module("{part}.mid.1.proj", "{part}.mid.attn_1.proj_out", "{part}.mid_block.attentions.0.to_out.0", True),
    Module("{part}.mid.2.{R}", "{part}.mid.block_2.{R}", "{part}.mid_block.resnets.1.{R}"),
    Module("decoder.up.{i}.{j}.{R}", "decoder.up.{r}.block.{j}.{R}", "decoder.up_blocks.{i}.resnets.{j}.{R}"),
    Module("decoder.up.{i}.{n}.conv", "decoder.up.{r}.upsample.conv", "decoder.up_blocks.{i}.upsamplers.0.conv"),
    Module("{part}.norm_out", "{part}.norm_out", "{part}.conv_norm_out"),
    Module("{part}.conv_out", "{part}.conv_out", "{part}.conv_out"),
    Module("quant_conv", "quant_conv", "quant_conv"),
    Module("post_quant_conv", "post_quant_conv", "post_quant_conv"),
)
RESBLOCK = (
    Module("norm1", "norm1", "norm1"),
    Module("conv1", "conv1", "conv1"),
    Module("norm2", "norm2", "norm2"),
    Module("conv2", "conv2", "conv2"),
    Module("skip", "nin_shortcut", "conv_shortcut"),
)
# Attention names of diffusers before 0.14, still found in saved folders (read, never written).
LEGACY_DIFFUSERS = {
    ".attentions.0.query.": ".attentions.0.to_q.",
    ".attentions.0.key.": ".attentions.0.to_k.",
    ".attentions.0.value.": ".attentions.0.to_v.",
    ".attentions.0.proj_attn.": ".attentions.0.to_out.0.",
}


def _pattern(template: str, naming: Naming) -> re.Pattern[str]:
    """A template as a regex over full keys (module path, then the parameter's name)."""
    groups = {
        "part": "(?P<part>encoder|decoder)",
        "R": "(?P<R>" + "|".join(getattr(m, naming) for m in RESBLOCK) + ")",
        **{f: rf"(?P<{f}>\d+)" for f in "ijnr"},
    }
    parts = re.split(r"\{(\w+)\}", template)  # literal, field, literal, field, ...
    body = "".join(re.escape(p) if k % 2 == 0 else groups[p] for k, p in enumerate(parts))
    return re.compile(body + r"\.(?P<param>\w+)")


@functools.lru_cache(maxsize=None)
def _patterns(naming: Naming) -> tuple[re.Pattern[str], ...]:
    return tuple(_pattern(getattr(m, naming), naming) for m in MODULES)


def _parse(key: str, naming: Naming) -> tuple[int, dict[str, str]] | None:
    for index, pattern in enumerate(_patterns(naming)):
        match = pattern.fullmatch(key)
        if match:
            return index, {k: v for k, v in match.groupdict().items() if v is not None}
    return None


def translate(state: dict[str, Tensor], src: Naming, dst: Naming) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``state`` renamed from naming ``src`` to ``dst`` (attention weights reshaped for diffusers),
    and each new key's original name. Keys the table does not know keep their name."""
    if src == "diffusers":
        state = {_unlegacy(k): v for k, v in state.items()}
    parsed = {key: _parse(key, src) for key in state}
    ldm_depth = 1 + max((int(p[1]["r"]) for p in parsed.values() if p and "r" in p[1]), default=-1)
    stage: dict[str, tuple[str, int]] = {}  # (part, i) of each key inside a stage
    for key, p in parsed.items():
        if p and ("i" in p[1] or "r" in p[1]):
            i = int(p[1]["i"]) if "i" in p[1] else ldm_depth - 1 - int(p[1]["r"])
            stage[key] = (MODULES[p[0]].ours.split(".")[0], i)  # down: encoder, up: decoder
    levels = {part: 1 + max((i for q, i in stage.values() if q == part), default=-1) for part in ("encoder", "decoder")}
    blocks: dict[tuple[str, int], set[str]] = {}
    for key, p in parsed.items():
        if p and "j" in p[1]:
            blocks.setdefault(stage[key], set()).add(p[1]["j"])

    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        p = parsed[key]
        if p is None:
            out[key], origin[key] = value, key
            continue
        index, fields = p
        module = MODULES[index]
        if key in stage:
            part, i = stage[key]
            fields = {
                **fields,
                "i": str(i),
                "r": str(levels["decoder"] - 1 - i),
                "n": str(len(blocks.get((part, i), ()))),
            }
        if "R" in fields:
            fields["R"] = next(getattr(m, dst) for m in RESBLOCK if getattr(m, src) == fields["R"])
        new = getattr(module, dst).format(**fields) + "." + fields["param"]
        if module.linear and fields["param"] == "weight":
            value = _as_linear(value) if dst == "diffusers" else _as_conv(value) if src == "diffusers" else value
        out[new], origin[new] = value, key
    return out, origin


def _unlegacy(key: str) -> str:
    for old, new in LEGACY_DIFFUSERS.items():
        if old in key:
            return key.replace(old, new)
    return key


def _as_linear(w: Tensor) -> Tensor:
    return w.reshape(w.shape[0], w.shape[1]) if w.dim() == 4 else w


def _as_conv(w: Tensor) -> Tensor:
    return w.reshape(w.shape[0], w.shape[1], 1, 1) if w.dim() == 2 else w


def detect_naming(keys: list[str]) -> Naming:
    """Which naming a state dict uses, by its key patterns (ours when neither foreign one shows)."""
    if any(re.search(r"\.(down_blocks|up_blocks|mid_block)\.", k) for k in keys):
        return "diffusers"
    if any(re.search(r"\.(mid\.block_1|mid\.attn_1|(down|up)\.\d+\.block)\.", k) for k in keys):
        return "ldm"
    return "ours"


# --------------------------------------------------------------------------------------------
# finding and reading a checkpoint
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """A checkpoint's tensors in our names, the naming of the file, and each key's name there."""

    tensors: dict[str, Tensor]
    naming: Naming
    names: dict[str, str]


def read(checkpoint: Checkpoint) -> State:
    """The checkpoint's autoencoder tensors, renamed to ours."""
    file, kind = checkpoint.file, checkpoint.kind
    raw = _read_safetensors(file) if file.suffix == ".safetensors" else _tensors(_torch_load(file), file)
    if kind == "run":
        naming: Naming = "ours"
    else:
        raw = _ldm_autoencoder(raw)
        naming = "diffusers" if kind == "diffusers" else detect_naming(list(raw))
    if not raw:
        raise CheckpointError(f"{file}: holds no tensors")
    tensors, names = translate(raw, naming, "ours") if naming != "ours" else (raw, {k: k for k in raw})
    return State(tensors, naming, names)


def load_state(path: str | Path, root: str | Path | None = None) -> dict[str, Tensor]:
    """The autoencoder state dict of the checkpoint ``path`` names, in our key names."""
    return read(resolve(path, root)).tensors


def _torch_load(file: Path) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{file}: holds more than tensors, which weights_only loading refuses (re-save its state dict): {err}"
        ) from err
    except (RuntimeError, OSError, EOFError) as err:
        raise CheckpointError(f"{file}: cannot read it as a torch file ({type(err).__name__}: {err})") from err


def _read_safetensors(file: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise CheckpointError(
            f"{file}: reading .safetensors needs the safetensors package (pip install safetensors)"
        ) from err
    try:
        return load_file(str(file), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError (not exported stably)
        raise CheckpointError(f"{file}: cannot read it as safetensors ({err})") from err


def _tensors(obj: Any, file: Path) -> dict[str, Tensor]:
    """The state dict inside a loaded torch object: ours (``autoencoder``), LDM's (``state_dict``)
    or the object itself."""
    if isinstance(obj, dict) and isinstance(obj.get("autoencoder"), dict):
        obj = obj["autoencoder"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file}: holds a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}


def _ldm_autoencoder(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A whole LDM model's ``first_stage_model.``, or an autoencoder's own tensors without ``loss.``."""
    if any(k.startswith(LDM_PREFIX) for k in state):
        return {k[len(LDM_PREFIX) :]: v for k, v in state.items() if k.startswith(LDM_PREFIX)}
    return {k: v for k, v in state.items() if not k.startswith(LDM_LOSS_PREFIX)}


# --------------------------------------------------------------------------------------------
# initialising a model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitReport:
    """What ``apply_init`` loaded: for the run's status record."""

    source: str
    file: str
    naming: Naming
    sha256: str
    loaded: int
    skipped: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        return {
            "init": self.source,
            "init_file": self.file,
            "init_naming": self.naming,
            "init_sha256": self.sha256,
            "init_loaded": self.loaded,
            "init_skipped": len(self.skipped),
        }


def apply_init(
    autoencoder: nn.Module, path: str | Path, root: str | Path | None = None, expected_sha256: str | None = None
) -> InitReport:
    """Load the checkpoint ``path`` names into ``autoencoder`` (in place, before any wrapping).

    ``expected_sha256`` (the digest recorded in the run's identity) must match the file's, else
    CheckpointError: the file changed since the run was planned. A checkpoint that does not fit
    the model raises CheckpointMismatch (see the module docstring for the decoder-only case)."""
    checkpoint = resolve(path, root)
    digest = checkpoint_sha256(checkpoint.file)
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(
            f"{checkpoint.file}: sha256 {digest} differs from the {expected_sha256} "
            "the run was planned with (the file changed)"
        )
    state = read(checkpoint)
    model = autoencoder.state_dict()
    tensors = state.tensors
    skipped: tuple[str, ...] = ()
    decoder_only = state.naming != "ours" and not isinstance(getattr(autoencoder, "encoder", None), SDEncoder)
    if decoder_only:
        skipped = tuple(sorted(k for k in tensors if not k.startswith(DECODER_SIDE)))
        tensors = {k: v for k, v in tensors.items() if k.startswith(DECODER_SIDE)}
        model = {k: v for k, v in model.items() if k.startswith(DECODER_SIDE)}
    check_match(
        tensors,
        model,
        state.names,
        f"{checkpoint.source} ({state.naming} names)"
        + (", decoder side only: the variant's encoder is not the SD encoder" if decoder_only else ""),
    )
    autoencoder.load_state_dict(tensors, strict=not decoder_only)
    return InitReport(checkpoint.source, str(checkpoint.file), state.naming, digest, len(tensors), skipped)


def check_match(checkpoint: dict[str, Tensor], model: dict[str, Tensor], names: dict[str, str], where: str) -> None:
    """CheckpointMismatch naming the first keys whose shapes differ, that the checkpoint lacks,
    and that the model lacks (our names; the file's name in brackets where it differs)."""

    def shown(key: str) -> str:
        return key if names.get(key, key) == key else f"{key} [{names[key]}]"

    shapes = [k for k in model if k in checkpoint and tuple(checkpoint[k].shape) != tuple(model[k].shape)]
    missing = [k for k in model if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in model]
    if not (shapes or missing or unexpected):
        return
    parts = []
    if shapes:
        parts.append(
            f"{len(shapes)} shapes differ: "
            + ", ".join(
                f"{shown(k)} checkpoint {tuple(checkpoint[k].shape)} vs model {tuple(model[k].shape)}"
                for k in shapes[:SHOW]
            )
        )
    if missing:
        parts.append(
            f"{len(missing)} missing from the checkpoint: "
            + ", ".join(f"{k} {tuple(model[k].shape)}" for k in missing[:SHOW])
        )
    if unexpected:
        parts.append(
            f"{len(unexpected)} not in the model: "
            + ", ".join(f"{shown(k)} {tuple(checkpoint[k].shape)}" for k in unexpected[:SHOW])
        )
    raise CheckpointMismatch(
        f"{where}: does not match the variant's model ({len(model)} tensors; the checkpoint has "
        f"{len(checkpoint)}): " + "; ".join(parts) + f" (first {SHOW} of each). Set the variant's "
        "model config to the checkpoint's: model.latent_channels, model.quant_conv, the encoder "
        "and the decoder widths"
    )
