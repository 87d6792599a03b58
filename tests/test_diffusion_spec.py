"""A diffusion variant's autoencoder in a study file (study/studyfile/references.py): the four
forms of ``diffusion.autoencoder``, the run id that includes the autoencoder's, the order of the
variants, bad references, and ``plan`` showing the dependency (Tables 7, 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import run_study
from study import config, store
from study.kinds.registry import run_id
from study.studyfile.grid import expand
from study.studyfile.parse import StudyFileError, load_study
from tests.launch_helpers import TINY_SET

ABLATIONS = Path(__file__).resolve().parent.parent / "ablations"
TINY_DIFFUSION = {"task": "diffusion", "diffusion.unet": "tiny", "diffusion.steps": 20}


def _study(folder: Path, name: str, variants: dict, **keys) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"study": name, "set": TINY_SET, "variants": variants, **keys}, sort_keys=False))
    return path


def test_a_variant_of_the_same_study_is_the_autoencoder_and_comes_first(tmp_path):
    spec = load_study(
        _study(tmp_path, "gen", {"ldm": TINY_DIFFUSION | {"diffusion.autoencoder": "ae"}, "ae": {}}, seeds=[0, 1])
    )
    variants = expand(spec)
    assert [(v.name, v.seed) for v in variants] == [("ae", 0), ("ae", 1), ("ldm", 0), ("ldm", 1)]
    ae = {v.seed: v.run_id for v in variants if v.name == "ae"}
    for v in variants[2:]:  # each seed's diffusion run on the autoencoder of its seed
        assert v.config.task == "diffusion" and v.config.diffusion.autoencoder_id == ae[v.seed]
    assert run_id(variants[0].config) == ae[0]  # the autoencoder's id is an autoencoder run's id


def test_the_diffusion_run_id_includes_the_autoencoders(tmp_path):
    def ldm_id(ae_overrides: dict) -> str:
        spec = load_study(
            _study(tmp_path, "gen", {"ae": ae_overrides, "ldm": TINY_DIFFUSION | {"diffusion.autoencoder": "ae"}})
        )
        return next(v.run_id for v in expand(spec) if v.name == "ldm")

    assert ldm_id({}) == ldm_id({})
    assert ldm_id({}) != ldm_id({"model.decoder.norm": "smc"})  # another autoencoder: another run
    # the autoencoder's model section is not the diffusion run's own: setting it changes nothing
    spec = load_study(
        _study(
            tmp_path,
            "gen2",
            {"ae": {}, "ldm": TINY_DIFFUSION | {"diffusion.autoencoder": "ae", "model.decoder.norm": "smc"}},
        )
    )
    assert next(v.run_id for v in expand(spec) if v.name == "ldm") == ldm_id({})


def test_another_study_a_run_id_and_a_checkpoint_resolve_to_a_run_of_the_study(tmp_path, monkeypatch):
    other = _study(tmp_path, "recon", {"small": {}, "smc": {"model.decoder.norm": "smc"}})
    other_ids = {v.name: v.run_id for v in expand(load_study(other))}
    # a run folder under the results root, for the run-id form
    monkeypatch.setenv(store.RESULTS_ENV, str(tmp_path / "results"))
    run_cfg = expand(load_study(other))[1].config
    store.init_run(tmp_path / "results", run_cfg, run_id(run_cfg))
    # a checkpoint: a .safetensors of a tiny autoencoder's weights
    import torch
    from safetensors.torch import save_file

    from study.models.autoencoder import build_autoencoder

    cfg = config.apply_overrides(config.ExperimentConfig(), TINY_SET)
    torch.manual_seed(0)
    ae = build_autoencoder(config.autoencoder_args(cfg.model))
    save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, str(tmp_path / "ae.safetensors"))

    spec = load_study(
        _study(
            tmp_path,
            "gen",
            {
                "from-study": TINY_DIFFUSION | {"diffusion.autoencoder": "recon.yaml small"},
                "from-run": TINY_DIFFUSION | {"diffusion.autoencoder": other_ids["smc"]},
                "from-checkpoint": TINY_DIFFUSION | {"diffusion.autoencoder": "ae.safetensors"},
            },
        )
    )
    variants = expand(spec)
    by_name = {v.name: v for v in variants}
    assert by_name["from-study"].config.diffusion.autoencoder_id == other_ids["small"]
    assert by_name["from-run"].config.diffusion.autoencoder_id == other_ids["smc"]
    # each autoencoder is a run of this study too, before the diffusion run on it
    implied = [v for v in variants if v.source == "autoencoder"]
    assert {v.run_id for v in implied} >= {other_ids["small"], other_ids["smc"]}
    ckpt = next(v for v in implied if v.config.model.init)
    assert ckpt.config.train.steps == 0 and len(ckpt.config.model.init_sha256) == 64  # evaluated as it is
    assert by_name["from-checkpoint"].config.diffusion.autoencoder_id == ckpt.run_id
    order = [v.name for v in variants]
    for v in variants:
        if v.config.task == "diffusion":
            ae_at = next(i for i, u in enumerate(variants) if u.run_id == v.config.diffusion.autoencoder_id)
            assert ae_at < order.index(v.name)


@pytest.mark.parametrize(
    "ref, says",
    [
        ("nope", "a variant of this study (ae)"),
        ("missing.yaml ae", "an existing study file"),
        ("gen.yaml ae", "another study file that does not refer back"),
        ("recon.yaml nope", "a variant of recon: ae"),
        ("0123456789ab", "a run id with a run folder"),
        ("ldm2", "a run that names no other run (an autoencoder run)"),
    ],
)
def test_a_bad_reference_names_the_file_the_key_and_the_forms(tmp_path, monkeypatch, ref, says):
    monkeypatch.setenv(store.RESULTS_ENV, str(tmp_path / "results"))
    _study(tmp_path, "recon", {"ae": {}})
    path = _study(
        tmp_path,
        "gen",
        {
            "ae": {},
            "ldm": TINY_DIFFUSION | {"diffusion.autoencoder": ref},
            "ldm2": TINY_DIFFUSION | {"diffusion.autoencoder": "ae"},
        },
    )
    with pytest.raises(StudyFileError) as e:
        expand(load_study(path))
    text = str(e.value)
    assert str(path) in text and "variants.ldm: diffusion.autoencoder" in text and says in text


def test_a_diffusion_variant_without_an_autoencoder_is_refused(tmp_path):
    with pytest.raises(StudyFileError, match="diffusion.autoencoder.*a variant of this study"):
        expand(load_study(_study(tmp_path, "gen", {"ldm": TINY_DIFFUSION})))


def test_autoencoder_run_ids_do_not_change_with_the_diffusion_section():
    # the default's id since issue 20's recipe (tests/test_recipe_identity.py); 6e47d7f8241b before
    assert run_id(config.ExperimentConfig()) == "be8329899161"
    cfg = config.apply_overrides(config.ExperimentConfig(), {"diffusion.unet": "tiny", "diffusion.steps": 7})
    assert run_id(cfg) == "be8329899161"  # an autoencoder run ignores the diffusion settings


def test_plan_shows_each_diffusion_runs_autoencoder_and_its_state(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(store.RESULTS_ENV, str(tmp_path / "results"))
    path = _study(tmp_path, "gen", {"ae": {}, "ldm": TINY_DIFFUSION | {"diffusion.autoencoder": "ae"}})
    assert run_study.main(["plan", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    rows = {v["name"]: v for v in plan["variants"]}
    assert rows["ae"]["task"] == "autoencoder" and rows["ae"]["needs"] is None
    assert rows["ldm"]["needs"] == {
        "id": rows["ae"]["id"],
        "name": "ae",
        "label": "autoencoder",
        "state": "missing",
        "reason": None,
    }
    assert rows["ae"]["kind"] == "autoencoder" and rows["ldm"]["kind"] == "diffusion"
    assert "eval" in rows["ae"] and "eval" not in rows["ldm"]  # a diffusion run reads no evaluation set
    # once the autoencoder's run is done, the plan says so
    ae_folder = store.init_run(
        tmp_path / "results", expand(load_study(path))[0].config, run_id(expand(load_study(path))[0].config)
    )
    store.mark_done(ae_folder)
    assert run_study.main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"autoencoder ae ({rows['ae']['id']}, completed)" in out


@pytest.mark.parametrize("name", ["table7.yaml", "table13.yaml"])
def test_generation_tables_plan_with_and_without_their_smoke_profile(name):
    spec = load_study(ABLATIONS / name)
    for profile in (None, "smoke"):
        variants = expand(spec, profile)
        diffusion = [v for v in variants if v.config.task == "diffusion"]
        assert diffusion and all(v.config.diffusion.autoencoder_id for v in diffusion)
        ids = {v.run_id for v in variants}
        assert all(v.config.diffusion.autoencoder_id in ids for v in diffusion)
    full = {v.name: v for v in expand(spec)}
    assert all(v.config.diffusion.unet == "ldm-kl8" for v in full.values() if v.config.task == "diffusion")
    smoke = [v for v in expand(spec, "smoke") if v.config.task == "diffusion"]
    assert all(v.config.diffusion.unet == "tiny" and v.config.diffusion.num_samples == 64 for v in smoke)


def test_plan_json_shows_each_generation_runs_sampler_as_ldms_readme_lists_it(capsys):
    """LDM's README: FFHQ "200 DDIM steps, eta=1", CelebA-HQ "200 DDIM steps, eta=0"; DDIM in fp32."""
    for name in ("table7.yaml", "table13.yaml"):
        assert run_study.main(["plan", str(ABLATIONS / name), "--json"]) == 0
        rows = [v for v in json.loads(capsys.readouterr().out)["variants"] if v["task"] == "diffusion"]
        assert rows and all("sampler" in v for v in rows)
        for v in rows:
            eta = 1.0 if v["name"].startswith("ffhq") else 0.0
            assert (v["sampler"]["steps"], v["sampler"]["eta"]) == (200, eta), v["name"]
            assert v["sampler"]["precision"] == "fp32, TF32 off"
