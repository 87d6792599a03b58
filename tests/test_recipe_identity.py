"""A run computed differently gets a new id (issue 20): the recipe changes that follow LDM (the
feature UNet's plain conv head, the discriminator's fresh reconstruction, the adaptive weight on
L1 + LPIPS, LitEma's count and the whole training list of a diffusion run) enter the id of the
runs they change, so a run folder recorded before them is never taken for the new run.

The "old" identity is written out as the harness before them computed it: today's identity
without the fields they added (``model.encoder.head``, ``train.discriminator_input``,
``loss.adaptive_weight_terms``, ``diffusion.recipe``). For the default config and a diffusion
config that gives the ids the earlier harness gave them (pinned in tests/data/run_ids.json
before issue 20), which shows the reconstruction is the old rule and not a guess.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import yaml

from study import config as cfgmod
from study import store
from study.kinds.registry import identity, run_id
from study.launch.launcher import decide
from study.studyfile.grid import expand
from study.studyfile.parse import load_study

ADDED = (("model", "encoder", "head"), ("train", "discriminator_input"), ("loss", "adaptive_weight_terms"),
         ("diffusion", "recipe"))  # fmt: skip
DIFFUSION = {"task": "diffusion", "diffusion.autoencoder_id": "0123456789ab"}


def _without_added(d: dict[str, Any]) -> dict[str, Any]:
    d = copy.deepcopy(d)
    for *path, name in ADDED:
        section = d
        for key in path:
            section = section.get(key, {})
        section.pop(name, None)
    return d


def old_run_id(cfg: cfgmod.ExperimentConfig) -> str:
    """The id the harness before issue 20 gave ``cfg``: its identity without the added fields."""
    return hashlib.sha256(cfgmod.canonical_json(_without_added(identity(cfg))).encode()).hexdigest()[:12]


def _cfg(overrides: dict[str, Any]) -> cfgmod.ExperimentConfig:
    return cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), overrides))


def test_the_old_rule_gives_the_ids_the_earlier_harness_gave():
    assert old_run_id(cfgmod.ExperimentConfig()) == "6e47d7f8241b"
    assert old_run_id(_cfg(DIFFUSION)) == "1f65848339db"


def test_the_changed_runs_get_new_ids_and_the_unchanged_keep_theirs():
    changed = {
        "litevae (head)": {"loss.discriminator": "none"},
        "gan (discriminator input)": {"model.encoder.kind": "sdvae"},
        "adaptive (its ratio)": {
            "model.encoder.kind": "dwt",
            "model.latent_channels": 12,
            "loss.adversarial_weight_mode": "adaptive",
        },  # fmt: skip
        "diffusion (LitEma, the whole list)": DIFFUSION,
    }
    for name, overrides in changed.items():
        cfg = _cfg(overrides)
        assert run_id(cfg) != old_run_id(cfg), name
    # an SD-VAE or a fixed DWT latent without a discriminator computes what it computed
    for overrides in ({"model.encoder.kind": "sdvae", "loss.discriminator": "none"},
                      {"model.encoder.kind": "dwt", "model.latent_channels": 12, "loss.discriminator": "none"}):  # fmt: skip
        cfg = _cfg(overrides)
        assert run_id(cfg) == old_run_id(cfg), overrides
    # the old behaviours, selected by their fields, are runs of their own, not the old folders
    old_ways = _cfg({"model.encoder.head": "norm_act_conv", "train.discriminator_input": "stale",
                     "loss.adversarial_weight_mode": "adaptive", "loss.adaptive_weight_terms": "all"})  # fmt: skip
    assert run_id(old_ways) not in {old_run_id(old_ways), run_id(cfgmod.ExperimentConfig())}


STUDY = """
study: recipe_ids
variants:
  ae: {preset: LiteVAE-S, data: {kind: samples, resolution: 32}}
  ldm: {task: diffusion, diffusion.autoencoder: ae, data: {kind: samples, resolution: 32}}
seeds: [0]
"""


def _record_old_run(root: Path, cfg: cfgmod.ExperimentConfig) -> Path:
    """A completed run folder as the harness before issue 20 left it: its id and its config
    without the added fields."""
    rid = old_run_id(cfg)
    folder = store.run_dir(root, rid)
    folder.mkdir(parents=True)
    doc = {"run_id": rid, "config": _without_added(cfgmod.to_dict(cfg))}
    (folder / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    store.write_json_atomic(folder / "status.json", {"state": "pending", "attempts": 0, "job_ids": [], "run_id": rid})
    store.mark_done(folder)
    return folder


def test_a_launch_does_not_reuse_a_run_recorded_before_the_recipe_changed(tmp_path):
    path = tmp_path / "recipe_ids.yaml"
    path.write_text(STUDY)
    variants = expand(load_study(path))
    root = tmp_path / "results"
    old = {v.name: _record_old_run(root, v.config) for v in variants}
    assert all(store.is_done(f) for f in old.values())
    decisions = decide(root, variants, retry_failed=False)
    for v, d in zip(variants, decisions):
        assert v.run_id != old[v.name].name, v.name
        assert (d.action, d.why) == ("submit", "new"), (v.name, d)
    # the diffusion variant names the new autoencoder run, not the old folder
    ldm = next(v for v in variants if v.name == "ldm")
    ae = next(v for v in variants if v.name == "ae")
    assert ldm.config.diffusion.autoencoder_id == ae.run_id
    assert all(store.is_done(f) for f in old.values())  # the old folders are left as they were
