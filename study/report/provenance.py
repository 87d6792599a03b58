"""Where a report's numbers come from: the harness's git commit, the report machine, library
versions, and what the runs' own records say (their hosts, the complexity measurement's
settings, each evaluation protocol verbatim)."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from study import store

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "torchvision", "torch-fidelity", "lpips", "pandas", "numpy", "seaborn", "matplotlib")


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def git_commit(repo: Path = REPO) -> str:
    """HEAD of the repository the harness runs from ("unknown" outside git), with
    "(+uncommitted changes)" when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head.stdout.strip() + (" (+uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def hardware() -> dict[str, str]:
    """The machine writing the report (the runs' own hosts are listed separately)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 -- no torch or a broken driver: report no GPU
        gpu = "unknown"
    return {"cpu": cpu, "gpu": gpu, "platform": platform.platform()}


def run_records(root: Path, frame: pd.DataFrame) -> dict[str, Any]:
    """What the runs' own records say about where and how their numbers were made: the hosts of
    their status, the complexity measurement's settings, and each evaluation protocol."""
    hosts, devices, protocols = set(), set(), {}
    for run_id in dict.fromkeys(frame.get("run_id", pd.Series(dtype=str)).dropna()):
        folder = store.run_dir(root, run_id)
        status = store.read_json(folder / "status.json") or {}
        if status.get("host"):
            hosts.add(str(status["host"]))
        comp = store.read_json(folder / "complexity.json") or {}
        setting = ", ".join(f"{k} {comp[k]}" for k in ("device", "resolution", "batch", "precision") if k in comp)
        if setting:
            devices.add(setting)
        for eval_id, record in store.read_evals(folder).items():
            if "protocol" in record and eval_id not in protocols:
                protocols[eval_id] = record["protocol"]
    return {"hosts": sorted(hosts), "complexity": sorted(devices), "protocols": protocols}


def provenance(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The commit, the time, the report machine and the versions, then ``meta``'s lines."""
    info: dict[str, Any] = {"git commit": git_commit(), "generated": now()}
    info |= {f"report machine {k}": v for k, v in hardware().items()}
    info |= {f"version {k}": v for k, v in software_versions().items()}
    return info | (meta or {})
