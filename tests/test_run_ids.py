"""Every run id of every study in ablations/ is pinned: each variant (and alias) of each study
file, expanded without a profile and with each of its profiles, keeps the id written in
tests/data/run_ids.json. A change of identity (a field added to the config, a rule of
study/config/identity.py) that moves an existing id fails here.

Beside the study files, ``CASES`` pins configs that reach every rule of identity: fields that
only one encoder kind uses, the discriminator's fields without a discriminator, fields left out
at their default, and fields that are not identity at all.

protocol_check.yaml plans only with real checkpoints (their sha256 is identity): it is expanded
with ``model.init`` set to a file of fixed bytes, so its ids are pinned too.

After adding a study file: ``python -m tests.test_run_ids --write`` (and check that no other id
moved). An id that moves on purpose (a recipe change that changes what a run trains) is the
lead's call, rewritten the same way and named in the commit.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from study import config as cfgmod
from study.config import fields
from study.config.fields import identity_field, not_identity
from study.kinds.registry import run_id
from study.studyfile.grid import expand
from study.studyfile.parse import StudyFile, load_study, parse_sets

ROOT = Path(__file__).resolve().parent.parent
ABLATIONS = ROOT / "ablations"
PINNED = Path(__file__).resolve().parent / "data" / "run_ids.json"
NEEDS_INIT = {"protocol_check.yaml"}  # placeholders for model.init: a fixed file stands in
INIT_BYTES = b"a stand-in checkpoint: only its sha256 enters the run ids\n"


SD = {"model.encoder.kind": "sdvae"}
DWT = {"model.encoder.kind": "dwt", "model.latent_channels": 12}
NO_GAN = {"loss.discriminator": "none"}
LITEVAE_FIELDS = {
    "model.encoder.preset": "S",
    "model.encoder.levels": (2, 3),
    "model.encoder.wavelet": "db2",
    "model.encoder.aggregator": "vit",
    "model.encoder.shared_extractors": True,
    "model.encoder.num_res_blocks": 1,
}  # and model.encoder.extractor, which only a LiteVAE may set
GAN_FIELDS = {
    "loss.adversarial_loss": "logistic",
    "loss.adversarial_weight_mode": "adaptive",
    "loss.adversarial_weight": 0.25,
    "loss.discriminator_start": 7,
    "loss.discriminator_channels": 32,
    "train.discriminator_lr": 2e-4,
}
ADDED_LATER = {
    "loss.perceptual": "esrgan",
    "loss.ldl_weight": 1.0,
    "train.ema_decay": 0.999,
    "train.compile": True,
    "train.grad_accum": 2,
    "model.init_sha256": "0" * 64,
}
NOT_IDENTITY = {"train.checkpoint_every": 7, "train.num_workers": 0, "data.path": "/x", "eval.num_images": 9}
FOLDER = {"data.kind": "folder", "data.name": "photos", "data.path": "/photos"}
DIFFUSION = {"task": "diffusion", "diffusion.autoencoder_id": "0123456789ab"}
# name -> overrides of the config defaults: each rule of identity with its field set and unset
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "not-identity": NOT_IDENTITY,
    "litevae-fields": LITEVAE_FIELDS | {"model.encoder.extractor": "nafnet"},
    "litevae-sd-width": {"model.encoder.sd_width": "small"},
    "sdvae": SD,
    "sdvae-sd-width": SD | {"model.encoder.sd_width": "small"},
    "sdvae-litevae-fields": SD | LITEVAE_FIELDS,
    "sdvae-dropout": SD | {"model.encoder.dropout": 0.1},
    "dwt": DWT,
    "dwt-every-encoder-field": DWT | LITEVAE_FIELDS | {"model.encoder.sd_width": "small", "model.encoder.dropout": 0.1},
    "litevae-dropout": {"model.encoder.dropout": 0.1},
    "litevae-extractor-unet": {"model.encoder.extractor": "unet"},
    "gan-fields": GAN_FIELDS,
    "patchgan": {"loss.discriminator": "patchgan"},
    "no-gan": NO_GAN,
    "no-gan-gan-fields": NO_GAN | GAN_FIELDS,
    **{f"added-{key}": {key: value} for key, value in ADDED_LATER.items() if key != "loss.ldl_weight"},
    "added-ldl": {"loss.ldl_weight": 1.0, "train.ema_decay": 0.999},
    "added-all": ADDED_LATER,
    "added-at-defaults": {"loss.perceptual": "lpips", "loss.ldl_weight": 0.0, "train.grad_accum": 1},
    "samples-val-fraction": {"data.val_fraction": 0.2},
    "folder": FOLDER,
    "folder-val-fraction": FOLDER | {"data.val_fraction": 0.2},
    "seed": {"seed": 3},
    "diffusion": DIFFUSION,
    "diffusion-model-and-loss": DIFFUSION | SD | GAN_FIELDS | {"model.latent_channels": 12},
    "diffusion-fields": DIFFUSION | {"diffusion.unet": "tiny", "diffusion.steps": 5, "diffusion.sampler_steps": 9},
    "diffusion-precision": DIFFUSION | {"train.precision": "bf16", "train.steps": 3},
}


def case_configs() -> dict[str, cfgmod.ExperimentConfig]:
    return {name: cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), o)) for name, o in CASES.items()}


def _extra(path: Path, spec: StudyFile, init: Path) -> dict[str, Any] | None:
    return parse_sets(spec.path, [f"model.init={init}"]) if path.name in NEEDS_INIT else None


def expansions(init: Path) -> dict[str, dict[str, cfgmod.ExperimentConfig]]:
    """{"<file>[:<profile>]": {"<variant or alias>|<seed>": config}} of every study file, and
    {"cases": {case: config}}."""
    init.write_bytes(INIT_BYTES)
    out: dict[str, dict[str, cfgmod.ExperimentConfig]] = {}
    for path in sorted(ABLATIONS.glob("*.yaml")):
        spec = load_study(path)
        for profile in (None, *spec.profiles):
            configs: dict[str, cfgmod.ExperimentConfig] = {}
            for v in expand(spec, profile, _extra(path, spec, init)):
                assert run_id(v.config) == v.run_id
                for name in (v.name, *v.aliases):
                    configs[f"{name}|{v.seed}"] = v.config
            out[path.name if profile is None else f"{path.name}:{profile}"] = configs
    return out | {"cases": case_configs()}


def ids_of(expanded: dict[str, dict[str, cfgmod.ExperimentConfig]]) -> dict[str, dict[str, str]]:
    return {key: {label: run_id(cfg) for label, cfg in configs.items()} for key, configs in expanded.items()}


@pytest.fixture(scope="module")
def expanded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, cfgmod.ExperimentConfig]]:
    return expansions(tmp_path_factory.mktemp("init") / "stand-in.ckpt")


@pytest.fixture(scope="module")
def current(expanded) -> dict[str, dict[str, str]]:
    return ids_of(expanded)


def _pinned() -> dict[str, dict[str, str]]:
    return json.loads(PINNED.read_text())


def test_every_study_file_and_profile_is_pinned(current):
    assert sorted(current) == sorted(_pinned()), "a study file or profile without pinned ids (see the docstring)"


@pytest.mark.parametrize("key", sorted(_pinned()) if PINNED.exists() else [])
def test_run_ids_are_unchanged(current, key):
    pinned = _pinned()[key]
    assert key in current, f"{key}: no longer expands"
    changed = {n: (pinned.get(n), current[key].get(n)) for n in pinned.keys() | current[key].keys()}
    changed = {n: pair for n, pair in changed.items() if pair[0] != pair[1]}
    assert not changed, f"{key}: (pinned, now) of the variants whose id moved: {changed}"


# --------------------------------------------------------------------------------------------
# a field added later: declared with omit_at its default, it moves no id
# --------------------------------------------------------------------------------------------
SECTIONS = ("model.encoder", "model.decoder", "model", "loss", "train", "data", "diffusion", "")


def with_new_field(cfg: Any, section: str, new: Any) -> Any:
    """``cfg`` whose ``section`` ("" for the top) is of a subclass with one more field, ``added``,
    declared by ``new`` (e.g. ``identity_field(7, omit_at=7)``) and at its default."""
    if "." in section or section:
        head, _, rest = section.partition(".")
        return dataclasses.replace(cfg, **{head: with_new_field(getattr(cfg, head), rest, new)})
    cls = type(cfg)
    grown = dataclasses.make_dataclass(cls.__name__, [("added", int, new)], bases=(cls,), frozen=True)
    return grown(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("section", SECTIONS)
def test_a_new_field_left_out_at_its_default_moves_no_pinned_id(expanded, current, section):
    """Compared with today's ids (test_run_ids_are_unchanged compares those with the pins)."""
    moved = [
        (key, label)
        for key, configs in expanded.items()
        for label, cfg in configs.items()
        if run_id(with_new_field(cfg, section, identity_field(7, omit_at=7))) != current[key][label]
    ]
    assert not moved, moved[:5]


