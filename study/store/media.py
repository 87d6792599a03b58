"""Where a run's pictures and live curves live (``gallery/``, ``tensorboard/`` in the run folder),
and the study folder's relative links to the curves. Layout and link rules: docs/reports.md,
"Where pictures and curves live".
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
