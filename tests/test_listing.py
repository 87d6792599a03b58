"""A dataset's file list is read once (study/data/listing.py): one cached, checked listing per
folder or split list, shared by every run of a launch and refreshed when the folder changes.

Directory walks are counted by wrapping ``os.scandir``; a "job" is simulated the way a job
process starts: an empty in-process memo, the listing cache folder of its results folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from study.data import datasets, listing
from study.launch import preflight
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import RESOURCES, write_study

OLD = time.time() - 3600  # a dataset that has not changed for an hour (see listing.RACY_NS)


@pytest.fixture
def fresh(monkeypatch):
    """An empty memo and no cache folder, as a new process starts."""
    monkeypatch.setattr(listing, "_MEMO", {})
    monkeypatch.setattr(listing, "_PERSISTED", set())
    monkeypatch.setattr(listing, "_cache_dir", None)


@pytest.fixture
def walks(monkeypatch):
    """{directory: times os.scandir read it}."""
    counts: dict[str, int] = {}
    real = os.scandir

    def counting(path="."):
        counts[str(path)] = counts.get(str(path), 0) + 1
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return counts


def _age(*paths: Path) -> None:
    for p in paths:
        os.utime(p, (OLD, OLD))


def _new_job(monkeypatch, cache: Path) -> None:
    monkeypatch.setattr(listing, "_MEMO", {})
    monkeypatch.setattr(listing, "_PERSISTED", set())
    listing.use_cache(cache)


def test_100k_files_are_listed_once_for_a_study_of_8_variants(tmp_path, fresh, walks, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(100_000):
        os.close(os.open(folder / f"{i:06d}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    _age(folder)
    spec = write_study(
        tmp_path,
        "listed",
        set={"data.kind": "folder", "data.name": "empty", "data.path": str(folder), "eval.num_images": 16},
        zip=[{"train.lr": [1e-4 * (i + 1) for i in range(8)]}],
        resources=RESOURCES,
    )
    variants = expand(load_study(spec))
    assert len(variants) == 8
    results = tmp_path / "results"
    # the launch: its checks count each variant's eval set; the listing is then written for the jobs
    found = preflight.check("listed", variants, "local", load_study(spec).resources)
    assert found.ok, found.lines()
    listing.persist(results / ".cache" / "listings")
    # eight jobs, each a new process reading its data and eval set
    for v in variants:
        _new_job(monkeypatch, results / ".cache" / "listings")
        _, train, heldout = datasets.folder_split(v.config.data, v.config.data.resolution)
        assert len(train) + len(heldout) == 100_000 and len(heldout) > 16
    assert walks.get(str(folder.resolve())) == 1, walks
    cached = list((results / ".cache" / "listings").glob("*.json"))
    assert len(cached) == 1
    doc = json.loads(cached[0].read_text())
    assert doc["count"] == 100_000 and doc["files"][:2] == ["000000.JPEG", "000001.JPEG"]


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for d in ("a", "b/c"):
        (root / d).mkdir(parents=True)
    for f in ("a/1.jpg", "b/2.png", "b/c/3.webp", "b/c/notes.txt", "top.JPG"):
        (root / f).write_bytes(b"")
    _age(root, root / "a", root / "b", root / "b/c")
    return root


def test_a_listing_is_refreshed_when_a_folder_below_changes(tmp_path, fresh, walks):
    root = _tree(tmp_path)
    listing.use_cache(tmp_path / "cache")
    assert datasets.list_images(root) == ["a/1.jpg", "b/2.png", "b/c/3.webp", "top.JPG"]
    assert datasets.list_images(root) == ["a/1.jpg", "b/2.png", "b/c/3.webp", "top.JPG"]
    assert walks[str(root.resolve())] == 1
    (root / "b/c/4.jpeg").write_bytes(b"")  # deep below: only b/c's time changes
    assert datasets.list_images(root)[-2:] == ["b/c/4.jpeg", "top.JPG"]
    assert walks[str(root.resolve())] == 2
    (root / "a/1.jpg").unlink()
    assert "a/1.jpg" not in datasets.list_images(root)


def test_a_folder_changed_in_the_last_seconds_is_not_kept(tmp_path, fresh, walks):
    root = _tree(tmp_path)
    os.utime(root / "a")  # just now: a change in the same clock tick could go unseen
    datasets.list_images(root)
    datasets.list_images(root)
    assert walks[str(root.resolve())] == 2
    assert listing._MEMO == {}


def test_a_torn_or_edited_cache_file_is_ignored_and_rewritten(tmp_path, fresh, walks, monkeypatch):
    root = _tree(tmp_path)
    cache = tmp_path / "cache"
    listing.use_cache(cache)
    files = datasets.list_images(root)
    (path,) = cache.glob("*.json")
    doc = json.loads(path.read_text())
    doc["files"] = doc["files"][:-1] + ["forged.jpg"]
    path.write_text(json.dumps(doc))
    _new_job(monkeypatch, cache)
    assert datasets.list_images(root) == files
    assert walks[str(root.resolve())] == 2
    path.write_text(path.read_text()[:50])  # torn
    _new_job(monkeypatch, cache)
    assert datasets.list_images(root) == files
    assert json.loads(path.read_text())["files"] == files


def test_a_split_list_is_checked_once_and_again_when_a_listed_file_goes(tmp_path, fresh, monkeypatch):
    root = _tree(tmp_path)
    split = tmp_path / "train.txt"
    split.write_text("b/2.png\na/1.jpg\n")
    _age(split)
    stats: list[str] = []
    real = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda p: stats.append(str(p)) or real(p))
    assert datasets.read_list(split, root, "data.list") == ["b/2.png", "a/1.jpg"]
    checked = len(stats)
    assert datasets.read_list(split, root, "data.list") == ["b/2.png", "a/1.jpg"]
    assert len(stats) == checked  # no file of the list looked at again
    (root / "a/1.jpg").unlink()
    with pytest.raises(datasets.DataError, match="1 of the 2 files"):
        datasets.read_list(split, root, "data.list")
