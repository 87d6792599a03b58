#!/usr/bin/env python
"""The LiteVAE study harness's command line. Thin: parses, calls study/, prints.

    python run_study.py                       the embedded default (ablations/smoke.yaml)
    python run_study.py plan SPEC [--json] [--device-class NAME]  the variants, their cost; writes only a cache
    python run_study.py status SPEC [--json]  a table of every variant's run
    python run_study.py collect SPEC          -> results/<study>/results.csv
    python run_study.py report SPEC           -> reports/<study>/report.md, report.html, tables/, figures/
    python run_study.py compare SPEC SPEC... [--metric rfid] [--name N]  -> reports/compare-<N>/
    python run_study.py complexity [...]      Table 3: params, MACs, throughput, memory
    python run_study.py evaluate SPEC [--protocol KEY=VALUE ...]  re-evaluate runs, no retraining
    python run_study.py weights fetch|check [--dir D]  stage metric weights for offline nodes
    python run_study.py reconstruct SOURCE INPUT... --out DIR  PNG reconstructions (run, SPEC VARIANT, checkpoint)

Exit codes: 0 success, 2 bad input (nothing launched, nothing written), 1 a failure at run time.
``--json`` prints one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DEFAULT_STUDY = ROOT / "ablations" / "smoke.yaml"


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


def _spec_and_variants(args: argparse.Namespace):
    from study.studyfile.grid import expand
    from study.studyfile.parse import load_study, parse_sets

    spec = load_study(args.spec)
    wandb = [f"train.wandb_project={args.wandb}"] if getattr(args, "wandb", None) else []  # issue 14: live curves
    extra = parse_sets(spec.path, (getattr(args, "set", None) or []) + wandb)
    return spec, expand(spec, getattr(args, "profile", None), extra)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    from study.measure import cost
    from study.studyfile.grid import format_value

    spec, variants = _spec_and_variants(args)
    needs = _needs(args, variants)
    planned = _plan_cost(args, variants)  # issue 14: params, GMACs, GPU-hours (study/measure/cost.py)
    if args.json:
        print(
            json.dumps(
                {
                    "study": spec.study,
                    "spec": str(spec.path),
                    "profile": args.profile,
                    "count": len(variants),
                    "cost": planned.total_json(),
                    "variants": [
                        {
                            "index": v.index,
                            "id": v.run_id,
                            "name": v.name,
                            "seed": v.seed,
                            "source": v.source,
                            "aliases": list(v.aliases),
                            "axes": {k: _jsonable(x) for k, x in v.axes.items()},
                            **_data_sets(v.config),
                            "task": v.config.task,
                            "needs": needs.get(v.run_id),
                            "cost": c.to_json(),
                        }
                        for v, c in zip(variants, planned.variants)
                    ],
                },
                indent=1,
            )
        )
        return 0
    print(f"study {spec.study}: {len(variants)} run(s)" + (f", profile {args.profile}" if args.profile else ""))
    if spec.description:
        print(f"  {spec.description}")
    rows = [
        [
            str(v.index),
            v.run_id,
            v.name,
            str(v.seed),
            " ".join(f"{k}={format_value(x)}" for k, x in v.axes.items()) or v.source,
        ]
        + ([_needs_text(needs.get(v.run_id))] if needs else [])
        + cost.cells(c)
        for v, c in zip(variants, planned.variants)
    ]
    print(_table(["#", "id", "name", "seed", "axes"] + (["needs"] if needs else []) + list(cost.COLUMNS), rows))
    print("\n".join(cost.footer(planned)))
    return 0


def _plan_cost(args: argparse.Namespace, variants: list[Any]) -> Any:
    """Each variant's parameters, GMACs and GPU-hour estimate (study/measure/cost.py); the counts
    are cached in <results>/.cache/cost.json where the results folder exists (plan creates none)."""
    from study import store
    from study.measure import cost

    root = store.results_root(args.results)
    cache = cost.CostCache(root / ".cache" / "cost.json", store.write_json_atomic if root.is_dir() else None)
    device = args.device_class or cost.local_device()
    try:
        return cost.study_cost([v.config for v in variants], device, cost.step_times_path(args.step_times), cache)
    except cost.CostError as e:  # a malformed step-time table
        raise UsageError(str(e)) from None


def _needs(args: argparse.Namespace, variants: list[Any]) -> dict[str, dict[str, Any]]:
    """Diffusion run id -> the autoencoder run it waits for: its id, name and state now."""
    from study import store

    root = store.results_root(getattr(args, "results", None))
    names = {v.run_id: v.name for v in variants}
    waiting = [v for v in variants if v.config.task == "diffusion"]
    ids = [v.config.diffusion.autoencoder_id for v in waiting]
    states = store.run_states([store.run_dir(root, a) for a in ids])
    return {
        v.run_id: {"id": a, "name": names.get(a), "state": run.state.value, "reason": run.reason}
        for v, a, run in zip(waiting, ids, states)
    }


def _needs_text(need: dict[str, Any] | None) -> str:
    """What the plan's ``needs`` column says of a diffusion run's autoencoder."""
    if need is None:
        return "-"
    return f"autoencoder {need['name'] or need['id']} ({need['id']}, {need['state']})"


def _data_sets(cfg: Any) -> dict[str, Any]:
    """What a variant trains and evaluates on, for ``plan --json``: names, paths, split lists."""
    d, e = cfg.data, cfg.eval
    return {
        "data": {"kind": d.kind, "name": d.name, "path": d.path, "list": d.list},
        "eval": {"path": e.path, "list": e.list, "name": e.name, "num_images": e.num_images},
    }


def cmd_status(args: argparse.Namespace) -> int:
    from study import store

    spec, variants = _spec_and_variants(args)
    root = store.results_root(args.results)
    if args.log:
        return _print_log(root, variants, args.log, args.lines)
    rows = []
    for v, run in zip(variants, store.run_states([store.run_dir(root, v.run_id) for v in variants])):
        status = run.record
        rows.append(
            {
                "index": v.index,
                "name": v.name,
                "id": v.run_id,
                "seed": v.seed,
                "state": run.state.value,
                "job_id": run.job_id,
                "attempts": run.attempts,
                "step": run.step,
                "kind": v.config.task,
                "total_steps": v.config.diffusion.steps if v.config.task == "diffusion" else v.config.train.steps,
                "loss": status.get("loss"),
                "psnr": status.get("psnr"),
                "reason": run.reason,
                "heartbeat": status.get("heartbeat"),
                "log": status.get("log"),
            }
        )
    if args.json:
        print(json.dumps({"study": spec.study, "runs": rows}, indent=1))
        return 0
    print(
        _table(
            ["#", "name", "kind", "id", "state", "job", "att", "step", "loss", "psnr", "reason"],
            [
                [
                    str(r["index"]),
                    r["name"],
                    r["kind"],
                    r["id"],
                    r["state"],
                    str(r["job_id"] or "-"),
                    str(r["attempts"]),
                    f"{r['step'] or 0}/{r['total_steps']}",
                    _num(r["loss"]),
                    _num(r["psnr"]),
                    (r["reason"] or "")[:60],
                ]
                for r in rows
            ],
        )
    )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(", ".join(f"{n} {state}" for state, n in counts.items()))
    return 0


def _print_log(root: Path, variants, which: str, lines: int) -> int:
    """The tail of a variant's job log (by index, name or run id)."""
    from study import store

    match = [v for v in variants if which in (str(v.index), v.name, v.run_id)]
    if not match:
        raise UsageError(f"--log: got {which!r}; allowed: a variant's index, name or id")
    status = store.read_status(store.run_dir(root, match[0].run_id))
    path = status.get("log")
    if not path or not Path(path).exists():
        print(f"no log recorded for {match[0].name} ({match[0].run_id})", file=sys.stderr)
        return 1
    text = Path(path).read_text(errors="replace").splitlines()
    print(f"==> {path} <==")
    print("\n".join(text[-lines:]))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from study import store

    spec, variants = _spec_and_variants(args)
    root = store.results_root(args.results)
    _write_index(args, spec, variants, root)
    frame = store.collect(root, spec.study, store.read_index(root, spec.study)["variants"])
    path = store.write_results(root, spec.study, frame)
    print(f"{len(frame)} row(s) -> {path}")
    return 0