@pytest.mark.parametrize("section", SECTIONS)
def test_a_new_field_without_omit_at_moves_the_ids_that_read_its_section(section):
    cases = case_configs()
    for name in ("defaults", "diffusion"):
        cfg = cases[name]
        grown = with_new_field(cfg, section, identity_field(7))
        # a diffusion run's id reads its diffusion and data sections, an autoencoder's the rest
        read = section.split(".")[0] in (
            ("diffusion", "data") if name == "diffusion" else ("model", "loss", "train", "data", "")
        )
        assert (run_id(grown) != run_id(cfg)) == read, (name, section)
        assert run_id(with_new_field(cfg, section, not_identity(7))) == run_id(cfg), (name, section)


def test_every_declared_condition_names_a_config_key_and_allowed_values():
    keys = cfgmod.config_keys()
    for key, tp in keys.items():
        section, _, name = key.rpartition(".")
        cls = type(cfgmod.get_value(cfgmod.ExperimentConfig(), section)) if section else cfgmod.ExperimentConfig
        meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
        if fields.OMIT_AT in meta:
            assert cfgmod.coerce(key, meta[fields.OMIT_AT], tp) == meta[fields.OMIT_AT], key
        for cond in meta.get(fields.OMIT_WHEN, ()):
            assert cond.key in keys, (key, cond.key)
            for value in cond.values:
                cfgmod.coerce(cond.key, value, keys[cond.key])  # ConfigError: not a value it can take


def test_a_field_is_left_out_only_as_declared():
    """Two declared rules, each with its field set and unset: LiteVAE-only fields count only for
    a LiteVAE, a field added later counts only away from its default."""
    lite = cfgmod.ExperimentConfig()
    sd = cfgmod.apply_overrides(lite, {"model.encoder.kind": "sdvae"})
    for cfg, counts in ((lite, True), (sd, False)):
        aggregator = cfgmod.apply_overrides(cfg, {"model.encoder.aggregator": "vit"})
        assert (run_id(aggregator) != run_id(cfg)) is counts
        assert ("aggregator" in cfgmod.identity(cfg)["model"]["encoder"]) is counts
    assert "grad_accum" not in cfgmod.identity(lite)["train"]
    assert cfgmod.identity(cfgmod.apply_overrides(lite, {"train.grad_accum": 2}))["train"]["grad_accum"] == 2


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        ids = ids_of(expansions(Path(folder) / "stand-in.ckpt"))
    PINNED.parent.mkdir(exist_ok=True)
    PINNED.write_text(json.dumps(ids, indent=1, sort_keys=True) + "\n")
    print(f"{PINNED}: {sum(map(len, ids.values()))} ids of {len(ids)} expansions")
