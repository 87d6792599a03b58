"""Tables 7 and 13 end to end with their smoke profiles (``run SPEC --profile smoke``): the
autoencoders of Tables 1 and 11 trained, their latents cached, tiny diffusion models trained,
64 samples decoded and scored with generation FID (the locally generated Inception file), and
reports that show the paper's 8.11 / 8.03 / 5.92 / 5.73 and 12.51 beside ours, the autoencoders'
reconstruction numbers and a grid of samples. The two studies share one results folder: Table
13's LiteVAE-B runs are Table 7's, trained once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import run_study
from study import store
from study.measure import weights
from study.studyfile.grid import expand
from study.studyfile.parse import load_study

pytest_plugins = ["tests.metric_fixtures"]
pytestmark = pytest.mark.e2e

ABLATIONS = Path(__file__).resolve().parent.parent / "ablations"
# Shorter than the profiles (100 autoencoder and 300 diffusion steps) so the suite keeps its budget.
SETS = ["--set", "train.steps=20", "--set", "diffusion.steps=120"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, inception_file) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("generation")
    return base / "results", base / "reports"


def _run(name: str, folders: tuple[Path, Path], inception: Path, monkeypatch) -> int:
    monkeypatch.setenv(weights.REGISTRY["inception"].override_env, str(inception))
    results, reports = folders
    return run_study.main(
        ["run", str(ABLATIONS / name), "--profile", "smoke", "--executor", "debug", "--results", str(results)]
        + ["--reports", str(reports), "--poll", "0.1", *SETS]
    )


def _variants(name: str) -> list:
    return expand(load_study(ABLATIONS / name), "smoke", {"train.steps": 20, "diffusion.steps": 120})


@pytest.mark.parametrize(
    "name, paper",
    [("table7.yaml", ["8.11", "8.03", "5.92", "5.73"]), ("table13.yaml", ["12.51", "8.03"])],
)
def test_generation_table_smoke_profile_end_to_end(name, paper, folders, inception_file, monkeypatch):
    assert _run(name, folders, inception_file, monkeypatch) == 0
    results, reports = folders
    spec = load_study(ABLATIONS / name)
    variants = _variants(name)
    for v in variants:
        assert store.is_done(store.run_dir(results, v.run_id)), v.name
    frame = pd.read_csv(results / spec.study / "results.csv")
    diffusion = frame[frame["name"].isin([v.name for v in variants if v.config.task == "diffusion"])]
    gen = diffusion[diffusion["gfid"].notna()]
    assert len(gen) == len({v.run_id for v in variants if v.config.task == "diffusion"})
    assert (gen["gfid"] > 0).all() and gen["gfid"].map(lambda x: x < 1e4).all()
    # the autoencoder's reconstruction numbers beside each diffusion run's FID
    assert gen["ae_psnr"].between(5, 60).all()
    md = (reports / spec.study / "report.md").read_text()
    html = (reports / spec.study / "report.html").read_text()
    for number in paper:
        assert number in md, number
    for label in set(spec.paper.rows.values()):
        assert label in md
    assert "AE PSNR" in md and "## Samples" in md and "FID protocol (ours): 64 samples" in md
    assert html.count("data:image/png;base64,") >= 2  # figures and the sample grids
    for v in variants:
        if v.config.task == "diffusion":
            assert (store.run_dir(results, v.run_id) / "samples" / "grid.png").is_file()


def test_the_latent_cache_of_a_shared_autoencoder_was_written_once(folders, inception_file, monkeypatch):
    """Table 13's LiteVAE-B diffusion run is Table 7's (one run), and the cache of its
    autoencoder has one set of shards."""
    for name in ("table7.yaml", "table13.yaml"):  # done by the tests above (then skipped), in any order
        assert _run(name, folders, inception_file, monkeypatch) == 0
    results, _ = folders
    seven = {v.name: v for v in _variants("table7.yaml")}
    thirteen = {v.name: v for v in _variants("table13.yaml")}
    assert seven["ffhq-ldm-litevae-b"].run_id == thirteen["ffhq-ldm-litevae-b"].run_id
    ae = store.run_dir(results, seven["ffhq-ldm-litevae-b"].config.diffusion.autoencoder_id)
    caches = [p for p in (ae / "latents").iterdir() if p.is_dir()]
    assert len(caches) == 1 and (caches[0] / "meta.json").is_file()