def _write_index(args: argparse.Namespace, spec, variants, root: Path) -> None:
    """(Re)write results/<study>/index.json from the study file's expansion: what the report reads."""
    from study import store

    store.write_index(root, spec.study, variants, **_study_record(args, spec, variants))


def _study_record(args: argparse.Namespace, spec, variants) -> dict[str, Any]:
    from study.studyfile.record import study_record

    return study_record(spec, variants, getattr(args, "profile", None), getattr(args, "set", None) or [])


def _report(args: argparse.Namespace, study: str, root: Path, **meta: Any) -> tuple[Path, str]:
    """Write reports/<study>/ and the reports index; the report's path and its table (markdown)."""
    from study.report import report
    from study.report.index_page import write_index

    out = Path(args.reports) / study
    path = report.report(root, study, out, meta=meta)
    write_index(out.parent)
    return path, (out / "tables" / "main.md").read_text().rstrip("\n")


def _launch_options(args: argparse.Namespace, spec):
    from study.launch.launcher import LaunchOptions, merge_resources

    sbatch = tuple(spec.resources.sbatch) + tuple(args.sbatch or ())
    resources = merge_resources(
        spec.resources,
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        gpus=args.gpus,
        cpus_per_gpu=args.cpus,
        mem_gb=args.mem_gb,
        timeout_min=args.time,
        constraint=args.constraint,
        sbatch=sbatch,
        array_parallelism=args.array_parallelism,
        max_requeue=args.max_requeue,
    )
    return LaunchOptions(
        executor=args.executor,
        dry_run=args.dry_run,
        retry_failed=args.retry_failed,
        max_parallel=args.max_parallel,
        resources=resources,
    )


