"""How the numbers were made, as two short tables a reader scans: the training setup per variant
and the evaluation protocol.

- ``setup_table``: per variant (aliases left out: they share a run), from its run's own record
  (``<run>/config.yaml``, the config the run was launched with; the index for the kind, dataset
  and latent): steps (per stage where training is staged), batch (and gradient accumulation), the
  learning rate, the training and evaluation resolutions, the data and the latent.
- ``protocol_table``: each evaluation protocol's main fields, one column per protocol id (the
  full protocol stays, verbatim JSON, in the report's provenance).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import yaml

from study import store
from study.report.records import StudyRecords, variant_order

NOT_TRAINED = {"complexity": "none (complexity only)", "evaluation": "none (evaluates a trained model)"}
SETUP_NOTE = (
    "The training setup of each variant, from its run's recorded config (the lowest seed's run; "
    "every seed shares it). Batch: images per optimiser step (× gradient accumulation where "
    "set). Resolution: training → evaluation."
)


def run_config(records: StudyRecords, run_id: str) -> dict[str, Any] | None:
    """A run's config as recorded in ``<run>/config.yaml`` (None: no run folder yet)."""
    path = store.run_dir(records.root, run_id) / "config.yaml"
    if not path.is_file():
        return None
    doc = yaml.safe_load(path.read_text()) or {}
    return dict(doc.get("config") or {})


def _get(cfg: dict[str, Any], dotted: str, default: Any = None) -> Any:
    value: Any = cfg
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    return f"{value:g}" if isinstance(value, float) else str(value)


def setup_row(variant: dict[str, Any], cfg: dict[str, Any] | None) -> dict[str, str]:
    """One variant's line of the setup table (its index entry and its run's config)."""
    kind = str(variant.get("kind") or "autoencoder")
    row = {"Variant": str(variant["name"]), "Kind": kind}
    if cfg is None:
        return row | dict.fromkeys(("Steps", "Batch", "LR", "Resolution", "Data", "Latent"), "not launched")
    train_res, eval_res = _get(cfg, "data.resolution"), _get(cfg, "eval.resolution") or _get(cfg, "data.resolution")
    data = str(_get(cfg, "data.name") or variant.get("dataset") or "—")
    if _get(cfg, "data.kind") == "folder":
        data += " (image folder)"
    latent = variant.get("latent") or (f"of {variant['autoencoder_id']}" if variant.get("autoencoder_id") else "—")
    trains = variant.get("trains")  # its run kind's config keys of steps, batch and lr (None: trains nothing)
    if kind in NOT_TRAINED or trains == {}:
        steps, batch, lr = NOT_TRAINED.get(kind, "none"), "—", "—"
    elif trains and not str(trains["steps"]).startswith("train."):  # another kind's own schedule
        steps, batch, lr = (_number(_get(cfg, trains[k])) for k in ("steps", "batch", "lr"))
    else:
        stages = _get(cfg, "train.stages") or []
        steps = (
            " + ".join(f"{_number(s.get('steps'))} @ {s.get('resolution')}" for s in stages)
            if stages
            else _number(_get(cfg, "train.steps"))
        )
        batch = _number(_get(cfg, "train.batch_size"))
        accum = _get(cfg, "train.grad_accum", 1) or 1
        batch += f" (× {accum} accumulated)" if accum > 1 else ""
        lr = _number(_get(cfg, "train.lr"))
        if stages:
            train_res = " → ".join(str(s.get("resolution")) for s in stages)
    resolution = f"{train_res} → {eval_res}" if str(train_res) != str(eval_res) else str(train_res)
    return row | {"Steps": steps, "Batch": batch, "LR": lr, "Resolution": resolution, "Data": data, "Latent": latent}


def setup_table(records: StudyRecords) -> pd.DataFrame:
    """The training setup per variant, in the study's order (the module docstring)."""
    order, alias_of = variant_order(records.index)
    first: dict[str, dict[str, Any]] = {}
    for v in sorted(records.index["variants"], key=lambda v: v.get("seed", 0)):
        first.setdefault(v["name"], v)
    rows = [setup_row(first[n], run_config(records, first[n]["run_id"])) for n in order if n in first]
    table = pd.DataFrame(rows)
    if len(table) and (table["Kind"] == "autoencoder").all():
        table = table.drop(columns="Kind")  # the usual case: say nothing
    return table


# --------------------------------------------------------------------------------------------
# the evaluation protocol
# --------------------------------------------------------------------------------------------
FIELDS = (  # (label, how to read it from a protocol)
    ("kind", lambda p: p.get("kind", "reconstruction")),
    ("images", lambda p: p.get("num_images") or p.get("num_samples")),
    ("data", lambda p: _dataset(p.get("dataset") or p.get("reference"))),
    ("resolution", lambda p: p.get("resolution")),
    ("resize", lambda p: p.get("resize")),
    ("crop", lambda p: p.get("crop")),
    ("quantisation", lambda p: p.get("quantisation")),
    ("posterior", lambda p: p.get("posterior")),
    ("weights", lambda p: p.get("weights", "model")),
    ("metrics", lambda p: ", ".join(map(str, p["metrics"])) if isinstance(p.get("metrics"), list) else None),
    ("sampler", lambda p: _sampler(p.get("sampler"))),
)


def _dataset(d: Any) -> str | None:
    if not isinstance(d, dict):
        return None if d is None else str(d)
    parts = [str(d[k]) for k in ("name", "split") if d.get(k)]
    return ", ".join(parts) if parts else None


def _sampler(s: Any) -> str | None:
    if not isinstance(s, dict):
        return None
    return f"{str(s.get('name', '?')).upper()}, {s.get('steps')} steps, eta {s.get('eta')}"


def protocol_table(protocols: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per field any protocol has, one column per protocol id."""
    rows = []
    for label, read in FIELDS:
        values = {eid: read(p) for eid, p in protocols.items()}
        if any(v is not None for v in values.values()):
            rows.append({"Field": label} | {eid: "—" if v is None else str(v) for eid, v in values.items()})
    return pd.DataFrame(rows, columns=["Field", *protocols])
