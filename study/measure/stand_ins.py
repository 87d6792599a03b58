"""A stand-in Inception for tests and benchmarks: the real architecture with random weights,
saved where the weights module would look for the real file (no download)."""

from __future__ import annotations

from pathlib import Path


def make_random_inception(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised torch-fidelity Inception-v3 state dict to ``path``.

    For tests and benchmarks only: the architecture and the cost are the real ones, the features
    are not. torch's default init makes the pool3 features almost constant (every FID ~ 0), so
    the convolutions are re-initialised Kaiming-normal (fan-in, ReLU) to keep the signal alive
    through the 90-odd layers. Point ``$LITEVAE_INCEPTION_WEIGHTS`` at the file to use it."""
    from unittest import mock

    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    from torch import nn

    class _Unloaded(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # the constructor's call: skip
            if state_dict is None:
                return None
            return super().load_state_dict(state_dict, *args, **kwargs)

    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None):
        model = _Unloaded("inception-v3-compat", ["2048"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path
