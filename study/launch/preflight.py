"""The checks every launch makes before anything is created or submitted (``plan --check`` and
``launch --dry-run`` print them): each variant's image folders and split lists exist and hold
enough images for ``eval.num_images``; the weights its losses and metrics load are staged; its
``model.init`` is there with the digest its run id was made from; on SLURM, the commands answer
and the partition exists. Only the config sections a run's kind reads are checked.

A problem is one line naming the study, the variants, the key and the fix; any problem refuses
the launch (exit 2, nothing written). A metric whose weights are missing is a problem on SLURM
(an offline node records it as unavailable after the whole run) and a note elsewhere (``evaluate``
completes the record once the file is staged). docs/slurm.md, "Before anything is submitted".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from study import config as cfgmod
from study.config import metric_specs, site
from study.data.datasets import folder_split
from study.data.eval_sets import check_size
from study.data.files import DataError, image_files
from study.kinds.registry import reads
from study.measure import weights as weight_files
from study.store.checkpoint_files import CheckpointError, checkpoint_sha256
from study.studyfile.document import Resources
from study.studyfile.grid import Variant

SLURM_COMMANDS = ("sbatch", "srun", "sacct", "sinfo")  # submit, start tasks, job states, partitions
SLURM_TIMEOUT_S = 15
RUN_ID = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class Problem:
    key: str
    what: str
    fix: str
    blocking: bool = True
    weights: str = ""  # a metric's weights file that is not staged (a note: said once per file)


@dataclass
class Preflight:
    """What the checks found: ``problems`` refuse the launch, ``notes`` are said only; each maps
    a problem to the names of the variants it concerns (empty: the whole launch)."""

    study: str
    slurm: bool = False  # the SLURM checks were made
    problems: dict[Problem, list[str]] = field(default_factory=dict)
    notes: dict[Problem, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem, variant: str | None) -> None:
        names = (self.problems if problem.blocking else self.notes).setdefault(problem, [])
        if variant is not None and variant not in names:
            names.append(variant)

    def line(self, problem: Problem, names: list[str]) -> str:
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        who = f"{self.study} {shown}" if names else self.study
        return f"{who}: {problem.key}: {problem.what} ({problem.fix})"

    def lines(self, weights_said: bool = False) -> list[str]:
        """One line a problem, then one a note; the metrics whose weights are not staged on one
        note (none with ``weights_said``: the demo's fetch already said which and why)."""
        out = [self.line(p, n) for p, n in self.problems.items()]
        out += ["note: " + self.line(p, n) for p, n in self.notes.items() if not p.weights]
        unstaged: dict[str, list[str]] = {}  # weights file -> the metrics that need it
        for p in self.notes:
            if p.weights:
                unstaged.setdefault(p.weights, []).append(p.key.partition("(")[2].rstrip(")") or p.key)
        if unstaged and not weights_said:
            files = "; ".join(f"{name} (for {', '.join(keys)})" for name, keys in unstaged.items())
            out.append(
                f"note: {self.study}: weights not staged: {files}: those metrics will read n/a "
                f"(`{weight_files.FETCH_HINT}` where there is network, then `python run_study.py evaluate`)"
            )
        return out

    def refusal(self) -> str:
        """The launch's error: each problem on a line of its own."""
        lines = [self.line(p, n) for p, n in self.problems.items()]
        return f"{len(lines)} problem(s) found before anything was created or submitted:\n  " + "\n  ".join(lines)


def check(study: str, variants: list[Variant], executor: str, resources: Resources) -> Preflight:
    """Every check of ``variants`` launched with ``executor`` and ``resources``."""
    found = Preflight(study, slurm=executor == "slurm")
    settings = site.load()
    seen: dict[tuple, list[Problem]] = {}  # variants that share their sections share their problems
    for v in variants:
        cfg = v.config
        key = (reads(cfg), cfg.data, cfg.eval, cfg.loss, cfg.train.steps, cfg.model.init, cfg.model.init_sha256)
        if key not in seen:
            seen[key] = list(variant_problems(cfg, settings, strict_metrics=executor == "slurm"))
        for problem in seen[key]:
            found.add(problem, v.name)
    if executor == "slurm":
        for problem in slurm_problems(resources):
            found.add(problem, None)
    return found


def variant_problems(cfg: cfgmod.ExperimentConfig, settings: site.Settings, strict_metrics: bool) -> Iterator[Problem]:
    """The problems of one run, in the sections its kind reads."""
    sections = reads(cfg)
    data_ok = True
    if "data" in sections and cfg.data.kind == "folder":
        data = list(_folder(cfg.data.path, cfg.data.list, "data", cfg.data.name, settings))
        data_ok = not data
        yield from data
        if data_ok and "train" in sections and cfg.train.steps > 0:
            yield from _validation(cfg)
    if "eval" in sections:
        yield from _eval(cfg, settings, data_ok)
    yield from _weights(cfg, sections, strict_metrics)
    if "model" in sections and cfg.model.init:
        yield from _init(cfg, settings)


# --------------------------------------------------------------------------------------------
# image folders and split lists
# --------------------------------------------------------------------------------------------
def _fix(key: str, path: str, name: str, settings: site.Settings) -> str:
    """How to point ``key`` elsewhere: the site file's entry the path came from, or a new one."""
    hit = site.dataset_of(path, settings)
    if hit is not None:
        return f"{settings.where()} sets datasets.{hit[0]}: {hit[1]}; correct it there, or --set {key}=PATH"
    return (
        f"set it in the site file as datasets.{name or 'NAME'} and write ${{datasets.{name or 'NAME'}}}/... "
        f"in the study file, or --set {key}=PATH"
    )


def _folder(path: str, list_file: str, section: str, name: str, settings: site.Settings) -> Iterator[Problem]:
    """``<section>.path`` (and ``.list``) name an existing folder (split list) with images."""
    key, list_key = f"{section}.path", f"{section}.list"
    unresolved = [(k, v) for k, v in ((key, path), (list_key, list_file)) if "${" in v]
    for k, v in unresolved:
        for e in site.unresolved_value(v, k, settings):
            yield Problem(k, f"{v}: {e.reason}", e.fix)
    if unresolved:
        return
    if not path:
        yield Problem(key, f"is empty but {section} needs an image folder", f"--set {key}=PATH, or a site dataset")
        return
    if not Path(path).expanduser().is_dir():
        yield Problem(key, f"{path} does not exist", _fix(key, path, name, settings))
        return
    if list_file and not Path(list_file).expanduser().is_file():
        yield Problem(list_key, f"{list_file} does not exist", _fix(list_key, list_file, name, settings))
        return
    try:
        image_files(path, list_file, where=list_key)
    except DataError as e:
        yield Problem(list_key if list_file else key, str(e), "point it at a folder of images (jpg, png, webp)")


def _validation(cfg: cfgmod.ExperimentConfig) -> Iterator[Problem]:
    """Validation PSNR (at the end of training, and every ``train.val_every`` steps) reads
    ``train.val_images`` of the folder's hold-out."""
    try:
        held = len(folder_split(cfg.data, cfg.data.resolution)[2])
    except DataError as e:
        yield Problem("data.val_fraction", str(e).split("; ")[0], "add images or change data.val_fraction")
        return
    if cfg.train.val_images > held:
        yield Problem(
            "train.val_images",
            f"{cfg.train.val_images} but the held-out split of {cfg.data.path} holds {held} images",
            "lower train.val_images, or raise data.val_fraction",
        )


def _eval(cfg: cfgmod.ExperimentConfig, settings: site.Settings, data_ok: bool) -> Iterator[Problem]:
    """The evaluation folder, and ``eval.num_images`` against what it (or the hold-out) holds."""
    ev = cfg.eval
    if ev.path or ev.list:
        found = list(_folder(ev.path, ev.list, "eval", cfg.data.name, settings))
        yield from found
        if found:
            return
    elif cfg.data.kind == "folder" and not data_ok:
        return  # the hold-out of a folder that is not there: said once, under data.path
    try:
        check_size(cfg.data, ev, cfgmod.eval_resolution(cfg))
    except DataError as e:
        yield Problem("eval.num_images", str(e).split("; ")[0], "lower eval.num_images, or 'all'")


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------
def _needed_weights(cfg: cfgmod.ExperimentConfig, sections: tuple[str, ...]) -> Iterator[tuple[str, str, bool]]:
    """(key, weights name, for a loss) of each file the run loads."""
    if "loss" in sections and cfg.loss.lpips_weight > 0 and cfg.train.steps > 0:
        name = "vgg19" if cfg.loss.perceptual == "esrgan" else "vgg16"
        yield f"loss.perceptual ({cfg.loss.perceptual}, loss.lpips_weight {cfg.loss.lpips_weight:g})", name, True
    if "eval" in sections:
        for metric in cfg.eval.metrics:
            for need in metric_specs.spec(metric).needs:
                net = cfg.eval.lpips_net if need == "lpips" else need.partition(":")[2]
                name = "inception" if need == "inception" else weight_files.LPIPS_BACKBONES[net]
                yield f"eval.metrics ({metric})", name, False
    if "diffusion" in sections:
        yield "diffusion (generation FID)", "inception", False


def _weights(cfg: cfgmod.ExperimentConfig, sections: tuple[str, ...], strict_metrics: bool) -> Iterator[Problem]:
    for key, name, for_loss in _needed_weights(cfg, sections):
        try:
            weight_files.resolve(name)
        except weight_files.MissingWeightsError as e:
            w = weight_files.REGISTRY[name]
            state = "corrupt" if isinstance(e, weight_files.CorruptWeightsError) else "not staged"
            where = (
                f"{e.path}"
                if isinstance(e, weight_files.CorruptWeightsError)
                else f"{w.filename} in {e.path and e.path.parent}"
            )
            if e.path is not None and e.path.name != w.filename:  # a custom file ($LITEVAE_<NAME>_WEIGHTS)
                where, state = str(e.path), "missing"
            fix = f"run `{weight_files.FETCH_HINT}` on a machine with network access, or set ${w.override_env}"
            if not for_loss:
                fix += "; without it the metric is recorded as unavailable"
            blocking = for_loss or strict_metrics
            unstaged = name if state == "not staged" and not blocking else ""
            yield Problem(key, f"{where} is {state} (for {w.used_by})", fix, blocking=blocking, weights=unstaged)


# --------------------------------------------------------------------------------------------
# model.init
# --------------------------------------------------------------------------------------------
def _init(cfg: cfgmod.ExperimentConfig, settings: site.Settings) -> Iterator[Problem]:
    init = cfg.model.init
    if "${" in init:
        for e in site.unresolved_value(init, "model.init", settings):
            yield Problem("model.init", f"{init}: {e.reason}", e.fix)
        return
    if RUN_ID.match(init):  # a trained run of the harness: the launch orders it first
        return
    if not Path(init).expanduser().exists():
        yield Problem(
            "model.init",
            f"{init} does not exist",
            "set it in the site file as checkpoints.NAME, or --set model.init=PATH",
        )
        return
    try:
        digest = checkpoint_sha256(init)
    except CheckpointError as e:
        yield Problem("model.init", f"{init} is not a readable checkpoint ({e})", "--set model.init=PATH")
        return
    if cfg.model.init_sha256 and digest != cfg.model.init_sha256:
        yield Problem(
            "model.init",
            f"{init} has sha256 {digest[:12]}..., not the {cfg.model.init_sha256[:12]}... its run id was made from",
            "plan again: the run id follows the checkpoint",
        )


# --------------------------------------------------------------------------------------------
# SLURM
# --------------------------------------------------------------------------------------------
def _answer(*cmd: str) -> tuple[bool, str]:
    """(succeeded, stdout or the last line of the error)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"no answer in {SLURM_TIMEOUT_S} s"
    except OSError as e:
        return False, str(e)
    if done.returncode != 0:
        return False, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return True, done.stdout


def slurm_problems(resources: Resources) -> Iterator[Problem]:
    """The SLURM commands are on PATH and answer; the partition exists."""
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    if missing:
        yield Problem(
            "--executor slurm",
            f"{', '.join(f'`{c}`' for c in missing)} not found on PATH",
            "launch from a SLURM login node, or --executor local",
        )
        return
    ok, out = _answer("sinfo", "-h", "-o", "%P")
    if not ok:
        yield Problem(
            "--executor slurm", f"sinfo: {out}", "the SLURM controller must answer; ask your cluster's admins"
        )
        return
    ok, why = _answer("sacct", "-n", "-X", "-o", "JobID", "-S", "now")
    if not ok:
        yield Problem("--executor slurm", f"{why} (sacct)", "job states are read through SLURM accounting (slurmdbd)")
    if resources.partition:
        ok, named = _answer("sinfo", "-h", "-p", resources.partition, "-o", "%P")
        if not ok or not named.strip():
            partitions = ", ".join(p.rstrip("*") for p in out.split()) or "none"
            yield Problem(
                "resources.partition",
                f"no partition {resources.partition!r} on this cluster (sinfo lists: {partitions})",
                "--partition NAME, or launch.partition in the site file",
            )
