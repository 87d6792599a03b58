"""The parameters and MACs a study's cost shows, counted once per distinct network (encoder path,
decoder path, discriminator, denoiser) and kept in memory and on disk. Details: docs/performance.md,
"Counting each network once".
"""

from __future__ import annotations

import functools
import hashlib
import json
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

    def __init__(self, path: Path | None = None, write_json: Writer | None = None):
        self.path, self._write = path, write_json
        self.counted = self.cached = 0
        self._new: dict[str, dict[str, Any]] = {}
        self._models: dict[tuple[cfgmod.ModelConfig, int], dict[str, Any]] = {}
        self._nets: dict[tuple[Any, ...], int] = {}
        self._seen: set[str] = set()  # the keys counted or found by this cache
        if path is not None:
            for key, value in _read_cache(path).items():
                _MEMORY.setdefault(key, value)

    # -- the autoencoder's two sides -----------------------------------------------------------
    def prefetch(self, pairs: Iterable[tuple[cfgmod.ModelConfig, int]]) -> None:
        """Count every (model, resolution) not yet known, each side built once for all the
        resolutions it is needed at."""
        from study.measure import macs  # torch: imported only when something is counted

        wanted: dict[tuple[str, str], tuple[cfgmod.ModelConfig, set[int]]] = {}
        for model, resolution in dict.fromkeys(pairs):
            if (model, resolution) in self._models:
                continue
            for side in SIDES:
                key = _model_key(side, model, resolution)
                if key in _MEMORY:
                    continue
                base = (side, _model_key(side, model, 0))
                wanted.setdefault(base, (model, set()))[1].add(resolution)
        for (side, _), (model, resolutions) in wanted.items():
            count = macs.encoder_counts if side == "encoder" else macs.decoder_counts
            params, by_resolution = count(model, resolutions)
            for resolution, n in by_resolution.items():
                self._put(_model_key(side, model, resolution), {"params": params, "macs": n})

    def model(self, model: cfgmod.ModelConfig, resolution: int) -> dict[str, Any]:
        """COUNTS of the autoencoder ``model`` for one image at ``resolution``."""
        found = self._models.get((model, resolution))
        if found is not None:
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
            from study.measure import macs

            count = macs.discriminator_counts if net[0] == "discriminator" else macs.denoiser_counts
            params, by_resolution = count(net[1], net[2], [resolution])
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
