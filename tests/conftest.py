"""Shared fixtures: the real one-node SLURM cluster (tests/slurm_fixture.py) and an isolated
results folder per test."""

from __future__ import annotations

import os

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


# `make test-fast` deselects these marks (pyproject.toml): whole modules that train for many
# steps, need the SLURM cluster, or run paper-table studies end to end; and any test that uses
# the cluster fixture.
SLOW_MODULES = {
    "test_train": "training",
    "test_train_ema": "training",
    "test_launch_local": "training",
    "test_launch_slurm": "slurm",
    "test_slurm_cluster": "slurm",
    "test_ablations_e2e": "e2e",
    "test_eval_sets_e2e": "e2e",
}


def pytest_collection_modifyitems(items):
    for item in items:
        mark = SLOW_MODULES.get(item.module.__name__.rsplit(".", 1)[-1])
        if mark:
            item.add_marker(getattr(pytest.mark, mark))
        if {"slurm_cluster", "slurm_small_arrays"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slurm)
        # `pytest -n 2 --dist loadgroup`: a module's tests run in one worker, in order (some share a
        # module fixture's runs); the tests of the one SLURM cluster all in one worker, in turn
        group = "slurm" if item.get_closest_marker("slurm") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker of `make test`: one core each
        torch.set_num_threads(1)
