"""`collect`: a study's runs as one tidy DataFrame, and results/<study>/results.csv.

One row per (variant, seed, eval protocol): the varied axes as columns, every metric as a column,
the run's state (``study/store/state.py``'s rule, the one `status` shows) and its reason kept. A
run without an evaluation still has its row; nothing is dropped silently. A diffusion run's row
also carries its autoencoder's latest reconstruction numbers (``ae_rfid``, ``ae_psnr``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from study.store.files import read_json, write_text_atomic
from study.store.runs import read_evals, run_dir, study_dir
from study.store.state import run_states

__all__ = ["COMPLEXITY_COLUMNS", "collect", "write_results"]

COMPLEXITY_COLUMNS = ("encoder_params", "decoder_params", "encoder_gmacs", "throughput_img_s", "peak_mem_mb")


def collect(root: Path, study: str, variants: list[dict[str, Any]]) -> pd.DataFrame:
    """``variants``: the study's variant records (``variant_record``, or index.json's)."""
    folders = [run_dir(root, v["run_id"]) for v in variants]
    rows: list[dict[str, Any]] = []
    for v, folder, run in zip(variants, folders, run_states(folders)):
        base = {
            "study": study,
            "index": v["index"],
            "name": v["name"],
            "run_id": v["run_id"],
            "seed": v["seed"],
            **{k: _cell(x) for k, x in v["axes"].items()},
            "state": run.state.value,
            "reason": run.reason,
            "attempts": run.attempts,
            "step": run.step,
            "diverged_step": (run.record.get("divergence") or {}).get("step"),  # study/trainer/watch.py
        }
        complexity = read_json(folder / "complexity.json") or {}
        base |= {key: complexity[key] for key in COMPLEXITY_COLUMNS if key in complexity}
        if v.get("autoencoder_id"):  # a diffusion run: its autoencoder's reconstruction numbers beside
            base |= autoencoder_columns(run_dir(root, v["autoencoder_id"]))
        evals = read_evals(folder)
        if not evals:
            rows.append(base | {"eval_id": None})
            continue
        for eval_id, record in evals.items():
            row = base | {"eval_id": eval_id}
            for metric, value in (record.get("metrics") or {}).items():
                row[metric] = value
            for metric, reason in (record.get("unavailable") or {}).items():
                row[f"{metric}_unavailable"] = reason
            rows.append(row)
    return pd.DataFrame(rows)


def autoencoder_columns(folder: Path) -> dict[str, Any]:
    """``ae_run_id`` and the latest evaluation of an autoencoder run as ``ae_<metric>`` (and
    ``ae_<metric>_unavailable``): what a diffusion run's row shows of the autoencoder it used."""
    evals = sorted(read_evals(folder).values(), key=lambda r: r.get("created") or 0)
    out: dict[str, Any] = {"ae_run_id": folder.name}
    if evals:
        out |= {f"ae_{k}": x for k, x in (evals[-1].get("metrics") or {}).items()}
        out |= {f"ae_{k}_unavailable": x for k, x in (evals[-1].get("unavailable") or {}).items()}
    return out


def _cell(value: Any) -> Any:
    return "-".join(map(str, value)) if isinstance(value, list) else value


def write_results(root: Path, study: str, frame: pd.DataFrame) -> Path:
    path = study_dir(root, study) / "results.csv"
    write_text_atomic(path, frame.to_csv(index=False))
    return path
