"""How a run uses its device: the CUDA settings, the memory format, the optimiser's kernel,
``torch.compile`` (``train.compile``) and the non-finite-loss watch that keeps the step free of
host synchronisation.

Everything here is a no-op on the CPU except ``train.compile`` (which compiles there too, with a
C++ compiler): the CPU path computes the same numbers as before these options existed. On CUDA:
TF32 matmuls and convolutions (the bf16 autocast region already rounds harder; what runs in fp32
outside it, the losses, gets TF32's 10-bit mantissa), ``cudnn.benchmark`` (the shapes of a stage
are fixed), channels_last tensors, Adam's fused kernel, and a loss check that reads the device
only at log, validation and checkpoint steps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from study.trainer.watch import Diverged, Divergence


class CompileUnavailable(RuntimeError):
    """``train.compile: true`` on a platform where ``torch.compile`` cannot run; says why."""


class NonFiniteLoss(Diverged):
    """A NaN or infinite loss: the run has diverged (study/trainer/watch.py); it stops and its
    status says at which step."""

    def __init__(self, index: int, loss: float = float("nan")):
        # ``index``: the 0-based index of the update whose loss it was; the step named is
        # index + 1, as metrics.jsonl counts steps (step s: after s updates)
        super().__init__(
            f"non-finite loss at step {index + 1}", Divergence(index + 1, "non-finite loss", {"loss": loss})
        )


def configure_device(device: torch.device) -> None:
    """TF32 and cuDNN autotuning on CUDA (process-wide settings); nothing on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def full_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off inside the block on CUDA: the evaluation protocol's features are fp32, the same
    numbers (up to kernel order) as on the CPU, whatever ``configure_device`` set for training."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (the tensor cores' layout for convolutions); contiguous on the CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.Adam:
    """Adam with the paper's betas; one fused kernel per step on CUDA, the default on the CPU."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True if device.type == "cuda" else None)


def compile_support(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile (TorchDynamo) does not support this Python/torch build (torch {torch.__version__})"
    # Inductor writes C++ for the CPU and needs a C compiler for Triton's launchers on CUDA.
    compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"] if device.type == "cpu" else ["gcc", "cc", "clang"]
    if not any(c and shutil.which(c) for c in compilers):
        return f"no C/C++ compiler on PATH (tried {', '.join(c for c in compilers if c)}) for Inductor's {device.type} code"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed (Inductor's CUDA kernels are Triton kernels)"
    return None


def compile_networks(device: torch.device, *modules: nn.Module | None) -> list[nn.Module]:
    """``torch.compile`` each module in place (``nn.Module.compile``: the state_dict keys, hence
    the checkpoints, stay those of the eager module); CompileUnavailable, naming why, when the
    platform cannot compile. Called before the first step, so a run fails at its start.

    A module with spectral norms (the UNet and StyleGAN discriminators) stays eager, and is
    returned: the discriminator step runs it twice (real, fake) before one backward, each
    forward's power iteration updates the norm's u and v in place, and the compiled graph saves
    those buffers themselves for its backward, which then fails ("modified by an inplace
    operation"; eager spectral_norm saves clones). Measured with torch 2.14 on the CPU."""
    reason = compile_support(device)
    if reason is not None:
        raise CompileUnavailable(f"train.compile is true but {reason}; set train.compile: false")
    eager = []
    for module in modules:
        if module is not None and has_spectral_norm(module):
            eager.append(module)
        elif module is not None:
            module.compile()
    return eager


def has_spectral_norm(module: nn.Module) -> bool:
    """Whether any submodule's weight is parametrised by ``torch.nn.utils.parametrizations.spectral_norm``."""
    return any(type(m).__name__ == "_SpectralNorm" for m in module.modules())


class LossWatch:
    """The non-finite-loss check without a host synchronisation per step.

    Immediate (``deferred=False``, the CPU): each observed loss is checked at once, as before.
    Deferred (CUDA): the first step whose loss was not finite is kept in a device tensor and
    ``check`` reads it, at log, validation and checkpoint steps, so the run stops with the same
    "non-finite loss at step N" a few steps later at most, and never writes a checkpoint or a
    validation from weights a non-finite loss has touched."""

    def __init__(self, device: torch.device, deferred: bool | None = None):
        self.deferred = device.type == "cuda" if deferred is None else deferred
        self._first = torch.full((), -1, dtype=torch.long, device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        if not self.deferred:
            if not torch.isfinite(loss):
                raise NonFiniteLoss(step, float(loss.detach()))
            return
        bad = ~torch.isfinite(loss.detach())
        self._first = torch.where(bad & (self._first < 0), step, self._first)

    def check(self) -> None:
        """NonFiniteLoss naming the first bad step, if one was observed (reads the device)."""
        if self.deferred and (first := int(self._first)) >= 0:
            raise NonFiniteLoss(first)
