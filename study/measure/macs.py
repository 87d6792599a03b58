"""Multiply-accumulates counted fast: one network built once on the meta device, its forward run at
each resolution asked for under ``MacCounter``, a lean counting mode whose totals are
``FlopCounterMode``'s. What it leaves out: docs/performance.md, "Counting multiply-accumulates
fast".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_flop_count, flop_registry

from study.config import ModelConfig, autoencoder_args
from study.models.autoencoder import build_decoder, build_encoder
from study.models.discriminators import build_discriminator
from study.models.dwt_encoder import DWTEncoder
from study.models.ldm_unet import UNET_PRESETS, build_unet

ATEN = torch.ops.aten
LATENT_DOWNSAMPLING = 8  # every encoder's latent is H/8 x W/8 (study/models/dwt_encoder.py: DOWNSAMPLING)
# What FlopCounterMode hands back to the tensor (NotImplemented): queries of a tensor's layout.
_QUERIES = frozenset(
    {
        ATEN.is_contiguous.default,
        ATEN.is_contiguous.memory_format,
        ATEN.is_strides_like_format.default,
        ATEN.is_non_overlapping_and_dense.default,
        ATEN.size.default,
        ATEN.sym_size.default,
        ATEN.stride.default,
        ATEN.sym_stride.default,
        ATEN.storage_offset.default,
        ATEN.sym_storage_offset.default,
        ATEN.numel.default,
        ATEN.sym_numel.default,
        ATEN.dim.default,
        torch.ops.prim.layout.default,
    }
)


# Elementwise ops in place that the models run most: no FLOP formula, no decomposition with one
# (FlopCounterMode counts 0 for them), and their result is their first argument.
_IN_PLACE = frozenset(
    {
        ATEN.silu_.default,
        ATEN.add_.Tensor,
        ATEN.relu_.default,
        ATEN.mul_.Tensor,
        ATEN.clamp_min_.default,
        ATEN.div_.Tensor,
    }
)


class MacCounter(TorchDispatchMode):
    """The FLOPs of every op run while it is active, summed in ``flops`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in _QUERIES:
            return NotImplemented
        if func in _IN_PLACE:  # elementwise, in place: the result is its first argument, unchanged in shape
            return args[0]
        if func is ATEN.convolution.default and args[0].is_contiguous():
            return self._convolution(*args)
        if func is ATEN.addmm.default and args[1].dim() == 2 and args[2].dim() == 2:  # (bias, a, b): bias + a @ b
            (m, k), n = args[1].shape, args[2].shape[1]
            self.flops += 2 * m * k * n  # flop_counter's mm formula
            return args[1].new_empty((m, n))
        if func is ATEN.native_layer_norm.default:  # (x, shape, ...) -> out, mean, rstd; no FLOP formula
            x, axis = args[0], args[0].dim() - len(args[1])
            stats = (*x.shape[:axis], *([1] * len(args[1])))
            return torch.empty_like(x), x.new_empty(stats), x.new_empty(stats)
        packet = func._overloadpacket
        if packet is ATEN.native_group_norm:  # (x, weight, bias, N, C, HxW, group, eps) -> out, mean, rstd
            x, n, groups = args[0], args[3], args[6]
            return torch.empty_like(x), x.new_empty((n, groups)), x.new_empty((n, groups))
        formula = flop_registry.get(packet)
        if formula is None and func is not torch.ops.prim.device.default:
            with self:  # as FlopCounterMode: an op without a formula is counted through its parts
                out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        out = func(*args, **kwargs)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out

    def _convolution(self, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):  # type: ignore[no-untyped-def]
        """``aten.convolution``'s output (the meta kernel's shape arithmetic, without its checks)
        and ``flop_counter``'s formula for it, on plain shapes."""
        spatial = []
        for i, size in enumerate(x.shape[2:]):
            k = dilation[i] * (weight.shape[2 + i] - 1)
            if transposed:
                spatial.append((size - 1) * stride[i] - 2 * padding[i] + k + output_padding[i] + 1)
            else:
                spatial.append((size + 2 * padding[i] - k - 1) // stride[i] + 1)
        channels = weight.shape[1] * groups if transposed else weight.shape[0]
        out_shape = [x.shape[0], channels, *spatial]
        self.flops += conv_flop_count(list(x.shape), list(weight.shape), out_shape, transposed=transposed)
        return x.new_empty(out_shape)


def count_macs(forward: Callable[[], object]) -> int:
    """MACs (FLOPs / 2) of ``forward()``, run on the meta device without gradients."""
    with torch.device("meta"), torch.no_grad(), MacCounter() as counter:
        forward()
    return counter.flops // 2


def one_thread() -> None:
    """Torch's CPU ops on one thread (a counting process forked from one that ran ops)."""
    torch.set_num_threads(1)


def warm_up() -> None:
    """One op counted on the meta device: the first imports much of torch (TorchDynamo, sympy)."""
    count_macs(lambda: torch.empty(1, 1, 2, 2) - torch.empty(1, 1, 2, 2))


# --------------------------------------------------------------------------------------------
# each distinct module counted once: a module call seen before is replayed from its record
# --------------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None), torch.dtype)
_OWN = frozenset({"_parameters", "_buffers", "_modules", "forward", "training", "_non_persistent_buffers_set"})
_Spec = tuple[tuple[int, ...], tuple[int, ...], torch.dtype]  # shape, strides, dtype of a tensor
_Entry = tuple[object, int, tuple[tuple[int, ...], ...]]  # a trace's entry: op, its own FLOPs, its outputs' shapes


class _Calls:
    """The record of each module call counted: (module signature, the inputs' specs) -> (its
    FLOPs, its trace entries, its outputs' specs). A module's signature is its class, its
    training flag, its plain attributes, its parameters' and buffers' shapes and its children's
    signatures: what its forward's ops and shapes depend on. A module with anything else in it
    (a hook, a callable, an object) has none and is always run."""

    def __init__(self) -> None:
        self.records: dict[tuple[object, ...], tuple[int, list[_Entry], tuple[_Spec, ...], bool]] = {}
        self.ids: dict[tuple[object, ...], int] = {}  # a signature -> a small int that stands for it
        self.counter: _Tracer | None = None

    def signature(self, module: nn.Module, known: dict[int, int | None]) -> int | None:
        if id(module) in known:
            return known[id(module)]
        sig: list[object] = [type(module), module.training]
        for name, value in vars(module).items():
            if name in _OWN:
                continue
            if name.endswith("hooks") or name.endswith("hooks_with_kwargs") or name.endswith("_always_called"):
                if value:
                    return known.setdefault(id(module), None)
                continue
            if not _plain(value):
                return known.setdefault(id(module), None)
            sig.append((name, type(value), tuple(value) if isinstance(value, (list, set)) else value))
        for name, t in [*module._parameters.items(), *module._buffers.items()]:
            sig.append((name, None if t is None else (tuple(t.shape), t.dtype, t.requires_grad)))
        for name, child in module._modules.items():
            child_id = None if child is None else self.signature(child, known)
            if child is not None and child_id is None:
                return known.setdefault(id(module), None)
            sig.append((name, child_id))
        known[id(module)] = self.ids.setdefault(tuple(sig), len(self.ids))
        return known[id(module)]

    def install(self, root: nn.Module) -> None:
        """Every module below ``root`` (itself included) with a signature looks up its calls."""
        known: dict[int, int | None] = {}
        for module in root.modules():
            sig = self.signature(module, known)
            if sig is not None:
                module.forward = functools.partial(self._call, sig, module.forward)

    def _call(self, sig: int, forward: Callable[..., object], *args: object, **kwargs: object) -> object:
        """``forward(*args, **kwargs)``, or its record replayed into the counter when it has one."""
        counter, key = self.counter, _inputs_key(sig, args, kwargs)
        if counter is None or key is None:
            return forward(*args, **kwargs)
        found = self.records.get(key)
        if found is not None:
            flops, trace, outs, single = found
            counter.flops += flops
            counter.traced += flops
            counter.trace.extend(trace)
            made = tuple(torch.empty_strided(shape, strides, dtype=dtype) for shape, strides, dtype in outs)
            return made[0] if single else made
        flops, traced, start = counter.flops, counter.traced, len(counter.trace)
        out = forward(*args, **kwargs)
        results = (out,) if isinstance(out, torch.Tensor) else out
        own = counter.flops - flops
        if (
            type(results) is tuple
            and all(isinstance(t, torch.Tensor) for t in results)
            and own == counter.traced - traced
        ):
            specs = tuple((tuple(t.shape), t.stride(), t.dtype) for t in results)
            self.records[key] = (own, counter.trace[start:], specs, isinstance(out, torch.Tensor))
        return out


def _plain(value: object) -> bool:
    """Whether ``value`` is a plain value, or a tuple, list or set of plain values."""
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, (tuple, list, frozenset, set)) and all(isinstance(v, _PLAIN) for v in value)


def _inputs_key(sig: int, args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[object, ...] | None:
    """(signature, each input's shape, strides and dtype, or its plain value); None where an input
    is neither."""
    key: list[object] = [sig]
    for item in (*args, *kwargs.values()):
        if isinstance(item, torch.Tensor):
            key.append((tuple(item.shape), item.stride(), item.dtype, item.device.type))
        elif _plain(item) and not isinstance(item, (list, set)):
            key.append(item)
        else:
            return None
    if kwargs:
        key.append(tuple(kwargs))
    return tuple(key)


# --------------------------------------------------------------------------------------------
# other resolutions from two: each op's count scales with the image's side, where it checks out
# --------------------------------------------------------------------------------------------
class _Tracer(MacCounter):
    """``MacCounter`` that also keeps, per op run, (op, its own FLOPs, its outputs' shapes); an
    op counted through its parts keeps none of theirs, so the trace's FLOPs add up to ``flops``."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[tuple[object, int, tuple[tuple[int, ...], ...]]] = []
        self.traced = 0  # the FLOPs in ``trace``

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        flops, traced = self.flops, self.traced
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if out is not NotImplemented:
            outs = out if isinstance(out, (tuple, list)) else (out,)
            shapes = tuple(tuple(t.shape) for t in outs if isinstance(t, torch.Tensor))
            own = (self.flops - flops) - (self.traced - traced)
            self.trace.append((func, own, shapes))
            self.traced += own
        return out


def _traced(forward: Callable[[], object]) -> list[_Entry]:
    """The trace of ``forward()``; the calls of modules ``_CALLS`` knows replayed from their records."""
    with torch.device("meta"), torch.no_grad(), _Tracer() as tracer:
        _CALLS.counter = tracer
        try:
            forward()
        finally:
            _CALLS.counter = None
    return tracer.trace


_CALLS = _Calls()  # the module calls counted in this process (encoders and decoders)


def _powers(at_one: list, at_two: list) -> list[tuple[int, int]] | None:  # type: ignore[type-arg]
    """(FLOPs at side 1, power p) of each op with FLOPs, such that its FLOPs at side m are
    FLOPs x m^p: the same ops at sides 1 and 2, each output dimension the same, twice or four
    times (a flattened H x W) as long, each op's FLOPs 1, 4 or 16 times as many (p = 0, 2, 4).
    None where any op differs: then every resolution is counted."""
    if len(at_one) != len(at_two):
        return None
    terms = []
    for (op, flops, shapes), (op2, flops2, shapes2) in zip(at_one, at_two):
        if op is not op2 or len(shapes) != len(shapes2):
            return None
        for shape, shape2 in zip(shapes, shapes2):
            if len(shape) != len(shape2) or any(b not in (a, 2 * a, 4 * a) for a, b in zip(shape, shape2)):
                return None
        power = {flops: 0, 4 * flops: 2, 16 * flops: 4}.get(flops2)
        if power is None:
            return None
        if flops:
            terms.append((flops, power))
    return terms


def by_resolution(forward: Callable[[int], object], resolutions: Iterable[int]) -> dict[int, int]:
    """{resolution: MACs of ``forward(resolution)``}. With three or more resolutions, counted at
    the smallest (r) and at 2r; a multiple m x r is then derived op by op (FLOPs x m^p, see
    ``_powers``) where every op scales; any other resolution is counted."""
    wanted = sorted(set(resolutions))

    def counted(r: int) -> int:
        return sum(f for _, f, _ in _traced(lambda: forward(r))) // 2

    base = wanted[0] if wanted else 0
    if len(wanted) < 3 or sum(1 for r in wanted if r % base == 0) < 3:
        return {r: counted(r) for r in wanted}
    one, two = _traced(lambda: forward(base)), _traced(lambda: forward(2 * base))
    terms = _powers(one, two)
    out = {base: sum(f for _, f, _ in one) // 2, 2 * base: sum(f for _, f, _ in two) // 2}
    for r in wanted:
        if r in out:
            continue
        if terms is not None and r % base == 0:
            out[r] = sum(f * (r // base) ** p for f, p in terms) // 2
        else:
            out[r] = counted(r)
    return {r: out[r] for r in wanted}


def _call(forward: Callable[[torch.Tensor], object], *shape: int) -> Callable[[], object]:
    """``forward`` of an empty (meta) tensor of ``shape`` x ``shape[-1]``."""
    return lambda: forward(torch.empty(*shape, shape[-1]))


def _build(make: Callable[[], nn.Module], shared: bool = False) -> nn.Module:
    """``make()`` on the meta device; ``shared``: without initialising its weights (they hold no
    values there; the shapes are the constructors'), its module calls known to ``_CALLS``."""
    with torch.device("meta"), _no_init() if shared else contextlib.nullcontext():
        module = make()
    if shared:
        _CALLS.install(module)
    return module


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """``torch.nn.init``'s in-place initialisers as no-ops meanwhile (on the meta device they
    only cost time: a third of building a network there)."""
    saved = {n: getattr(nn.init, n) for n in _INITS if hasattr(nn.init, n)}
    try:
        for name in saved:
            setattr(nn.init, name, _unchanged)
        yield
    finally:
        for name, init in saved.items():
            setattr(nn.init, name, init)


_INITS = ["uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
          "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_"]  # fmt: skip


def _unchanged(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor


def parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def encoder_module(model_cfg: ModelConfig) -> nn.Module:
    """What ``Autoencoder.encode`` runs, without building the decoder: encoder [+ quant conv]."""
    args = autoencoder_args(model_cfg)
    encoder = build_encoder(args.encoder, args.latent_channels)
    if args.quant_conv:
        nz = args.latent_channels
        return nn.Sequential(encoder, nn.Conv2d(2 * nz, 2 * nz, 1))
    return encoder


def decoder_path(model_cfg: ModelConfig, shared: bool = False) -> nn.Module:
    """What ``Autoencoder.decode`` runs, on the meta device: the post-quant conv and the decoder."""
    args = autoencoder_args(model_cfg)
    nz = model_cfg.latent_channels

    def make() -> nn.Module:
        decoder = build_decoder(args.decoder, nz)
        return nn.Sequential(nn.Conv2d(nz, nz, 1), decoder) if args.quant_conv else decoder

    return _build(make, shared)


def encoder_counts(
    model_cfg: ModelConfig, resolutions: Iterable[int], shared: bool = False
) -> tuple[int, dict[int, int]]:
    """(parameters of the encoder path, {resolution: MACs of encoding one image}): one build.
    ``shared``: built without initialising its (meta) weights, and each module call seen before
    in this process replayed (``_Calls``; a plan's many networks share most of their modules)."""
    encoder = _build(lambda: encoder_module(model_cfg), shared)
    forward = encoder.encode if isinstance(encoder, DWTEncoder) else encoder  # as Autoencoder.encode
    return parameters(encoder), by_resolution(lambda r: forward(torch.empty(1, 3, r, r)), resolutions)


def decoder_counts(
    model_cfg: ModelConfig, resolutions: Iterable[int], shared: bool = False
) -> tuple[int, dict[int, int]]:
    """(parameters of the decoder path, {resolution: MACs of decoding one image's latent});
    ``shared`` as in ``encoder_counts``."""
    decoder = decoder_path(model_cfg, shared)
    nz = model_cfg.latent_channels
    side = LATENT_DOWNSAMPLING
    return parameters(decoder), by_resolution(lambda r: decoder(torch.empty(1, nz, r // side, r // side)), resolutions)


def discriminator_counts(kind: str, channels: int, resolutions: Iterable[int]) -> tuple[int, dict[int, int]]:
    """(parameters, {resolution: MACs of judging one image}) of ``loss.discriminator``; 0 for none."""
    disc = _discriminator(kind, channels)
    if disc is None:
        return 0, dict.fromkeys(resolutions, 0)
    return parameters(disc), {r: count_macs(_call(disc, 1, 3, r)) for r in sorted(set(resolutions))}


@functools.lru_cache(maxsize=8)  # built once, counted at each resolution asked for
def _discriminator(kind: str, channels: int) -> nn.Module | None:
    """Built on the CPU, then moved to the meta device: its spectral norms' set-up (power
    iterations) takes seconds on the meta device, a quarter second here; the global RNG is
    left as it was."""
    with torch.random.fork_rng(devices=[]):
        disc = build_discriminator(kind, channels)
    return None if disc is None else disc.to("meta")


def denoiser_counts(unet: str, latent_channels: int, resolutions: Iterable[int]) -> tuple[int, dict[int, int]]:
    """(parameters, {image resolution: MACs of one denoising step on one latent}) of the
    ``diffusion.unet`` preset on a latent of ``latent_channels`` (study/diffusion/train.py's build)."""
    args = dataclasses.replace(UNET_PRESETS[unet], in_channels=latent_channels, out_channels=latent_channels)
    net = _build(lambda: build_unet(args))

    def step(resolution: int) -> int:
        side = resolution // LATENT_DOWNSAMPLING
        return count_macs(lambda: net(torch.empty(1, latent_channels, side, side), torch.zeros((), dtype=torch.long)))

    return parameters(net), {r: step(r) for r in sorted(set(resolutions))}
