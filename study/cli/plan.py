"""``plan SPEC``: the expanded variants, their ids, axes, dependencies and cost; launches nothing
(writes only the cost cache where the results folder exists)."""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
from dataclasses import replace
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from study import store
from study.cli import plan_view
from study.cli.common import Command, UsageError, results_root, spec_and_variants, table
from study.cli.launching import preflight_lines
from study.kinds.registry import index_fields, kind_of, needs, reads, works
from study.launch import launcher, preflight
from study.measure import cost, counts
from study.studyfile import sources
from study.studyfile.document import StudyFile
from study.studyfile.grid import Variant, expand
from study.studyfile.parse import StudyFileError, load_study, parse_sets


def plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--device-class",
        help=f"the GPU to estimate for, e.g. H100 or 'NVIDIA H100 80GB HBM3' (default: local, else {cost.DEFAULT_DEVICE})",
    )
    p.add_argument("--step-times", help="step-time table (default $LITEVAE_STEP_TIMES, benchmarks/step_times.json)")
    p.add_argument("--keys", action="store_true", help="every config key: default, type, allowed values, source")
    p.add_argument("--config", metavar="VARIANT", help="one variant's resolved config (name, run id or index), as YAML")
    p.add_argument(
        "--check",
        action="store_true",
        help="also run the checks every launch makes (data, weights, checkpoints, SLURM); exit 2 on a problem",
    )
    p.add_argument(
        "--executor",
        choices=launcher.EXECUTORS,
        help="with --check: the executor to check for (default: the site file's launch.executor, else local)",
    )
    p.add_argument(
        "--explain",
        nargs="?",
        const="",
        metavar="VARIANT",
        help="each setting of a variant (default: the first) and of the launch, resolved, with where it came from",
    )
    for action in p._actions:  # `plan --keys` needs no study file
        if action.dest == "spec":
            action.nargs, action.default = "?", None


def plan(args: argparse.Namespace) -> int:
    """The cyclic garbage collector is paused meanwhile: a large grid's variants, works and costs
    are millions of objects that live to the end, which its passes would walk again and again.
    For a large grid, what is alive before it (the imported modules, torch's) is frozen
    (``gc.freeze``): no later pass walks it, the one at the process's exit included (half a
    second)."""
    enabled = gc.isenabled()
    gc.disable()
    counter = _counter(args)
    if counter is not None:
        gc.freeze()
    try:
        return _plan(args, counter)
    finally:
        if counter is not None:
            counter.close()
        if enabled:
            gc.enable()


COUNT_AHEAD = 1000  # a grid of this many rows or more is counted by a process started before it expands


def _counter(args: argparse.Namespace) -> counts.Counter | None:
    """A process that counts the networks while the grid expands (``counts.Counter``), for a
    plan with cost of a large grid; None otherwise (or where the study file does not load:
    expanding it will say why)."""
    if args.keys or args.spec is None or args.config is not None or args.explain is not None:
        return None
    try:
        spec = load_study(args.spec)
    except (StudyFileError, OSError):
        return None
    if math.prod(len(v) for v in spec.grid.values()) < COUNT_AHEAD:
        return None
    return counts.Counter(ahead=lambda: _cost_ahead(args, spec))


# The axes whose values may change what a plan counts: the networks (model, diffusion), their
# resolutions (data, the stages), whether a run trains (its kind), the discriminator.
COUNTED_AXES = ("model", "data", "diffusion", "preset", "task", "train.steps", "train.stages", "loss.discriminator",
                "loss.discriminator_channels")  # fmt: skip


def _cost_ahead(args: argparse.Namespace, spec: StudyFile) -> cost.StudyCost:
    """The cost of the study with every axis but ``COUNTED_AXES`` cut to its first value: the
    same networks in a few hundred variants. The counting process runs it before it is asked
    (a guess: what it misses is counted when asked); the cache file is read, not written."""
    grid = {k: v if k.partition(".")[0] in COUNTED_AXES or k in COUNTED_AXES else v[:1] for k, v in spec.grid.items()}
    reduced = replace(spec, grid=grid, seeds=spec.seeds[:1])
    variants = expand(reduced, args.profile, parse_sets(spec.path, args.set or []))
    cache = counts.CostCache(_cache_path(args))
    device = args.device_class or cost.DEFAULT_DEVICE  # not the local GPU's name: no CUDA in a forked process
    configs = [v.config for v in variants]
    return cost.study_cost(
        works(configs, [v.run_id for v in variants]), device, cost.step_times_path(args.step_times), cache
    )


