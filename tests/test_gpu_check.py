"""benchmarks/gpu_check.sh's reduced version (tiny sizes) runs on the CPU in under 3 minutes and
prints every section: Table 3's ratios beside the paper's, training images/s eager and compiled,
the loader's images/s per worker, Inception feature images/s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def test_reduced_gpu_check_runs_on_the_cpu():
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TIMEOUT="180", CUDA_VISIBLE_DEVICES="")
    tic = time.perf_counter()
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--reduced"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert time.perf_counter() - tic < 180
    assert "gpu_check on cpu (reduced)" in out
    for precision in ("fp32", "bf16"):
        assert f"[Table 3] encoders, {precision}" in out
    # every preset beside the paper's ratio (Table 3: LiteVAE-B 129 / SD-VAE 68 = 1.90x)
    for name in ("LiteVAE-S", "LiteVAE-B", "LiteVAE-M", "LiteVAE-L", "SD-VAE"):
        assert re.search(rf"{name}\s+[\d.]+\s+[\d.]+x\s+[\d.]+x", out), name
    assert re.search(r"LiteVAE-B\s+[\d.]+\s+[\d.]+x\s+1\.90x", out)
    assert re.search(r"eager\s+[\d.]+ images/s", out)
    assert re.search(r"compiled(\s+[\d.]+ images/s|: skipped)", out)
    assert re.search(r"1 workers:\s+[\d.]+ images/s = \s*[\d.]+ per worker", out)
    assert re.search(r"\[inception\] pool3 features.*torch.float32: [\d.]+ images/s", out)
