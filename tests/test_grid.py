"""Expansion: properties over small random studies (count, unique ids, exclude semantics) and
a few worked cases (deduplication, names, order of application)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from study import config
from study.kinds.registry import run_id
from study.studyfile.grid import expand, expected_count, short_keys
from study.studyfile.parse import (  # Axes whose distinct values always give distinct, valid configs from the defaults (so no two
    StudyFile,
    StudyFileError,
    load_study,
)

# rows collapse into one run and expected_count must equal the number of variants).
POOLS: dict[str, list] = {
    "train.steps": [10, 20, 30, 40],
    "train.batch_size": [1, 2, 4, 8],
    "train.lr": [1e-5, 1e-4, 3e-4],
    "model.latent_channels": [4, 8, 12],
    "model.decoder.norm": ["groupnorm", "smc"],
    "loss.adversarial_loss": ["hinge", "logistic"],
    "data.hflip": [True, False],
    "data.resolution": [32, 64, 128],
}


@st.composite
def studies(draw) -> StudyFile:
    keys = draw(st.permutations(list(POOLS)))
    n_grid = draw(st.integers(0, 3))
    n_zip = draw(st.integers(0 if n_grid else 1, 2))
    grid = {
        k: draw(st.lists(st.sampled_from(POOLS[k]), min_size=1, max_size=len(POOLS[k]), unique=True))
        for k in keys[:n_grid]
    }
    zips = []
    if n_zip:
        zkeys = keys[n_grid : n_grid + n_zip]
        length = draw(st.integers(1, min(len(POOLS[k]) for k in zkeys)))
        # the first axis distinct (the spec requires distinct rows), the others free
        zips.append(
            {
                k: (
                    draw(st.permutations(POOLS[k]))[:length]
                    if i == 0
                    else [draw(st.sampled_from(POOLS[k])) for _ in range(length)]
                )
                for i, k in enumerate(zkeys)
            }
        )
    axis_values = grid | {k: v for g in zips for k, v in g.items()}
    exclude = []
    for _ in range(draw(st.integers(0, 3))):
        ks = draw(st.lists(st.sampled_from(sorted(axis_values)), min_size=1, max_size=2, unique=True))
        exclude.append({k: draw(st.sampled_from(axis_values[k])) for k in ks})
    # named variants set a key no axis touches to a value of their own: never equal to a row
    variants = {f"v{i}": {"data.name": f"named{i}"} for i in range(draw(st.integers(0, 2)))}
    seeds = tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True)))
    return StudyFile(
        path=Path("generated.yaml"), study="gen", grid=grid, zip=zips, variants=variants, exclude=exclude, seeds=seeds
    )


def independent_rows(spec: StudyFile) -> list[dict]:
    """The grid x zip product minus exclusions, computed without study.studyfile.grid."""
    parts = [[{k: v} for v in vals] for k, vals in spec.grid.items()]
    parts += [[dict(zip(g, row)) for row in zip(*g.values())] for g in spec.zip]
    rows = [dict(kv for p in combo for kv in p.items()) for combo in itertools.product(*parts)]
    return [r for r in rows if not any(all(r[k] == v for k, v in e.items()) for e in spec.exclude)]


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(studies())
def test_count_equals_expected_count(spec):
    expected = (len(independent_rows(spec)) + len(spec.variants)) * len(spec.seeds)
    assert expected_count(spec) == expected
    if expected == 0:  # every row excluded and no named variant: an error, not an empty plan
        with pytest.raises(StudyFileError) as info:
            expand(spec)
        assert info.value.key == "exclude"
        return
    variants = expand(spec)
    assert len(variants) == expected
    assert all(not v.aliases for v in variants)  # no collapsed rows by construction


@PROPS
@given(studies())
def test_ids_unique_and_stable(spec):
    assume(independent_rows(spec) or spec.variants)
    variants = expand(spec)
    ids = [v.run_id for v in variants]
    assert len(set(ids)) == len(ids)
    assert [v.index for v in variants] == list(range(len(variants)))
    assert [(v.run_id, v.name, v.seed) for v in expand(spec)] == [(v.run_id, v.name, v.seed) for v in variants]
    for v in variants:
        assert v.run_id == run_id(v.config) and v.config.seed == v.seed
        for key, value in v.axes.items():
            assert config.get_value(v.config, key) == value


@PROPS
@given(studies())
def test_exclude_semantics(spec):
    assume(independent_rows(spec) or spec.variants)
    variants = expand(spec)
    grid_rows = [v for v in variants if v.source == "grid"]
    for v in grid_rows:
        for entry in spec.exclude:
            assert not all(v.axes[k] == x for k, x in entry.items()), (v.axes, entry)
    # every non-excluded row is present, once per seed
    want = sorted((repr(sorted(r.items())), s) for r in independent_rows(spec) for s in spec.seeds)
    got = sorted((repr(sorted(v.axes.items())), v.seed) for v in grid_rows)
    assert got == want


@PROPS
@given(studies(), st.randoms(use_true_random=False))
def test_axis_order_does_not_change_ids(spec, rnd):
    assume(independent_rows(spec) or spec.variants)
    grid_keys = list(spec.grid)
    rnd.shuffle(grid_keys)
    shuffled = StudyFile(
        path=spec.path,
        study=spec.study,
        grid={k: list(reversed(spec.grid[k])) for k in grid_keys},
        zip=[dict(reversed(list(g.items()))) for g in spec.zip],
        variants=spec.variants,
        exclude=[dict(reversed(list(e.items()))) for e in spec.exclude],
        seeds=spec.seeds[::-1],
    )
    assert sorted(v.run_id for v in expand(shuffled)) == sorted(v.run_id for v in expand(spec))


# --------------------------------------------------------------------------------------------
# worked cases
# --------------------------------------------------------------------------------------------
def _spec(tmp_path: Path, text: str) -> StudyFile:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_study(path)


def test_equal_configs_collapse_into_one_run_with_an_alias(tmp_path):
    # SD-VAE ignores the LiteVAE preset: the two rows are one run (expected_count counts both).
    spec = _spec(tmp_path, "study: t\nset: {model.encoder.kind: sdvae}\ngrid: {model.encoder.preset: [S, B]}\n")
    variants = expand(spec)
    assert expected_count(spec) == 2 and len(variants) == 1
    assert variants[0].name == "preset=S" and variants[0].aliases == ("preset=B",)


def test_named_variant_equal_to_a_row_is_an_alias(tmp_path):
    spec = _spec(
        tmp_path,
        "study: t\ngrid: {model.decoder.norm: [groupnorm, smc]}\n"
        "variants: {paper-smc: {model.decoder.norm: smc}}\nseeds: [0, 1]\n",
    )
    variants = expand(spec)
    assert len(variants) == 4 and expected_count(spec) == 6
    smc = [v for v in variants if v.name == "norm=smc"]
    assert len(smc) == 2 and all(v.aliases == ("paper-smc",) for v in smc)


def test_excluding_every_row_is_an_error(tmp_path):
    spec = _spec(
        tmp_path,
        "study: t\ngrid: {model.decoder.norm: [groupnorm, smc]}\n"
        "exclude: [{model.decoder.norm: groupnorm}, {model.decoder.norm: smc}]\n",
    )
    assert expected_count(spec) == 0
    with pytest.raises(StudyFileError) as info:
        expand(spec)
    assert info.value.key == "exclude" and "at least one" in str(info.value)
    # a named variant keeps the study non-empty
    spec = _spec(
        tmp_path,
        "study: t\ngrid: {model.decoder.norm: [groupnorm, smc]}\n"
        "exclude: [{model.decoder.norm: groupnorm}, {model.decoder.norm: smc}]\n"
        "variants: {only: {train.steps: 5}}\n",
    )
    assert [v.name for v in expand(spec)] == ["only"] and expected_count(spec) == 1


def test_no_axes_is_one_base_variant_per_seed(tmp_path):
    spec = _spec(tmp_path, "study: only-base\nseeds: [3, 5]\n")
    variants = expand(spec)
    assert [(v.name, v.seed, v.source) for v in variants] == [("only-base", 3, "base"), ("only-base", 5, "base")]
    assert expected_count(spec) == 2


def test_order_of_application(tmp_path):
    """defaults < base < set < row / named variant < profile < seed."""
    (tmp_path / "base.yaml").write_text("train: {steps: 111, batch_size: 3}\nmodel.latent_channels: 8\n")
    spec = _spec(
        tmp_path,
        "study: t\nbase: base.yaml\nset: {train.batch_size: 5}\n"
        "grid: {train.lr: [0.125, 0.25]}\nvariants: {big: {model.latent_channels: 16}}\n"
        "profiles: {p: {train.steps: 7}}\nseeds: [2]\n",
    )
    plain = {v.name: v.config for v in expand(spec)}
    assert set(plain) == {"lr=0.125", "lr=0.25", "big"}
    for cfg in plain.values():
        assert (cfg.train.steps, cfg.train.batch_size, cfg.seed) == (111, 5, 2)
    assert plain["lr=0.125"].model.latent_channels == 8 and plain["lr=0.125"].train.lr == 0.125
    assert plain["big"].model.latent_channels == 16 and plain["big"].train.lr == 1e-4
    profiled = {v.name: v.config for v in expand(spec, "p")}
    assert all(cfg.train.steps == 7 for cfg in profiled.values())


def test_preset_axis_then_own_keys(tmp_path):
    spec = _spec(
        tmp_path,
        "study: t\nzip: [{preset: [LiteVAE-S, SD-VAE], train.batch_size: [32, 16]}]\n"
        "variants: {small-q: {preset: VAE-Small, model.quant_conv: false}}\n",
    )
    by_name = {v.name: v for v in expand(spec)}
    assert set(by_name) == {"LiteVAE-S,batch_size=32", "SD-VAE,batch_size=16", "small-q"}
    assert by_name["SD-VAE,batch_size=16"].config.model.encoder.kind == "sdvae"
    assert by_name["SD-VAE,batch_size=16"].config.model.quant_conv is True
    small = by_name["small-q"].config.model
    assert (small.encoder.kind, small.encoder.sd_width, small.quant_conv) == ("sdvae", "small", False)


def test_single_valued_axes_do_not_name_variants(tmp_path):
    spec = _spec(tmp_path, "study: t\ngrid: {train.steps: [5], model.decoder.norm: [groupnorm, smc]}\n")
    assert [v.name for v in expand(spec)] == ["norm=groupnorm", "norm=smc"]


def test_short_keys():
    assert short_keys(["model.decoder.norm", "model.encoder.preset"]) == {
        "model.decoder.norm": "norm",
        "model.encoder.preset": "preset",
    }
    assert short_keys(["train.lr", "train.discriminator_lr", "a.b.lr"]) == {
        "train.lr": "train.lr",
        "train.discriminator_lr": "discriminator_lr",
        "a.b.lr": "b.lr",
    }


def test_example_sweep_expected_count_matches_expand():
    spec = load_study(Path(__file__).resolve().parent.parent / "ablations" / "example_sweep.yaml")
    variants = expand(spec)
    assert len(variants) == expected_count(spec) == (2 * 2 * 3 - 1 + 2) * 2


def test_kept_sections_tell_numbers_of_other_types_apart():
    """``apply_overrides`` keeps each section's result per (section, overrides): 1, 1.0 and True
    are kept apart (a bool field refuses 1 however often True was set), containers too."""
    base = config.ExperimentConfig()
    for _ in range(2):
        assert config.apply_overrides(base, {"model.quant_conv": True, "seed": 1}).model.quant_conv is True
        with pytest.raises(config.ConfigError) as info:
            config.apply_overrides(base, {"model.quant_conv": 1, "seed": 1})
        assert info.value.key == "model.quant_conv"
        assert config.apply_overrides(base, {"train.batch_size": 16.0}).train.batch_size == 16
        with pytest.raises(config.ConfigError):
            config.apply_overrides(base, {"train.batch_size": 16.5})
    first, again = (config.apply_overrides(base, {"model.encoder.levels": [2, 3], "train.lr": 1}) for _ in range(2))
    assert first.model is again.model and first.model.encoder.levels == (2, 3)
    assert first.train.lr == 1.0 and type(first.train.lr) is float


def test_sections_checked_before_are_checked_again_across_sections():
    """``validate`` passes a config of sections that passed before without their own checks,
    but runs the checks across sections, and on a failure the checks in order say which."""
    base = config.ExperimentConfig()
    with_ldl = config.validate(config.apply_overrides(base, {"loss.ldl_weight": 1.0, "train.ema_decay": 0.99}))
    assert config.validate(base) is base  # its train section (ema_decay 0) passed too
    mixed = dataclasses.replace(base, loss=with_ldl.loss)  # sections that both passed
    with pytest.raises(config.ConfigError) as info:
        config.validate(mixed)
    assert info.value.key == "train.ema_decay" and "loss.ldl_weight > 0" in info.value.allowed
