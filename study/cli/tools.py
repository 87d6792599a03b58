"""``demo`` (the embedded default study, run here), ``complexity`` (Table 3: params, MACs,
throughput, memory) and ``weights fetch|check`` (metric weights staged for offline nodes)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from study.cli import staging
from study.cli.common import REPO, Command, cuda_available, results_root, spec_and_variants
from study.cli.launching import run, run_options
from study.config import MODEL_PRESETS
from study.kinds.registry import kind_of

DEFAULT_STUDY = REPO / "ablations" / "smoke.yaml"


def demo_options(p: argparse.ArgumentParser) -> None:
    run_options(p)
    # its four runs as local processes, one per core (one torch thread each): on two cores, two
    # at a time, which trains them in about half the time of one after the other in process
    p.set_defaults(spec=str(DEFAULT_STUDY), profile=None, set=None, executor="local", max_parallel=os.cpu_count() or 1)


def demo(args: argparse.Namespace) -> int:
    """The embedded default: run ablations/smoke.yaml on this machine (``run``'s options apply;
    the executor defaults to local, as many runs at once as there are cores)."""
    print(f"The embedded default study: {DEFAULT_STUDY.relative_to(REPO)} (sample photos, CPU)")
    if not args.dry_run:  # the metric weights first, so that every metric is a number (or one notice)
        spec, variants = spec_and_variants(args)
        args.index_extra = staging.stage(variants)
        _linear_reference(args, spec.study, variants)
    return run(args)


def _linear_reference(args: argparse.Namespace, study: str, variants: list[Any]) -> None:
    """The report's reference row: PCA of the runs' latent size (study/evaluation/linear_reference.py),
    where every run is an autoencoder of one latent size on the same data."""
    from study.evaluation import linear_reference

    configs = [v.config for v in variants]
    shapes = {(kind_of(c).name, c.data, c.model.latent_channels, c.eval.num_images) for c in configs}
    if len(shapes) != 1 or kind_of(configs[0]).name != "autoencoder":
        return
    print("a linear reference of the latent's size (PCA on training crops) ...", flush=True)
    ref = linear_reference.ensure(results_root(args), study, configs[0])
    print(f"  PCA, {ref['components']} components: {ref['psnr']:.2f} dB PSNR on {ref['eval_images']} held-out images")


def complexity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", default=list(MODEL_PRESETS), choices=list(MODEL_PRESETS))
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--json", action="store_true")


def complexity(args: argparse.Namespace) -> int:
    from study.measure import complexity as measuring

    device = args.device or ("cuda" if cuda_available() else "cpu")
    rows = measuring.complexity_rows(
        args.models, resolution=args.resolution, batch=args.batch, device=device, precision=args.precision
    )
    print(json.dumps(rows, indent=1) if args.json else measuring.format_table(rows))
    return 0


def weights_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "check"])
    p.add_argument("--dir", help="weights directory (default $LITEVAE_WEIGHTS_DIR, else torch hub's cache)")
    p.add_argument(
        "--only", nargs="+", choices=["inception", "alexnet", "vgg16", "vgg19"], help="fetch: these files only"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="fetch: network timeout in seconds")
    p.add_argument(
        "--from",
        dest="source",
        metavar="FOLDER",
        help="fetch: copy (and verify) files downloaded elsewhere instead of downloading",
    )


def weights(args: argparse.Namespace) -> int:
    """`weights fetch` downloads and verifies; `weights check` lists present/missing/corrupt.
    Exit 1 when a file failed to download, or (check) when one is missing or corrupt."""
    from study.measure import weights as staging

    if args.action == "fetch":
        if args.source:
            results = staging.copy_into(args.source, args.dir)
        else:
            print(f"fetching into {staging.weights_dir(args.dir)}")
            results = staging.fetch(args.dir, args.only, timeout=args.timeout)
        print(staging.format_fetch(results))
        return 1 if any(r.state == "failed" for r in results) else 0
    rows = staging.check(args.dir)
    print(staging.format_check(rows, args.dir))
    return 0 if all(r.state == "present" for r in rows) else 1


DEMO = (Command("demo", "run the embedded default study (ablations/smoke.yaml) here, in process", demo, demo_options),)
COMMANDS = (
    Command("complexity", "Table 3: params, MACs, throughput, memory", complexity, complexity_options),
    Command("weights", "stage metric weights for offline compute nodes", weights, weights_options),
)
