"""The demo's weight-staging stage (study/cli/staging.py): before anything trains it fetches the
weights its metrics need, here from a loopback HTTP server serving generated files, and the four
metrics of the paper come out as numbers; offline it says so once and records which files are
missing in the study's index, for the report."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import threading
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from study import store
from study.cli import main as cli
from study.cli import staging
from study.measure import weights as weight_files
from study.studyfile.grid import expand
from study.studyfile.parse import load_study

pytest_plugins = ["tests.metric_fixtures"]  # the generated weights files

ROOT = Path(__file__).resolve().parents[1]
SERVER_LIFETIME_S = 300.0  # the server shuts itself down after this long, whatever the test does

TINY_DEMO = f"""\
study: demo_weights
base: {ROOT / "ablations" / "base" / "smoke_cpu.yaml"}
set:
  model.decoder: {{channels: 8, channel_mult: [1, 1, 1, 1], blocks_per_level: 1, mid_attention: false}}
  loss.discriminator: none
  data.resolution: 32
  train: {{steps: 2, batch_size: 2, log_every: 1, val_every: 2, val_images: 2, checkpoint_every: 2}}
  eval: {{num_images: 4, batch_size: 4, gallery_images: 0, metrics: [rfid, psnr, ssim, lpips]}}
seeds: [0]
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's signature)
        pass


@pytest.fixture
def served_weights(tmp_path, monkeypatch, inception_file, alexnet_file):
    """The generated Inception and AlexNet files under their registry names, served on
    127.0.0.1 (a random port) as $LITEVAE_WEIGHTS_URL; the registry pins their digests; an empty
    weights directory. Yields the server's request log (the paths asked for)."""
    served = tmp_path / "served"
    served.mkdir()
    for name, source in (("inception", inception_file), ("alexnet", alexnet_file)):
        w = weight_files.REGISTRY[name]
        data = Path(source).read_bytes()
        (served / w.filename).write_bytes(data)
        monkeypatch.setitem(weight_files.REGISTRY, name, replace(w, sha256=hashlib.sha256(data).hexdigest()))
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(tmp_path / "weights"))
    for w in weight_files.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    asked: list[str] = []

    class Handler(_Quiet):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
    deadline.daemon = True
    deadline.start()
    monkeypatch.setenv(weight_files.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield asked
    finally:
        deadline.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _demo(tmp_path: Path, capsys) -> tuple[int, str, Path]:
    """`run_study.py demo --results R` through the command line's own parser, on a tiny study
    file instead of ablations/smoke.yaml (the demo's code path, a few seconds of training), in
    this process (the debug executor: the generated weights' digests are patched in here only)."""
    study = tmp_path / "demo_weights.yaml"
    study.write_text(TINY_DEMO)
    results = tmp_path / "results"
    args = cli.parser().parse_args(["demo", "--results", str(results), "--poll", "0.2", "--executor", "debug"])
    args.spec = str(study)
    code = args.func(args)
    return code, capsys.readouterr().out, results


def test_needed_weights_are_the_metrics_networks():
    variants = expand(load_study(ROOT / "ablations" / "smoke.yaml"))
    metrics = set(variants[0].config.eval.metrics)
    expected = ["inception", "alexnet"] + (["vgg16"] if {"lpips@vgg", "lpips@vgg_std"} & metrics else [])
    assert staging.needed_weights(variants) == expected
    with_loss = expand(load_study(ROOT / "ablations" / "smoke.yaml"), extra={"loss.lpips_weight": 1.0})
    assert "vgg16" in staging.needed_weights(with_loss)


def test_demo_fetches_from_a_loopback_server_and_every_metric_is_a_number(served_weights, tmp_path, capsys):
    code, out, results = _demo(tmp_path, capsys)
    assert code == 0, out
    assert sorted(served_weights) == sorted(
        f"/{weight_files.REGISTRY[n].filename}" for n in ("inception", "alexnet")
    )  # each fetched once, from the mirror
    assert "downloaded inception" in " ".join(out.split()) and "offline" not in out
    for name in ("inception", "alexnet"):
        assert weight_files.check(names=[name])[0].state == "present"
    index = store.read_index(results, "demo_weights")
    assert index is not None and index[staging.INDEX_FLAG] is None
    with open(results / "demo_weights" / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    for metric in ("rfid", "psnr", "ssim", "lpips"):
        assert float(row[metric]) == float(row[metric]), metric  # a number, not NaN or a reason

    # a second demo finds them staged and asks the server for nothing
    served_weights.clear()
    code, out, _ = _demo(tmp_path, capsys)
    assert code == 0 and served_weights == [] and "present" in out


def test_demo_offline_says_so_once_and_records_the_missing_files(tmp_path, monkeypatch, capsys, no_weights):
    # a port nothing listens on: the connection is refused, as on a machine without network
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet) as probe:
        port = probe.server_address[1]
    monkeypatch.setenv(weight_files.MIRROR_ENV, f"http://127.0.0.1:{port}")
    code, out, results = _demo(tmp_path, capsys)
    assert code == 0, out
    assert out.count("offline:") == 1 and "inception, alexnet" in out
    assert "is not staged" not in out and out.count("weights not staged") == 1  # the footnote only
    index = store.read_index(results, "demo_weights")
    assert index is not None and index[staging.INDEX_FLAG]["names"] == ["inception", "alexnet"]
    with open(results / "demo_weights" / "results.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["psnr"]) > 0 and not row.get("rfid")


def test_the_mirror_replaces_the_pinned_source(monkeypatch):
    w = weight_files.REGISTRY["alexnet"]
    monkeypatch.delenv(weight_files.MIRROR_ENV, raising=False)
    assert weight_files.source_url(w) == w.url
    monkeypatch.setenv(weight_files.MIRROR_ENV, "http://mirror.example/weights/")
    assert weight_files.source_url(w) == f"http://mirror.example/weights/{w.filename}"
    assert urllib.request.Request(weight_files.source_url(w)).host == "mirror.example"
