"""Shared fixtures: the real one-node SLURM cluster (tests/slurm_fixture.py) and an isolated
results folder per test."""
from __future__ import annotations

import pytest
import torch

from tests.slurm_fixture import slurm_cluster, slurm_small_arrays  # noqa: F401


@pytest.fixture
def results_root(tmp_path, monkeypatch):
    """A fresh results folder, also exported as $LITEVAE_RESULTS for the command line."""
    root = tmp_path / "results"
    monkeypatch.setenv("LITEVAE_RESULTS", str(root))
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module: on a shared 2-core machine two threads contend
    with other processes and run far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
