"""``train.compile: true`` on the CPU: the run trains through a torch.compile'd encoder and decoder
(the UNet discriminator, spectral-normed, stays eager: study/trainer/accelerate.py) to the
validation PSNR of the eager run (same seed, same batches) within noise, and its checkpoint holds
the eager module's keys (so eager and compiled runs load each other's)."""

from __future__ import annotations

import pytest
import torch

from study import config, store
from study.autoencoder.loop import train
from study.kinds.registry import run_id
from study.trainer import accelerate as accel
from study.trainer.checkpoints import load_checkpoint
from study.trainer.context import Context
from tests.launch_helpers import TINY_MODEL

pytestmark = [pytest.mark.training, pytest.mark.usefixtures("one_thread")]

CPU = torch.device("cpu")


def _cfg(compile: bool) -> config.ExperimentConfig:
    return config.validate(
        config.apply_overrides(
            config.ExperimentConfig(),
            TINY_MODEL
            | {
                # one wavelet level, one block: the compile is the test's cost (455 s -> about 200 s
                # on 2 cores with all three levels and two blocks), the code paths are the same
                "model.encoder.levels": [3],
                "model.encoder.num_res_blocks": 1,
                "loss.discriminator": "unet",
                "loss.discriminator_start": 5,
                "loss.discriminator_channels": 8,
                "data.resolution": 32,
                "train.batch_size": 4,
                "train.lr": 1e-3,
                "train.discriminator_lr": 1e-3,
                "train.steps": 10,
                "train.log_every": 5,
                "train.val_every": 10,
                "train.checkpoint_every": 10,
                "train.val_images": 16,
                "train.num_workers": 0,
                "train.compile": compile,
            },
        )
    )


@pytest.mark.skipif(accel.compile_support(CPU) is not None, reason=f"{accel.compile_support(CPU)}")
def test_compiled_training_reaches_the_eager_psnr(tmp_path):
    torch._dynamo.reset()
    summaries, states = {}, {}
    for compile in (False, True):
        cfg = _cfg(compile)
        folder = store.init_run(tmp_path / str(compile), cfg, run_id(cfg))
        summaries[compile] = train(cfg, folder, ctx=Context(CPU), progress=False)
        states[compile] = load_checkpoint(folder)
    eager, compiled = summaries[False]["val_psnr"], summaries[True]["val_psnr"]
    assert eager > 10.0  # trained at all
    # float rounding differs (fused kernels), the trajectory stays (within 0.02 dB with three levels)
    assert abs(compiled - eager) < 0.25, (eager, compiled)
    assert states[True]["autoencoder"].keys() == states[False]["autoencoder"].keys()
    assert states[True]["discriminator"].keys() == states[False]["discriminator"].keys()
    torch._dynamo.reset()


def test_compile_is_part_of_the_run_id():
    assert run_id(_cfg(True)) != run_id(_cfg(False))