def _plan(args: argparse.Namespace, counter: counts.Counter | None = None) -> int:
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
    if args.explain is not None:
        return explain(args, spec, variants)
    needs = needs_of(args, variants)
    planned = plan_cost(args, variants, counter)  # issue 14: params, GMACs, GPU-hours (study/measure/cost.py)
    shared = plan_view.shared_with(spec, args.profile, results_root(args))
    if args.json:
        document = {
            "study": spec.study,
            "spec": str(spec.path),
            "profile": args.profile,
            "count": len(variants),
            "cost": planned.total_json(),
        }
        lines = JsonLines()
        rows = (
            lines.variant(v, needs.get(v.run_id), c, shared.get(v.run_id, []))
            for v, c in zip(variants, planned.variants)
        )
        _print_json(document, rows)
        return 0
    print(f"study {spec.study}: {len(variants)} run(s)" + (f", profile {args.profile}" if args.profile else ""))
    if spec.description:
        print(f"  {spec.description}")
    base = plan_view.base_config(spec, args.profile, parse_sets(spec.path, args.set or []))
    print("\n".join(plan_view.header(spec, base, sources.executor(args.executor)[0])))
    print(table(["name", "changes from the base", "seeds", "ids"] + (["needs"] if needs else []) + list(cost.COLUMNS)
                + (["shared with"] if shared else []), _rows(variants, planned, base, needs, shared)))  # fmt: skip
    print("\n".join(cost.footer(planned)))
    if args.check:
        executor = sources.executor(args.executor)[0]
        found = preflight.check(spec.study, variants, executor, sources.launch_resources(spec)[0])
        print("\n".join(preflight_lines(found)))
        return 0 if found.ok else 2
    return 0


def explain(args: argparse.Namespace, spec: Any, variants: list[Variant]) -> int:
    """``plan --explain [VARIANT]``: each setting its run reads and each launch setting, with its source."""
    chosen = plan_view.find_variant(variants, args.explain) if args.explain else variants[0]
    if chosen is None:
        names = ", ".join(dict.fromkeys(v.name for v in variants))
        raise UsageError(f"{spec.path}: --explain {args.explain!r}: no such variant; allowed: {names}")
    extra = parse_sets(spec.path, args.set or [])
    rows = sources.explain(spec, chosen, args.profile, extra) + sources.explain_launch(spec, args.executor)
    print(f"{spec.study} {chosen.name} ({chosen.run_id}): each setting, resolved, and where it came from")
    print(table(["setting", "value", "from"], [[k, plan_view.format_value(v), src] for k, v, src in rows]))
    return 0


def _rows(variants: list[Variant], planned: Any, base: Any, needs: dict, shared: dict) -> list[list[str]]:
    """One row per variant name: its seeds on one line, GPU-hours of all its runs."""
    groups: dict[str, list[tuple[Variant, Any]]] = {}
    for v, c in zip(variants, planned.variants):
        groups.setdefault(v.name, []).append((v, c))
    rows = []
    cells: dict[int, list[str]] = {}  # id(cost) -> its cells: a grid's runs share a few thousand costs
    for name, runs in groups.items():
        v, c = runs[0]
        if len(runs) == 1:  # its own GPU-hours
            if id(c) not in cells:
                cells[id(c)] = cost.cells(c)
            own = cells[id(c)]
        else:
            hours = [r[1].estimate.gpu_hours for r in runs]
            total = replace(c.estimate, gpu_hours=None if None in hours else sum(h or 0.0 for h in hours))
            own = cost.cells(replace(c, estimate=total))
        others = sorted({s for r in runs for s in shared.get(r[0].run_id, [])})
        rows.append(
            [name, plan_view.changes_text(v, base), ",".join(str(r[0].seed) for r in runs),
             ",".join(r[0].run_id for r in runs)]
            + ([needs_text(needs.get(v.run_id))] if needs else [])
            + own
            + ([", ".join(others) or "-"] if shared else [])
        )  # fmt: skip
    return rows


def _print_json(document: dict[str, Any], variants: Any) -> None:
    """One JSON document: its fields indented, each variant (its JSON text) on one line."""
    head = json.dumps(document, indent=1)
    out = sys.stdout
    out.write(head[:-2] + ',\n "variants": [')
    for i, v in enumerate(variants):
        out.write(("\n  " if i == 0 else ",\n  ") + v)
    out.write("\n ]\n}\n")


def _sampler(cfg: Any) -> dict[str, Any]:
    """A generating run's sampler, as its kind's index fields state it (``plan --json``)."""
    sampler = index_fields(cfg).get("sampler")
    return {"sampler": sampler} if sampler else {}


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
        "task": v.config.task,
        "kind": v.fields.get("kind"),
        **_sampler(v.config),
        "needs": need,
        "cost": c.to_json(),
        "shared_with": shared,
    }


