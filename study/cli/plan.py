"""``plan SPEC``: the expanded variants, their ids, axes, dependencies and cost; launches nothing
(writes only the cost cache where the results folder exists)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from study import store
from study.cli import plan_view
from study.cli.common import Command, UsageError, results_root, spec_and_variants, table
from study.cli.launching import DEFAULT_EXECUTOR
from study.kinds.registry import works
from study.measure import cost, counts
from study.studyfile.grid import Variant
from study.studyfile.parse import parse_sets


def plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--device-class",
        help=f"the GPU to estimate for, e.g. H100 or 'NVIDIA H100 80GB HBM3' (default: local, else {cost.DEFAULT_DEVICE})",
    )
    p.add_argument("--step-times", help="step-time table (default $LITEVAE_STEP_TIMES, benchmarks/step_times.json)")
    p.add_argument("--keys", action="store_true", help="every config key: default, type, allowed values, source")
    p.add_argument("--config", metavar="VARIANT", help="one variant's resolved config (name, run id or index), as YAML")
    for action in p._actions:  # `plan --keys` needs no study file
        if action.dest == "spec":
            action.nargs, action.default = "?", None


def plan(args: argparse.Namespace) -> int:
    if args.keys:
        for key, default, kind, allowed, source in plan_view.keys_rows():
            print(f"{key} = {default}  ({allowed or kind})" + (f"\n    {source}" if source else ""))
        return 0
    if args.spec is None:
        raise UsageError("plan: give a study file (e.g. ablations/smoke.yaml), or --keys")
    spec, variants = spec_and_variants(args)
    if args.config is not None:
        chosen = plan_view.find_variant(variants, args.config)
        if chosen is None:
            names = ", ".join(dict.fromkeys(v.name for v in variants))
            raise UsageError(f"{spec.path}: --config {args.config!r}: no such variant; allowed: {names}")
        print(plan_view.config_yaml(chosen), end="")
        return 0
    needs = needs_of(args, variants)
    planned = plan_cost(args, variants)  # issue 14: params, GMACs, GPU-hours (study/measure/cost.py)
    shared = plan_view.shared_with(spec, args.profile, results_root(args))
    if args.json:
        document = {
            "study": spec.study,
            "spec": str(spec.path),
            "profile": args.profile,
            "count": len(variants),
            "cost": planned.total_json(),
        }
        rows = (
            _variant_json(v, needs.get(v.run_id), c, shared.get(v.run_id, []))
            for v, c in zip(variants, planned.variants)
        )
        _print_json(document, rows)
        return 0
    print(f"study {spec.study}: {len(variants)} run(s)" + (f", profile {args.profile}" if args.profile else ""))
    if spec.description:
        print(f"  {spec.description}")
    base = plan_view.base_config(spec, args.profile, parse_sets(spec.path, args.set or []))
    print("\n".join(plan_view.header(spec, base, DEFAULT_EXECUTOR)))
    print(table(["name", "changes from the base", "seeds", "ids"] + (["needs"] if needs else []) + list(cost.COLUMNS)
                + (["shared with"] if shared else []), _rows(variants, planned, base, needs, shared)))  # fmt: skip
    print("\n".join(cost.footer(planned)))
    return 0


def _rows(variants: list[Variant], planned: Any, base: Any, needs: dict, shared: dict) -> list[list[str]]:
    """One row per variant name: its seeds on one line, GPU-hours of all its runs."""
    groups: dict[str, list[tuple[Variant, Any]]] = {}
    for v, c in zip(variants, planned.variants):
        groups.setdefault(v.name, []).append((v, c))
    rows = []
    for name, runs in groups.items():
        v, c = runs[0]
        hours = [r[1].estimate.gpu_hours for r in runs]
        total = replace(c.estimate, gpu_hours=None if None in hours else sum(h or 0.0 for h in hours))
        others = sorted({s for r in runs for s in shared.get(r[0].run_id, [])})
        rows.append(
            [name, plan_view.changes_text(v, base), ",".join(str(r[0].seed) for r in runs),
             ",".join(r[0].run_id for r in runs)]
            + ([needs_text(needs.get(v.run_id))] if needs else [])
            + cost.cells(replace(c, estimate=total))
            + ([", ".join(others) or "-"] if shared else [])
        )  # fmt: skip
    return rows


def _print_json(document: dict[str, Any], variants: Any) -> None:
    """One JSON document: its fields indented, each variant on one line (fast for 100 000 runs)."""
    head = json.dumps(document, indent=1)
    out = sys.stdout
    out.write(head[:-2] + ',\n "variants": [')
    for i, v in enumerate(variants):
        out.write(("\n  " if i == 0 else ",\n  ") + json.dumps(v))
    out.write("\n ]\n}\n")


def _variant_json(v: Variant, need: dict[str, Any] | None, c: Any, shared: list[str]) -> dict[str, Any]:
    return {
        "index": v.index,
        "id": v.run_id,
        "name": v.name,
        "seed": v.seed,
        "source": v.source,
        "aliases": list(v.aliases),
        "axes": {k: list(x) if isinstance(x, tuple) else x for k, x in v.axes.items()},
        **data_sets(v.config),
        "task": v.config.task,  # run kinds: the kind of run, as the config names it
        "needs": need,
        "cost": c.to_json(),
        "shared_with": shared,
    }


def plan_cost(args: argparse.Namespace, variants: list[Variant]) -> Any:
    """Each variant's parameters, GMACs and GPU-hour estimate (study/measure/cost.py); the counts
    are cached in <results>/.cache/cost.json where the results folder exists (plan creates none)."""
    root = results_root(args)
    cache = counts.CostCache(root / ".cache" / "cost.json", store.write_json_atomic if root.is_dir() else None)
    device = args.device_class or cost.local_device() or cost.DEFAULT_DEVICE
    try:
        return cost.study_cost(
            works([v.config for v in variants], [v.run_id for v in variants]),
            device,
            cost.step_times_path(args.step_times),
            cache,
        )
    except cost.CostError as e:  # a malformed step-time table
        raise UsageError(str(e)) from None


# run kinds: which variants wait for another run, and for which (the lead routes this through the registry)
def needs_of(args: argparse.Namespace, variants: list[Variant]) -> dict[str, dict[str, Any]]:
    """Diffusion run id -> the autoencoder run it waits for: its id, name and state now."""
    root = results_root(args)
    names = {v.run_id: v.name for v in variants}
    waiting = [v for v in variants if v.config.task == "diffusion"]
    ids = [v.config.diffusion.autoencoder_id for v in waiting]
    states = store.run_states([store.run_dir(root, a) for a in ids])
    return {
        v.run_id: {"id": a, "name": names.get(a), "state": run.state.value, "reason": run.reason}
        for v, a, run in zip(waiting, ids, states)
    }


# run kinds: what the plan's needs column says of a diffusion run's autoencoder
def needs_text(need: dict[str, Any] | None) -> str:
    """What the plan's ``needs`` column says of a diffusion run's autoencoder."""
    if need is None:
        return "-"
    return f"autoencoder {need['name'] or need['id']} ({need['id']}, {need['state']})"


def data_sets(cfg: Any) -> dict[str, Any]:
    """What a variant trains and evaluates on, for ``plan --json``: names, paths, split lists."""
    d, e = cfg.data, cfg.eval
    return {
        "data": {"kind": d.kind, "name": d.name, "path": d.path, "list": d.list},
        "eval": {"path": e.path, "list": e.list, "name": e.name, "num_images": e.num_images},
    }


COMMANDS = (
    Command(
        "plan", "the expanded variants and their cost; writes only a cache of the counts", plan, plan_options, True
    ),
)
