"""``evaluate SPEC`` (the completed runs under an evaluation protocol, no retraining) and
``reconstruct SOURCE INPUT...`` (PNG reconstructions by a run, a study's variant or a checkpoint)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from study import config as cfgmod
from study import store
from study.cli.common import Command, UsageError, cuda_available, results_root, spec_and_variants
from study.studyfile.parse import parse_sets, resolve


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
def evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        nargs="+",
        metavar="KEY=VALUE",
        help="eval.* overrides, e.g. num_images=1000 posterior=sample lpips_net=vgg",
    )
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--force", action="store_true", help="recompute even if a record of the protocol exists")
    p.add_argument("--json", action="store_true")


def protocol_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--protocol KEY=VALUE`` strings (YAML values) -> ``{"eval.KEY": value}``. Only ``eval.*``
    keys are allowed: anything else would change what was trained, i.e. be another run."""
    out: dict[str, Any] = {}
    keys = {k for k in cfgmod.config_keys() if k.startswith("eval.")}
    for item in items:
        if "=" not in item:
            raise cfgmod.ConfigError("--protocol", item, "KEY=VALUE, e.g. num_images=1000")
        key, raw = item.split("=", 1)
        key = key.strip()
        key = key if key.startswith("eval.") else f"eval.{key}"
        if key not in keys:
            raise cfgmod.ConfigError(
                f"--protocol {key}", raw, "one of " + ", ".join(sorted(keys)) + cfgmod.suggest(key, keys)
            )
        out[key] = yaml.safe_load(raw)
    return out


def evaluate_line(row: dict[str, Any]) -> str:
    """One line of ``evaluate``'s output per run (a row of ``evaluate_study``)."""
    if row["state"] in ("skipped", "failed"):
        return f"{row['name']} ({row['run_id']}): {row['state']}, {row['reason']}"
    parts = [f"{k}={v:.4g}" for k, v in row["metrics"].items()]
    parts += [f"{k}: {v}" for k, v in row["unavailable"].items()]
    return f"{row['name']} ({row['run_id']}) eval/{row['protocol_id']}.json [{row['state']}]: " + "; ".join(parts)


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate the study's completed runs under their eval protocol (with --protocol overrides);
    a record of the same protocol id is reused unless --force. Exit 1 when a completed run could
    not be evaluated (no checkpoint)."""
    from study.data.datasets import DataError
    from study.evaluation.evaluate import evaluate_study

    overrides = protocol_overrides(args.protocol or [])
    spec, variants = spec_and_variants(args)
    try:
        rows = evaluate_study(
            variants,
            results_root(args),
            overrides=overrides,
            device=args.device,
            force=args.force,
            progress=not args.json,
            echo=None if args.json else lambda row: print(evaluate_line(row)),
        )
    except DataError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps({"study": spec.study, "runs": rows}, indent=1))
    else:
        counts = {s: sum(r["state"] == s for r in rows) for s in ("evaluated", "reused", "skipped", "failed")}
        print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(rows)} run(s)")
    return 1 if any(r["state"] == "failed" for r in rows) else 0


# --------------------------------------------------------------------------------------------
# reconstruct
# --------------------------------------------------------------------------------------------
def reconstruct_options(p: argparse.ArgumentParser) -> None:
    from study.data.preprocess import PREPROCESS

    p.add_argument("source", help="a run id or folder, a study file (then a variant name), or a checkpoint")
    p.add_argument("inputs", nargs="+", help="image files or folders (after VARIANT for a study file)")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--resolution", type=int, help="default: the run's data.resolution, else 256")
    p.add_argument("--profile", help="a study file's profile")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config override (repeatable)")
    p.add_argument(
        "--preset",
        default="SD-VAE",
        choices=list(cfgmod.MODEL_PRESETS),
        help="a checkpoint's model (default SD-VAE, 4 latent channels)",
    )
    p.add_argument(
        "--preprocess", choices=list(PREPROCESS), help="resize and crop (default: the run's eval.preprocess)"
    )
    p.add_argument("--save-inputs", action="store_true", help="write the crop the model read as <name>.input.png")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")


def reconstruct(args: argparse.Namespace) -> int:
    """Reconstructions of image files as PNGs (study/evaluation/reconstruct.py) by a run, a study's
    variant or a checkpoint; prints the folder written. Bad input of any kind: exit 2."""
    import torch

    from study.autoencoder.pretrained import CheckpointError
    from study.data.datasets import DataError
    from study.evaluation.reconstruct import ReconstructError, reconstruct_files
    from study.evaluation.sources import SourceError

    device = torch.device(args.device or ("cuda" if cuda_available() else "cpu"))
    try:
        source, inputs = _source(args, device)
        resolution = args.resolution or source.resolution
        written = reconstruct_files(
            source.autoencoder,
            inputs,
            args.out,
            resolution,
            device,
            preprocess=args.preprocess or source.config.eval.preprocess,
            save_inputs=args.save_inputs,
        )
    except (CheckpointError, ReconstructError, SourceError, DataError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    print(f"{len(written)} reconstruction(s) at {resolution}x{resolution} in {args.out}")
    return 0


def _source(args: argparse.Namespace, device: Any) -> tuple[Any, list[str]]:
    """(the model's ``Source``, the input paths): a study file's variant (``SPEC VARIANT``) is read
    here, every other source by ``study.evaluation.sources``."""
    from study.evaluation import sources

    root, inputs = results_root(args), list(args.inputs)
    path = Path(args.source).expanduser()
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        return sources.resolve_source(args.source, root, lambda: _checkpoint_config(args), device), inputs
    if len(inputs) < 2:
        raise UsageError(f"reconstruct {args.source}: give a variant of the study, then the inputs")
    name, inputs = inputs[0], inputs[1:]
    _, variants = spec_and_variants(argparse.Namespace(**{**vars(args), "spec": args.source}))
    found = [v for v in variants if name in (v.name, v.run_id, *v.aliases)]
    if not found:
        raise UsageError(f"{args.source}: no variant {name!r}; variants: " + ", ".join(v.name for v in variants))
    folder, cfg = store.run_dir(root, found[0].run_id), found[0].config
    return sources.Source(sources.from_run(folder, cfg, device), cfg, folder), inputs


def _checkpoint_config(args: argparse.Namespace) -> cfgmod.ExperimentConfig:
    """A checkpoint's model: ``--preset`` with the ``--set`` overrides."""
    sets = parse_sets(Path("--set"), args.set or [])
    return cfgmod.validate(
        cfgmod.apply_overrides(cfgmod.ExperimentConfig(), resolve({"preset": args.preset}) | resolve(sets))
    )


COMMANDS = (
    Command(
        "evaluate",
        "evaluate the completed runs under an eval protocol (no retraining)",
        evaluate,
        evaluate_options,
        True,
    ),
    Command("reconstruct", "reconstructions of image files as PNGs", reconstruct, reconstruct_options),
)
