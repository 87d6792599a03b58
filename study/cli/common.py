"""What every command shares: the ``Command`` each command module declares, the options of a
command that takes a study file, reading the study file into variants, and plain-text tables."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from study import store
from study.studyfile.grid import Variant, expand
from study.studyfile.parse import StudyFile, load_study, parse_sets
from study.studyfile.record import study_record

REPO = Path(__file__).resolve().parents[2]  # the checkout: ablations/, reports/
RESULTS_HELP = "results folder (default $LITEVAE_RESULTS or ./results)"


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


class NothingRecorded(Exception):
    """A command found no record to read for the variants asked for (exit 1, nothing written)."""


def _no_options(parser: argparse.ArgumentParser) -> None:
    """A command without options of its own."""


@dataclass(frozen=True)
class Command:
    """One command: its name and help line, the function that runs it (args -> exit code), the
    function that declares its options, and whether it takes a study file (``SPEC``,
    ``--profile``, ``--set``). ``study.cli.main`` builds the parser from these."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None] = _no_options
    spec: bool = False


def add_results(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--results``, the one declaration: on the top parser (default None) and on every command
    (default: the top parser's value), so it may come before or after the command."""
    parser.add_argument("--results", default=None if top else argparse.SUPPRESS, help=RESULTS_HELP)


def add_spec(parser: argparse.ArgumentParser) -> None:
    """The options of a command that reads a study file."""
    parser.add_argument("spec", help="a study file, e.g. ablations/smoke.yaml")
    add_profile_and_sets(parser)


def add_profile_and_sets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="a profile of the study file, e.g. smoke")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key for every variant, after the profile (repeatable)",
    )


def spec_and_variants(args: argparse.Namespace) -> tuple[StudyFile, list[Variant]]:
    """The study file ``args.spec`` expanded under ``--profile`` and ``--set``."""
    spec = load_study(args.spec)
    wandb = [f"train.wandb_project={args.wandb}"] if getattr(args, "wandb", None) else []  # issue 14: live curves
    extra = parse_sets(spec.path, (getattr(args, "set", None) or []) + wandb)
    return spec, expand(spec, getattr(args, "profile", None), extra)


def results_root(args: argparse.Namespace) -> Path:
    return store.results_root(getattr(args, "results", None))


def index_fields(args: argparse.Namespace, spec: StudyFile, variants: list[Variant]) -> dict[str, Any]:
    """The study-level fields of the index for this command line (profile and --set included)."""
    fields = study_record(spec, variants, getattr(args, "profile", None), getattr(args, "set", None) or [])
    return fields | getattr(args, "index_extra", {})  # e.g. the demo's weights_unstaged (study/cli/staging.py)


def num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: columns padded to their widest cell, a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