class JsonLines:
    """``json.dumps(_variant_json(...))`` of each variant, spelled from parts kept per value (a
    grid's runs share their axes' values, data sets and costs): a few times faster, the same text."""

    def __init__(self) -> None:
        self.parts: dict[Any, str] = {}  # (kind of part, what it is of) -> its JSON text
        self.kept: list[Any] = []  # the objects whose id is in a key, alive while their part is
        self.axes: dict[tuple[str, int], tuple[Any, str]] = {}  # (axis, id(value)) -> (value, its JSON text)

    def _of(self, key: Any, make: Any, *alive: Any) -> str:
        found = self.parts.get(key)
        if found is None:
            found = self.parts[key] = make()
            self.kept.append(alive)
        return found

    def variant(self, v: Variant, need: dict[str, Any] | None, c: Any, shared: list[str]) -> str:
        cfg, text = v.config, _text
        axes = self._axes(v.axes)
        sampler = v.fields.get("sampler") if "kind" in v.fields else index_fields(cfg).get("sampler")
        sets = self._of(("data", id(cfg.data), id(cfg.eval), "eval" in reads(cfg)),
                        lambda: json.dumps(data_sets(cfg))[1:-1], cfg.data, cfg.eval)  # fmt: skip
        return (
            f'{{"index": {text(v.index)}, "id": {text(v.run_id)}, "name": {text(v.name)}, "seed": {text(v.seed)}, '
            f'"source": {text(v.source)}, "aliases": {_list_text(v.aliases)}, "axes": {{{axes}}}, {sets}, '
            f'"task": {text(cfg.task)}, "kind": {text(v.fields.get("kind"))}, '
            + (f'"sampler": {json.dumps(sampler)}, ' if sampler else "")
            + f'"needs": {"null" if need is None else json.dumps(need)}, '
            f'"cost": {self._of(("cost", id(c)), lambda: json.dumps(c.to_json()), c)}, '
            f'"shared_with": {_list_text(shared)}}}'
        )

    def _axes(self, axes: dict[str, Any]) -> str:
        """The axes' ``"key": value`` parts, each kept per (axis, value object): a grid's rows
        hold the very values its study file lists."""
        parts = []
        for key, value in axes.items():
            found = self.axes.get((key, id(value)))
            if found is None or found[0] is not value:
                found = self.axes[(key, id(value))] = (value, json.dumps({key: _listed(value)})[1:-1])
            parts.append(found[1])
        return ", ".join(parts)


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _list_text(values: Any) -> str:
    return json.dumps(list(values)) if values else "[]"


def _text(value: Any) -> str:
    """``json.dumps(value)``, quicker for a string or an int."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    return str(value) if kind is int else json.dumps(value)


def plan_cost(args: argparse.Namespace, variants: list[Variant], counter: counts.Counter | None = None) -> Any:
    """Each variant's parameters, GMACs and GPU-hour estimate (study/measure/cost.py); the counts
    are cached in <results>/.cache/cost.json where the results folder exists (plan creates none)."""
    cache = counts.CostCache(
        _cache_path(args), store.write_json_atomic if results_root(args).is_dir() else None, counter=counter
    )
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


def _cache_path(args: argparse.Namespace) -> Path:
    return results_root(args) / ".cache" / "cost.json"


def needs_of(args: argparse.Namespace, variants: list[Variant]) -> dict[str, dict[str, Any]]:
    """Run id -> the run it waits for (its run kind's ``needs``): its id, name, what it is, and
    its state now."""
    root = results_root(args)
    names = {v.run_id: v.name for v in variants}
    waiting = [(v, named[0]) for v in variants if (named := needs(v.config))]
    states = store.run_states([store.run_dir(root, a) for _, a in waiting])
    out = {}
    for (v, a), run in zip(waiting, states):
        reference = kind_of(v.config).reference
        label = reference.label if reference else "run"
        out[v.run_id] = {"id": a, "name": names.get(a), "label": label, "state": run.state.value, "reason": run.reason}
    return out


def needs_text(need: dict[str, Any] | None) -> str:
    """What the plan's ``needs`` column says of the run a variant waits for."""
    if need is None:
        return "-"
    return f"{need.get('label', 'run')} {need['name'] or need['id']} ({need['id']}, {need['state']})"


def data_sets(cfg: Any) -> dict[str, Any]:
    """What a variant trains and evaluates on, for ``plan --json``: names, paths, split lists; the
    evaluation set only for a run whose kind reads one."""
    d, e = cfg.data, cfg.eval
    out: dict[str, Any] = {"data": {"kind": d.kind, "name": d.name, "path": d.path, "list": d.list}}
    if "eval" in reads(cfg):
        out["eval"] = {"path": e.path, "list": e.list, "name": e.name, "num_images": e.num_images}
    return out


COMMANDS = (
    Command(
        "plan", "the expanded variants and their cost; writes only a cache of the counts", plan, plan_options, True
    ),
)
