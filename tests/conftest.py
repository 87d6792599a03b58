"""Shared fixtures: the real one-node SLURM cluster (tests/slurm_fixture.py) and an isolated
results folder per test."""
from __future__ import annotations

import pytest

from tests.slurm_fixture import slurm_cluster, slurm_small_arrays  # noqa: F401


@pytest.fixture
def results_root(tmp_path, monkeypatch):
    """A fresh results folder, also exported as $LITEVAE_RESULTS for the command line."""
    root = tmp_path / "results"
    monkeypatch.setenv("LITEVAE_RESULTS", str(root))
    return root
