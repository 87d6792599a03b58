"""The parameters and MACs a study's cost shows, counted once per distinct network (encoder path,
decoder path, discriminator, denoiser) and kept in memory and on disk. Details: docs/performance.md,
"Counting each network once".
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from study import config as cfgmod

Writer = Callable[[Path, Any], None]

REPO = Path(__file__).resolve().parents[2]
CACHE_FORMAT = 1
# The code a count depends on: the models, the builders' arguments, the counting.
_CODE = ("study/models/*.py", "study/config/sections.py", "study/measure/macs.py")
SIDES = ("encoder", "decoder")
COUNTS = ("encoder_params", "decoder_params", "encoder_gmacs", "decoder_gmacs")

_MEMORY: dict[str, dict[str, Any]] = {}  # disk key -> {"params": n, "macs": n}, for the process


def clear_memory_cache() -> None:
    _MEMORY.clear()
    _DONE.clear()


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the sources the counts depend on: a disk cache of other code is not used."""
    digest = hashlib.sha256()
    for pattern in _CODE:
        for path in sorted(REPO.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _model_key(side: str, model: cfgmod.ModelConfig, resolution: int) -> str:
    """The canonical JSON of what one side of the autoencoder's counts depend on."""
    d = cfgmod.to_dict(model, identity_only=True)
    d.pop("init_sha256", None)
    d.pop("decoder" if side == "encoder" else "encoder")
    return cfgmod.canonical_json({"side": side, "model": d, "resolution": resolution})


class CostCache:
    """The counts of each network side, in memory and, with ``path``, in a JSON file that
    ``save`` writes with ``write_json`` (merged with what another process wrote meanwhile).
    ``counted`` and ``cached``: sides (at one resolution) counted here and found counted."""

    def __init__(self, path: Path | None = None, write_json: Writer | None = None, counter: Counter | None = None):
        self.path, self._write, self.counter = path, write_json, counter
        self.counted = self.cached = 0
        self._new: dict[str, dict[str, Any]] = {}
        self._models: dict[tuple[cfgmod.ModelConfig, int], dict[str, Any]] = {}
        # the same by the model object (hashing a model config is slow), with the object
        self._by_id: dict[tuple[int, int], tuple[cfgmod.ModelConfig, dict[str, Any]]] = {}
        self._nets: dict[tuple[Any, ...], int] = {}
        self._seen: set[str] = set()  # the keys counted or found by this cache
        if path is not None:
            for key, value in _read_cache(path).items():
                _MEMORY.setdefault(key, value)

    # -- the autoencoder's two sides -----------------------------------------------------------
    def prefetch(self, pairs: Iterable[tuple[cfgmod.ModelConfig, int]]) -> None:
        """Count every (model, resolution) not yet known, each side built once for all the
        resolutions it is needed at."""
        wanted: dict[tuple[str, str], tuple[cfgmod.ModelConfig, set[int]]] = {}
        by_id = {(id(m), r): (m, r) for m, r in pairs}  # the distinct objects first: hashing a model is slow
        for model, resolution in dict.fromkeys(by_id.values()):
            if (model, resolution) in self._models:
                continue
            for side in SIDES:
                key = _model_key(side, model, resolution)
                if key in _MEMORY:
                    continue
                base = (side, _model_key(side, model, 0))
                wanted.setdefault(base, (model, set()))[1].add(resolution)
        jobs = [(f"{side}_counts", (model, sorted(resolutions))) for (side, _), (model, resolutions) in wanted.items()]
        for (name, (model, _)), (params, by_resolution) in zip(jobs, self._count(jobs)):
            for resolution, n in by_resolution.items():
                self._put(_model_key(name.partition("_")[0], model, resolution), {"params": params, "macs": n})

    def _count(self, jobs: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[int, dict[int, int]]]:
        """Each job's (parameters, {resolution: MACs}), by ``self.counter`` where there is one
        (``Counter``), else here."""
        done = self.counter.count(jobs) if self.counter is not None and jobs else None
        return done if done is not None else [_counted(job) for job in jobs]

    def model(self, model: cfgmod.ModelConfig, resolution: int) -> dict[str, Any]:
        """COUNTS of the autoencoder ``model`` for one image at ``resolution``."""
        hit = self._by_id.get((id(model), resolution))
        if hit is not None and hit[0] is model:
            return hit[1]
        found = self._models.get((model, resolution))
        if found is not None:
            self._by_id[(id(model), resolution)] = (model, found)
            return found
        keys = [_model_key(side, model, resolution) for side in SIDES]
        if not all(k in _MEMORY for k in keys):
            self.prefetch([(model, resolution)])
        for key in keys:
            self._found(key)
        enc, dec = (_MEMORY[k] for k in keys)
        found = self._models[(model, resolution)] = {
            "encoder_params": enc["params"],
            "decoder_params": dec["params"],
            "encoder_gmacs": enc["macs"] / 1e9,
            "decoder_gmacs": dec["macs"] / 1e9,
        }
        self._by_id[(id(model), resolution)] = (model, found)
        return found

    # -- the other networks a run trains --------------------------------------------------------
    def discriminator(self, kind: str, channels: int, resolution: int) -> int:
        """MACs of ``loss.discriminator`` judging one image at ``resolution`` (0 for none)."""
        return self._net(("discriminator", kind, channels), resolution)

    def denoiser(self, unet: str, latent_channels: int, resolution: int) -> int:
        """MACs of one step of the ``diffusion.unet`` denoiser on one image's latent."""
        return self._net(("denoiser", unet, latent_channels), resolution)

    def _net(self, net: tuple[Any, ...], resolution: int) -> int:
        memo = net + (resolution,)
        if memo in self._nets:
            return self._nets[memo]
        key = cfgmod.canonical_json({"side": net[0], "net": list(net[1:]), "resolution": resolution})
        if key in _MEMORY:
            self._found(key)
        else:
            ((params, by_resolution),) = self._count([(f"{net[0]}_counts", (net[1], net[2], [resolution]))])
            self._put(key, {"params": params, "macs": by_resolution[resolution]})
        self._nets[memo] = _MEMORY[key]["macs"]
        return self._nets[memo]

    def _found(self, key: str) -> None:
        if key not in self._seen:
            self._seen.add(key)
            self.cached += 1

    def _put(self, key: str, value: dict[str, Any]) -> None:
        self.counted += 1
        self._seen.add(key)
        _MEMORY[key] = self._new[key] = value

    def save(self) -> None:
        if not self._new or self.path is None or self._write is None:
            return
        entries = _read_cache(self.path) | self._new
        try:
            self._write(self.path, {"format": CACHE_FORMAT, "code": code_fingerprint(), "entries": entries})
        except OSError:  # a read-only results folder: the counts are only not kept
            return
        self._new = {}


def _counted(job: tuple[str, tuple[Any, ...]]) -> tuple[int, dict[int, int]]:
    """``_count_job``, each job counted once in this process (a ``Counter`` counts ahead what
    it will be asked)."""
    key = (job[0], *(tuple(a) if isinstance(a, list) else a for a in job[1]))
    found = _DONE.get(key)
    if found is None:
        found = _DONE[key] = _count_job(job)
    return found


_DONE: dict[tuple[Any, ...], tuple[int, dict[int, int]]] = {}  # job (hashable) -> its counts


def _count_job(job: tuple[str, tuple[Any, ...]]) -> tuple[int, dict[int, int]]:
    """(parameters, {resolution: MACs}) of one job: ``study.measure.macs``' function of that name
    on those arguments (an autoencoder's side with the module calls shared)."""
    from study.measure import macs  # torch: imported only when something is counted

    name, args = job
    if name in ("encoder_counts", "decoder_counts"):
        return getattr(macs, name)(*args, shared=True)  # type: ignore[no-any-return]
    return getattr(macs, name)(*args)  # type: ignore[no-any-return]


class Counter:
    """A forked process that counts while this one does other work (``plan`` expands its grid
    meanwhile): it first runs one op on the meta device (the first imports much of torch, a
    second or so), then runs ``ahead`` (what it guesses it will be asked: the jobs that calls
    ``_counted`` with are counted before any is asked), then counts each list of jobs it is
    sent. Where it is gone or fails, ``count`` says None and the caller counts itself: the same
    functions, the same counts."""

    def __init__(self, ahead: Callable[[], object] | None = None) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._process: Any = context.Process(target=_serve, args=(child, ahead), daemon=True)
        self._process.start()
        child.close()

    def count(self, jobs: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[int, dict[int, int]]] | None:
        if self._process is None:
            return None
        try:
            self._conn.send(jobs)
            while not self._conn.poll(1.0):
                if not self._process.is_alive():
                    raise EOFError
            return self._conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):  # it failed (the caller's own count will say why): counted here
            self.close()
            return None

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join()
            self._conn.close()
            self._process = None


def _serve(conn: Any, ahead: Callable[[], object] | None) -> None:
    """The counting process: warmed up, ``ahead`` run, then each list of jobs counted (or found
    counted ahead) and sent back."""
    from study.measure import macs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupted plan ends it (``close``), quietly
    macs.one_thread()  # a forked copy of a thread pool the parent may have started is not safe to use
    macs.warm_up()
    if ahead is not None:
        try:
            ahead()
        except Exception:  # noqa: BLE001 -- a guess: what it did not count is counted when asked
            pass
    while True:
        try:
            jobs = conn.recv()
            conn.send([_counted(job) for job in jobs])
        except Exception:  # noqa: BLE001 -- the caller counts itself, and says what went wrong
            return


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cached counts; none when the file is absent, unreadable or of other code."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("code") != code_fingerprint():
        return {}
    entries = doc.get("entries")
    return entries if isinstance(entries, dict) else {}
