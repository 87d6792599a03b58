"""Site settings (study/config/site.py): the file and where it is found, ``${...}`` in path values,
the launch defaults it fills, the weights directory, and ``plan --explain``'s sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.cli.main import main
from study.config import site
from study.measure import weights as weight_files
from study.studyfile import sources
from study.studyfile.grid import expand
from study.studyfile.parse import load_study, parse_sets

REPO = Path(__file__).resolve().parents[1]
TABLE4 = REPO / "ablations" / "table4.yaml"


@pytest.fixture
def site_file(tmp_path, monkeypatch):
    """Writes $LITEVAE_SITE; returns a function text -> path."""
    path = tmp_path / "site.yaml"
    monkeypatch.setenv(site.SITE_ENV, str(path))

    def write(text: str) -> Path:
        path.write_text(text)
        return path

    return write


def test_found_through_the_variable_else_the_user_config_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(site.SITE_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert site.load() == site.Settings(looked_at=tmp_path / "cfg" / "litevae" / "site.yaml")
    (tmp_path / "cfg" / "litevae").mkdir(parents=True)
    (tmp_path / "cfg" / "litevae" / "site.yaml").write_text("datasets: {ffhq: /data/ffhq}\n")
    assert site.load().datasets == {"ffhq": "/data/ffhq"}
    monkeypatch.setenv(site.SITE_ENV, str(tmp_path / "nowhere.yaml"))
    with pytest.raises(site.SiteError, match="nowhere.yaml"):
        site.load()


@pytest.mark.parametrize(
    "text, where",
    [
        ("dataset: {imagenet: /x}\n", "dataset"),
        ("datasets: {imagenet: 3}\n", "datasets.imagenet"),
        ("launch: {executor: kubernetes}\n", "launch.executor"),
        ("launch: {gpus: -1}\n", "launch.gpus"),
        ("launch: {partition: gpu, nodes: 2}\n", "launch.nodes"),
    ],
)
def test_a_malformed_site_file_names_the_file_and_the_key(site_file, text, where):
    path = site_file(text)
    with pytest.raises(site.SiteError) as e:
        site.load()
    assert str(path) in str(e.value) and where in str(e.value)


def test_references_expand_from_the_site_file_and_the_environment(site_file, monkeypatch):
    site_file('datasets: {imagenet: "${DATA}/imagenet"}\ncheckpoints: {kl-f8: /ckpt/kl-f8.ckpt}\n')
    monkeypatch.setenv("DATA", "/lab/data")
    assert site.expand("${datasets.imagenet}/train", "data.path") == "/lab/data/imagenet/train"
    assert site.expand("${checkpoints.kl-f8}", "model.init") == "/ckpt/kl-f8.ckpt"
    assert site.expand("${DATA}/x", "eval.path") == "/lab/data/x"
    monkeypatch.delenv("DATA")
    with pytest.raises(site.Unresolved, match=r"data\.path: .*environment variable DATA is not set"):
        site.expand("${datasets.imagenet}/train", "data.path")
    with pytest.raises(site.Unresolved, match=r"eval\.list: .*no datasets\.ffhq .*it names: imagenet"):
        site.expand("${datasets.ffhq}/val.txt", "eval.list")


def test_study_files_resolve_through_the_site_file_and_keep_their_run_ids(site_file, tmp_path, monkeypatch):
    monkeypatch.delenv(site.SITE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    unresolved = expand(load_study(TABLE4))
    assert unresolved[0].config.data.path == "${datasets.imagenet}/train"  # plans anywhere
    monkeypatch.setenv(site.SITE_ENV, str(site_file("datasets: {imagenet: /lab/imagenet}\n")))
    resolved = expand(load_study(TABLE4))
    assert [v.config.data.path for v in resolved] == ["/lab/imagenet/train"] * 2
    assert [v.config.eval.path for v in resolved] == ["/lab/imagenet/val"] * 2
    assert [v.run_id for v in resolved] == [v.run_id for v in unresolved]  # paths are not identity


def test_the_weights_directory_comes_from_the_site_file(site_file, tmp_path, monkeypatch):
    monkeypatch.delenv(weight_files.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("SCRATCH", str(tmp_path))
    site_file('weights: "${SCRATCH}/weights"\n')
    assert weight_files.weights_dir() == tmp_path / "weights"
    assert "weights in" in weight_files.format_check(weight_files.check())
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(tmp_path / "env"))
    assert weight_files.weights_dir() == tmp_path / "env"  # the variable still wins


def test_launch_defaults_fill_what_the_study_file_leaves_unset(site_file):
    site_file("launch: {executor: slurm, partition: gpu, account: lab, qos: high, gpus: 8, time: 60}\n")
    spec = load_study(TABLE4)  # its resources name gpus, cpus_per_gpu, mem_gb, timeout_min
    resources, where = sources.launch_resources(spec)
    assert (resources.partition, resources.account, resources.qos) == ("gpu", "lab", "high")
    assert (resources.gpus, resources.timeout_min) == (2, 1440)
    assert "launch.partition" in where["partition"] and where["gpus"] == "study file (resources)"
    assert sources.executor(None) == ("slurm", f"the site file {site.load().path} (launch.executor)")
    assert sources.executor("local") == ("local", "--executor")


def test_plan_explain_says_where_each_setting_came_from(site_file, monkeypatch, capsys):
    site_file("datasets: {imagenet: /lab/imagenet}\nlaunch: {partition: gpu}\n")
    assert main(["plan", str(TABLE4), "--explain", "smc", "--set", "train.lr=0.0002"]) == 0
    out = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "/lab/imagenet/train" in out["data.path"] and "datasets.imagenet" in out["data.path"]
    assert str(site.load().path) in out["data.path"]
    assert out["model.decoder.norm"].rstrip().endswith("study file (variants.smc)")
    assert out["loss.adversarial_weight_mode"].rstrip().endswith("study file (set)")
    assert out["train.steps"].rstrip().endswith("study file (base)")
    assert out["train.lr"].rstrip().endswith("--set")
    assert out["loss.kl_weight"].rstrip().endswith("default")
    assert "launch.partition" in out["resources.partition"]
    assert out["executor"].rstrip().endswith("default")
    monkeypatch.setenv("ROOT", "/env/data")
    sets = ["--set", "eval.path=${ROOT}/val", "--set", "eval.name=val"]
    assert main(["plan", str(TABLE4), "--profile", "smoke", "--explain", *sets]) == 0
    out = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "/env/data/val" in out["eval.path"] and "the environment ($ROOT)" in out["eval.path"]
    assert out["train.steps"].rstrip().endswith("profile smoke")
    assert parse_sets(TABLE4, ["eval.path=${ROOT}/val"])  # a --set path may hold ${...} too
