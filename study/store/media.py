"""Where a run's pictures and live curves live, and the study folder's links to the curves.

Layout (beside ``study/store/runs.py``'s)::

    results/runs/<id>/gallery/<protocol id>/   the evaluation's reconstructions (study/evaluation/gallery.py):
                                               manifest.json, original_000.png, ..., grid.png
    results/runs/<id>/tensorboard/             the run's TensorBoard event files (study/trainer/live_log.py)
    results/<study>/tensorboard/<link>         a relative symlink to ../../runs/<id>/tensorboard

A run may belong to several studies (one config, one run), so its event files live once, in the
run folder, and each study links to them: ``tensorboard --logdir results/<study>/tensorboard``
shows that study's variants side by side (TensorBoard follows the links), each under its variant's
name, with ``/seed<N>`` added when the study has several seeds of a name. The links are made when
the study's index is written (collect, report) and when a launch has made the run folders, for
the runs whose folder exists; the link's target is made with it (empty until the run trains), so
no link ever dangles and a copy of the results folder (``shutil.copytree``, ``cp -r``) works.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

GALLERY = "gallery"
MANIFEST = "manifest.json"
TENSORBOARD = "tensorboard"


def gallery_dir(run_folder: Path, protocol_id: str) -> Path:
    return Path(run_folder) / GALLERY / protocol_id


def tensorboard_dir(run_folder: Path) -> Path:
    return Path(run_folder) / TENSORBOARD


def link_names(variants: list[dict[str, Any]]) -> dict[str, str]:
    """Link name -> run id for a study's variant records (``runs.variant_record``): the variant's
    name, or ``<name>/seed<N>`` where the name has several seeds. A run shared by two names
    (an alias) is linked under the first."""
    seeds: dict[str, set[int]] = {}
    for v in variants:
        seeds.setdefault(v["name"], set()).add(int(v["seed"]))
    out: dict[str, str] = {}
    for v in variants:
        name = v["name"] if len(seeds[v["name"]]) == 1 else f"{v['name']}/seed{v['seed']}"
        out.setdefault(name, v["run_id"])
    return out


def link_tensorboard(root: Path, study_folder: Path, variants: list[dict[str, Any]]) -> Path:
    """``study_folder/tensorboard/<link>`` -> ``root/runs/<id>/tensorboard`` for every variant
    whose run folder exists (relative links, so the results folder can move; the target folder
    made if need be); every other link there is removed (links only: a real folder is left
    alone). Returns the study's log folder."""
    logdir = Path(study_folder) / TENSORBOARD
    runs = Path(root) / "runs"
    linked = {name: rid for name, rid in link_names(variants).items() if (runs / rid).is_dir()}
    for folder, dirs, files in os.walk(logdir):  # does not descend into the links
        for entry in (Path(folder) / n for n in dirs + files):
            if entry.is_symlink() and entry.relative_to(logdir).as_posix() not in linked:
                entry.unlink()  # a variant no longer in the study, or not launched (yet)
    for name, run_id in linked.items():
        link, events = logdir / name, tensorboard_dir(runs / run_id)
        events.mkdir(exist_ok=True)
        target = Path(os.path.relpath(events, link.parent))
        if (link.is_symlink() and Path(os.readlink(link)) == target) or (link.exists() and not link.is_symlink()):
            continue  # linked already, or a real folder that is not ours to replace
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a concurrent launch sees the old link or the new one
    return logdir