def cmd_launch(args: argparse.Namespace) -> int:
    from study import store
    from study.launch import launcher as launch

    spec, variants = _spec_and_variants(args)
    opts = _launch_options(args, spec)
    root = store.results_root(args.results)
    report = launch.launch(spec, variants, root, opts, record=_study_record(args, spec, variants))
    for d in report.decisions:
        verb = ("would submit" if args.dry_run else "submit") if d.action == "submit" else "skip"
        job = report.job_ids.get(d.variant.run_id)
        print(
            f"[{d.variant.index}] {d.variant.name} ({d.variant.run_id}): {verb}, {d.why}"
            + (f", job {job}" if job else "")
        )
    n = len(report.submitted)
    print(
        f"{'dry run: ' if args.dry_run else ''}{n} of {len(variants)} run(s) "
        f"{'to submit' if args.dry_run else 'submitted'} with the {opts.executor} executor"
    )
    return 1 if report.failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Collect the study's runs and write reports/<study>/ (report.md, report.html, tables/,
    figures/), then the reports index; prints the report's path and its main table."""
    from study import store

    spec, variants = _spec_and_variants(args)
    root = store.results_root(args.results)
    _write_index(args, spec, variants, root)
    path, table = _report(args, spec.study, root)
    print(f"report: {path}")
    print(table)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """One table and one quality-against-cost plot over the variants of several studies, a run
    shared by two counted once (study/report/compare.py) -> reports/compare-<name>/."""
    from study import store
    from study.report import compare

    try:
        name = compare.check_name(args.name) if args.name else None
        root, studies = store.results_root(args.results), []
        for path in args.specs:
            spec, variants = _spec_and_variants(argparse.Namespace(**{**vars(args), "spec": path}))
            _write_index(args, spec, variants, root)  # as `report` does: the records the comparison reads
            studies.append(spec.study)
        out = Path(args.reports) / f"compare-{name or '-'.join(dict.fromkeys(studies))}"
        path = compare.compare(root, studies, out, args.metric)
    except compare.CompareError as e:
        raise UsageError(str(e)) from None
    print(f"comparison: {path}")
    print(compare.markdown_table(out))
    return 0


def add_compare_command(sub: Any) -> None:
    from study.config import METRICS

    sp = sub.add_parser("compare", help="one table and a quality-vs-cost plot over several studies")
    sp.add_argument("specs", nargs="+", metavar="SPEC", help="study files, e.g. ablations/table2a.yaml")
    sp.add_argument("--metric", default="rfid", choices=list(METRICS), help="the plot's quality axis (default rfid)")
    sp.add_argument("--name", help="names reports/compare-<name>/ (default: the studies' names joined by '-')")
    sp.add_argument("--profile", help="a profile of every study file, e.g. smoke")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config override for every variant")
    sp.add_argument("--results", default=argparse.SUPPRESS, help="results folder")
    sp.add_argument("--reports", default="reports", help="reports folder (default ./reports)")
    sp.set_defaults(func=cmd_compare)


