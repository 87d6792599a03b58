"""``run_study.py``'s parser and dispatch: the one place the command line is assembled from the
commands each module of ``study.cli`` declares, and where errors become exit codes.

Exit codes: 0 success, 2 bad input (nothing launched, nothing written), 1 a failure at run time
(or nothing recorded to read). ``--json`` prints one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from study import store
from study.cli import evaluation, launching, plan, results, tools
from study.cli.common import Command, NothingRecorded, UsageError, add_results, add_spec
from study.config import ConfigError
from study.launch.launcher import LaunchError, LaunchLocked
from study.studyfile.parse import StudyFileError

COMMANDS: tuple[Command, ...] = (
    *tools.DEMO,
    *plan.COMMANDS,
    *launching.COMMANDS,
    *results.COMMANDS,
    *evaluation.COMMANDS,
    *tools.COMMANDS,
)

DESCRIPTION = (
    "LiteVAE study harness: a study file (ablations/*.yaml) expanded into variants, run as jobs, "
    f"collected and reported. `demo` runs the embedded default here; `launch`/`run` use the "
    f"{launching.DEFAULT_EXECUTOR} executor (this machine) unless --executor slurm."
)


def parser() -> argparse.ArgumentParser:
    """The whole command line: every command of ``COMMANDS`` with its options."""
    p = argparse.ArgumentParser(prog="run_study.py", description=DESCRIPTION)
    add_results(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sp = sub.add_parser(command.name, help=command.help, description=command.help)
        if command.spec:
            add_spec(sp)
        command.options(sp)
        add_results(sp, top=False)
        sp.set_defaults(func=command.run)
    return p


def glued_values(argv: list[str], options: tuple[str, ...] = ("--sbatch",)) -> list[str]:
    """``--sbatch --exclude=node01`` as ``--sbatch=--exclude=node01``: argparse would read a value
    that starts with ``--`` as an option of its own."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in options and i + 1 < len(argv):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _one_line_warnings(message, category, filename, lineno, line=None) -> str:  # type: ignore[no-untyped-def]
    """A record that could not be read is one line naming its file, not Python's warning with the
    source line that read it."""
    if issubclass(category, store.CorruptRecord):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(glued_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        p.print_help()
        return 0
    warnings.formatwarning = _one_line_warnings
    try:
        return args.func(args)
    except (LaunchLocked, NothingRecorded) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (StudyFileError, ConfigError, UsageError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`plan ... | head -1`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit stays quiet
        return 0
    finally:
        warnings.formatwarning = _python_format