def cmd_complexity(args: argparse.Namespace) -> int:
    from study.measure import complexity

    device = args.device or ("cuda" if _cuda() else "cpu")
    rows = complexity.complexity_rows(
        args.models, resolution=args.resolution, batch=args.batch, device=device, precision=args.precision
    )
    print(json.dumps(rows, indent=1) if args.json else complexity.format_table(rows))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Launch, wait with a progress display, collect, report; exit 1 if a variant failed."""
    from study import store
    from study.launch import launcher as launch

    spec, variants = _spec_and_variants(args)
    opts = _launch_options(args, spec)
    root = store.results_root(args.results)
    started = time.time()
    result = launch.launch(spec, variants, root, opts, record=_study_record(args, spec, variants))
    print(
        f"{len(result.submitted)} of {len(variants)} run(s) submitted with the {opts.executor} executor; "
        f"{len(variants) - len(result.submitted)} skipped"
    )
    if opts.dry_run:
        return 0
    states = launch.wait(root, variants, poll_s=args.poll, progress=True)
    _write_index(args, spec, variants, root)  # also when every variant was skipped
    store.write_results(
        root, spec.study, store.collect(root, spec.study, store.read_index(root, spec.study)["variants"])
    )
    path, table = _report(args, spec.study, root, **{"wall time": f"{time.time() - started:.0f} s"})
    print(table)
    print(f"\nreport: {path}")
    failed = [v for v in variants if states[v.run_id] != store.State.COMPLETED]
    for v, run in zip(failed, store.run_states([store.run_dir(root, v.run_id) for v in failed])):
        print(f"  {v.name} ({v.run_id}): {run.state}: {run.reason or ''}", file=sys.stderr)
    return 1 if failed else 0


def cmd_default(args: argparse.Namespace) -> int:
    """The embedded default: run ablations/smoke.yaml on this machine, in process."""
    print(f"The embedded default study: {DEFAULT_STUDY.relative_to(ROOT)} (sample photos, CPU)")
    args = parser().parse_args(
        ["run", str(DEFAULT_STUDY), "--executor", "debug"] + (["--results", args.results] if args.results else [])
    )
    return cmd_run(args)


# ---- evaluation and weights (study/evaluation/evaluate.py, study/measure/weights.py) --------------
def cmd_weights(args: argparse.Namespace) -> int:
    """`weights fetch` downloads and verifies; `weights check` lists present/missing/corrupt.
    Exit 1 when a file failed to download, or (check) when one is missing or corrupt."""
    from study.measure import weights

    if args.action == "fetch":
        if args.source:
            results = weights.copy_into(args.source, args.dir)
        else:
            print(f"fetching into {weights.weights_dir(args.dir)}")
            results = weights.fetch(args.dir, args.only, timeout=args.timeout)
        print(weights.format_fetch(results))
        return 1 if any(r.state == "failed" for r in results) else 0
    rows = weights.check(args.dir)
    print(weights.format_check(rows, args.dir))
    return 0 if all(r.state == "present" for r in rows) else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the study's completed runs under their eval protocol (with --protocol overrides);
    a record of the same protocol id is reused unless --force. Exit 1 when a completed run could
    not be evaluated (no checkpoint)."""
    from study import store
    from study.data.datasets import DataError
    from study.evaluation import evaluate

    overrides = evaluate.parse_protocol_overrides(args.protocol or [])
    spec, variants = _spec_and_variants(args)
    root = store.results_root(args.results)
    try:
        rows = evaluate.evaluate_study(
            variants,
            root,
            overrides=overrides,
            device=args.device,
            force=args.force,
            progress=not args.json,
            echo=None if args.json else print,
        )
    except DataError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps({"study": spec.study, "runs": rows}, indent=1))
    else:
        counts = {s: sum(r["state"] == s for r in rows) for s in ("evaluated", "reused", "skipped", "failed")}
        print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(rows)} run(s)")
    return 1 if any(r["state"] == "failed" for r in rows) else 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Reconstructions of image files as PNGs (study/evaluation/reconstruct.py) by a run, a study's
    variant or a checkpoint; prints the folder written. Bad input of any kind: exit 2."""
    import torch

    from study.autoencoder.pretrained import CheckpointError
    from study.data.datasets import DataError
    from study.evaluation.reconstruct import ReconstructError, reconstruct_files

    device = torch.device(args.device or ("cuda" if _cuda() else "cpu"))
    try:
        ae, resolution, inputs = _reconstruction_model(args, device)
        written = reconstruct_files(ae, inputs, args.out, resolution, device)
    except (CheckpointError, ReconstructError, DataError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    print(f"{len(written)} reconstruction(s) at {resolution}x{resolution} in {args.out}")
    return 0


def _reconstruction_model(args: argparse.Namespace, device: Any) -> tuple[Any, int, list[str]]:
    """(autoencoder, resolution, inputs) for SOURCE: ``SPEC VARIANT``, a run folder or id, or a
    checkpoint path (the model from --preset and --set)."""
    from study import config as cfgmod
    from study import store
    from study.autoencoder import pretrained, trained
    from study.models.autoencoder import build_autoencoder
    from study.studyfile.parse import parse_sets, resolve

    source, inputs, root = args.source, list(args.inputs), store.results_root(args.results)
    path = Path(source).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        if len(inputs) < 2:
            raise UsageError(f"reconstruct {source}: give a variant of the study, then the inputs")
        name, inputs = inputs[0], inputs[1:]
        args.spec = source
        _, variants = _spec_and_variants(args)
        found = [v for v in variants if name in (v.name, v.run_id, *v.aliases)]
        if not found:
            raise UsageError(f"{source}: no variant {name!r}; variants: " + ", ".join(v.name for v in variants))
        folder, cfg = store.run_dir(root, found[0].run_id), found[0].config
    elif path.is_dir() and (path / "config.yaml").is_file():  # a run folder
        folder, cfg = path, store.read_config(path)
    elif path.exists():  # a checkpoint: the model is described by --preset and --set
        sets = parse_sets(Path("--set"), args.set or [])
        cfg = cfgmod.validate(
            cfgmod.apply_overrides(cfgmod.ExperimentConfig(), resolve({"preset": args.preset}) | resolve(sets))
        )
        ae = build_autoencoder(cfgmod.autoencoder_args(cfg.model))
        pretrained.apply_init(ae, path)
        return ae.to(device).eval(), args.resolution or 256, inputs
    elif (store.run_dir(root, source) / "config.yaml").is_file():
        folder = store.run_dir(root, source)
        cfg = store.read_config(folder)
    else:
        raise UsageError(f"{source}: neither a study file, a checkpoint nor a run under {root / 'runs'}")
    return trained.load_trained(folder, cfg, device), args.resolution or cfg.data.resolution, inputs


def add_eval_commands(sub: Any, with_spec: Any) -> None:
    from study.config import MODEL_PRESETS

    sp = sub.add_parser("weights", help="stage metric weights for offline compute nodes")
    sp.add_argument("action", choices=["fetch", "check"])
    sp.add_argument("--dir", help="weights directory (default $LITEVAE_WEIGHTS_DIR, else torch hub's cache)")
    sp.add_argument(
        "--only", nargs="+", choices=["inception", "alexnet", "vgg16", "vgg19"], help="fetch: these files only"
    )
    sp.add_argument("--timeout", type=float, default=60.0, help="fetch: network timeout in seconds")
    sp.add_argument(
        "--from",
        dest="source",
        metavar="FOLDER",
        help="fetch: copy (and verify) files downloaded elsewhere instead of downloading",
    )
    sp.set_defaults(func=cmd_weights)
    sp = with_spec("evaluate", "evaluate the completed runs under an eval protocol (no retraining)")
    sp.add_argument(
        "--protocol",
        nargs="+",
        metavar="KEY=VALUE",
        help="eval.* overrides, e.g. num_images=1000 posterior=sample lpips_net=vgg",
    )
    sp.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    sp.add_argument("--force", action="store_true", help="recompute even if a record of the protocol exists")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_evaluate)
    sp = sub.add_parser("reconstruct", help="reconstructions of image files as PNGs")
    sp.add_argument("source", help="a run id or folder, a study file (then a variant name), or a checkpoint")
    sp.add_argument("inputs", nargs="+", help="image files or folders (after VARIANT for a study file)")
    sp.add_argument("--out", required=True, help="folder for the PNGs")
    sp.add_argument("--resolution", type=int, help="default: the run's data.resolution, else 256")
    sp.add_argument("--profile", help="a study file's profile")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config override (repeatable)")
    sp.add_argument(
        "--preset",
        default="SD-VAE",
        choices=list(MODEL_PRESETS),
        help="a checkpoint's model (default SD-VAE, 4 latent channels)",
    )
    sp.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    sp.add_argument("--results", default=argparse.SUPPRESS, help="results folder")
    sp.set_defaults(func=cmd_reconstruct)


# ---- end of evaluation and weights ---------------------------------------------------------


# --------------------------------------------------------------------------------------------
def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_study.py", description="LiteVAE study harness")
    p.add_argument("--results", help="results folder (default $LITEVAE_RESULTS or ./results)")
    sub = p.add_subparsers(dest="command")

    def with_spec(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("spec", help="a study file, e.g. ablations/smoke.yaml")
        sp.add_argument("--profile", help="a profile of the study file, e.g. smoke")
        sp.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a config key for every variant, after the profile (repeatable)",
        )
        sp.add_argument("--results", default=argparse.SUPPRESS, help="results folder")
        return sp

    sp = with_spec("plan", "the expanded variants and their cost; writes only a cache of the counts")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--device-class", help="the GPU to estimate for, e.g. 'NVIDIA H100 80GB HBM3' (default: local)")
    sp.add_argument("--step-times", help="step-time table (default $LITEVAE_STEP_TIMES, benchmarks/step_times.json)")
    sp.set_defaults(func=cmd_plan)
    sp = with_spec("status", "a table of every variant's run")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--log", metavar="VARIANT", help="print the tail of a variant's job log (index, name or id)")
    sp.add_argument("--lines", type=int, default=40)
    sp.set_defaults(func=cmd_status)
    sp = with_spec("collect", "gather the runs into results/<study>/results.csv")
    sp.set_defaults(func=cmd_collect)
    sp = with_spec("report", "write reports/<study>/: tables, plots, the paper's numbers beside ours")
    sp.add_argument("--reports", default="reports", help="reports folder (default ./reports)")
    sp.set_defaults(func=cmd_report)
    add_compare_command(sub)  # issue 14

    sp = with_spec("run", "launch, wait, collect and report")
    add_launch_options(sp)
    sp.add_argument("--poll", type=float, default=5.0, help="seconds between status polls")
    sp.add_argument("--reports", default="reports", help="reports folder (default ./reports)")
    sp.set_defaults(func=cmd_run)
    sp = with_spec("launch", "submit the study's runs (skips completed ones)")
    add_launch_options(sp)
    sp.set_defaults(func=cmd_launch)

    from study.config import MODEL_PRESETS

    sp = sub.add_parser("complexity", help="Table 3: params, MACs, throughput, memory")
    sp.add_argument("--models", nargs="+", default=list(MODEL_PRESETS), choices=list(MODEL_PRESETS))
    sp.add_argument("--resolution", type=int, default=256)
    sp.add_argument("--batch", type=int, default=32)
    sp.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sp.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_complexity)
    add_eval_commands(sub, with_spec)  # issue 5
    return p


def add_launch_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--executor", choices=["slurm", "local", "debug"], default="local")
    sp.add_argument("--dry-run", action="store_true", help="show what would be submitted; submit nothing")
    sp.add_argument("--retry-failed", action="store_true", help="resubmit failed and cancelled runs")
    sp.add_argument("--max-parallel", type=int, default=1, help="local executor: jobs at once")
    sp.add_argument("--wandb", metavar="PROJECT", help="live curves to this W&B project too (when wandb is installed)")
    g = sp.add_argument_group("resources (override the study file's `resources`)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--gpus", type=int, help="GPUs per variant (DDP across them)")
    g.add_argument("--cpus", type=int, help="CPUs per GPU (per task)")
    g.add_argument("--mem-gb", type=int)
    g.add_argument("--time", type=int, help="time limit in minutes")
    g.add_argument("--constraint")
    g.add_argument("--array-parallelism", type=int)
    g.add_argument("--max-requeue", type=int, help="requeues on preemption or time-out")
    g.add_argument("--sbatch", action="append", metavar="--KEY=VALUE", help="an extra sbatch option")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    from study.config import ConfigError
    from study.launch.launcher import LaunchError, LaunchLocked
    from study.studyfile.parse import StudyFileError

    args = parser().parse_args(argv)
    func = getattr(args, "func", cmd_default)
    try:
        return func(args)
    except LaunchLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (StudyFileError, ConfigError, UsageError, LaunchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
