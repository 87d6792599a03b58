"""Weights the metrics and losses need (Inception, AlexNet, VGG16, VGG19), staged for offline
compute nodes: ``weights fetch`` downloads each once and checks its pinned sha256, ``weights check``
lists what is present; metrics never download and record a missing file as unavailable.

The files, the directory rule (``$LITEVAE_WEIGHTS_DIR``, else torch hub's cache), how the digests
were pinned and the custom-file variables: docs/evaluation.md, "Weights for offline compute nodes".
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from study.config import site

WEIGHTS_ENV = "LITEVAE_WEIGHTS_DIR"
# A mirror: each file is fetched from $LITEVAE_WEIGHTS_URL/<filename> instead of its pinned
# source (the same sha256 is checked); for a site's own copy, and for tests (a loopback server).
MIRROR_ENV = "LITEVAE_WEIGHTS_URL"
FETCH_HINT = "python run_study.py weights fetch"


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    url: str
    sha256: str
    size: int  # bytes, informational (shown by `weights check`)
    used_by: str

    @property
    def override_env(self) -> str:
        return f"LITEVAE_{self.name.upper()}_WEIGHTS"

    def matches(self, digest: str) -> bool:
        """A full pin (64 hex digits) must equal ``digest``; a prefix pin (torch hub's 8 digits in
        the file name) must start it, which is what torchvision's ``check_hash`` checks."""
        return digest == self.sha256 if len(self.sha256) == 64 else digest.startswith(self.sha256)


REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            "inception",
            "weights-inception-2015-12-05-6726825d.pth",
            # torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
            "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
            95_628_359,
            "rFID (torch-fidelity Inception-v3, pool3 features)",
        ),
        WeightFile(
            "alexnet",
            "alexnet-owt-7be5be79.pth",
            # torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
            244_408_911,
            "LPIPS backbone, net='alex' (evaluation default)",
        ),
        WeightFile(
            "vgg16",
            "vgg16-397923af.pth",
            # torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
            553_433_881,
            "LPIPS backbone, net='vgg' (training loss; evaluation with eval.lpips_net=vgg)",
        ),
        WeightFile(
            "vgg19",
            "vgg19-dcbb9e9d.pth",
            # torchvision.models.VGG19_Weights.IMAGENET1K_V1.url; a prefix pin (see the module docstring);
            # size: torchvision's meta _file_size, 548.051 MiB, in bytes to that rounding
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            "dcbb9e9d",
            574_673_125,
            "ESRGAN perceptual loss, VGG19 conv5_4 before activation (loss.perceptual=esrgan)",
        ),
    )
}

# The lpips package's net name -> the registry entry of its torchvision backbone.
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "vgg16": "vgg16"}


class MissingWeightsError(RuntimeError):
    """A weights file a metric needs is absent (or corrupt: see CorruptWeightsError)."""

    def __init__(self, message: str, *, name: str = "", path: Path | None = None):
        super().__init__(message)
        self.name, self.path = name, path


class CorruptWeightsError(MissingWeightsError):
    """The file is there but its sha256 is not the pinned one (a torn or wrong download)."""


class FetchError(RuntimeError):
    """A download failed (no network, HTTP error, wrong sha256)."""


# --------------------------------------------------------------------------------------------
# where
# --------------------------------------------------------------------------------------------
def weights_dir(directory: str | Path | None = None) -> Path:
    """``directory``, else $LITEVAE_WEIGHTS_DIR, else the site file's ``weights``
    (study/config/site.py), else torch hub's ``checkpoints`` cache."""
    if directory:
        return Path(directory).expanduser()
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    settings = site.load()
    if settings.weights:
        return Path(site.expand(settings.weights, f"{settings.path}: weights", settings)).expanduser()
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _entry(name: str) -> WeightFile:
    if name not in REGISTRY:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


# --------------------------------------------------------------------------------------------
# hashing (memoised per path, size and mtime: a 550 MB file is hashed once per process)
# --------------------------------------------------------------------------------------------
_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------
class Entry(NamedTuple):
    name: str
    path: Path
    state: str  # present | missing | corrupt


def check(directory: str | Path | None = None, names: Iterable[str] | None = None) -> list[Entry]:
    """One row per registry file: present (sha256 verified), missing or corrupt."""
    folder = weights_dir(directory)
    rows = []
    for name in names or REGISTRY:
        w = _entry(name)
        path = folder / w.filename
        if not path.is_file():
            state = "missing"
        else:
            state = "present" if w.matches(sha256_file(path)) else "corrupt"
        rows.append(Entry(name, path, state))
    return rows


def format_check(rows: list[Entry], directory: str | Path | None = None) -> str:
    """The `weights check` text: where it looked, each file's state, what to do."""
    folder = weights_dir(directory)
    source = (
        "--dir"
        if directory
        else f"${WEIGHTS_ENV}"
        if os.environ.get(WEIGHTS_ENV)
        else f"weights in {site.load().path}"
        if site.load().weights
        else f"torch hub cache; set ${WEIGHTS_ENV} or the site file's `weights` to change"
    )
    lines = [f"weights directory: {folder} ({source})"]
    width = max(len(r.name) for r in rows) if rows else 4
    for r in rows:
        w = REGISTRY[r.name]
        line = f"  {r.state:<8} {r.name:<{width}}  {r.path}"
        if r.state == "missing":
            line += f"  ({w.size / 1e6:.0f} MB, for {w.used_by})"
        elif r.state == "corrupt":
            line += f"  (sha256 {sha256_file(r.path)[:16]}..., expected {w.sha256[:16]}...)"
        lines.append(line)
    for name in REGISTRY:
        env = REGISTRY[name].override_env
        if os.environ.get(env):
            lines.append(f"  custom   {name:<{width}}  {os.environ[env]}  (${env}: used as-is, not verified)")
    bad = [r for r in rows if r.state != "present"]
    if bad:
        lines.append(
            f"{len(bad)} file(s) not usable: metrics that need them are recorded as unavailable. "
            f"Run `{FETCH_HINT}"
            + (f" --dir {folder}" if directory else "")
            + "` on a machine with network access (for an offline cluster: to shared storage, "
            f"then set {WEIGHTS_ENV} on the compute nodes)."
        )
    else:
        lines.append("all weights present.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------------------------
def source_url(w: WeightFile) -> str:
    """Where ``w`` is downloaded from: $LITEVAE_WEIGHTS_URL/<filename> when set, else its pinned URL."""
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    return f"{mirror}/{w.filename}" if mirror else w.url


class FetchResult(NamedTuple):
    name: str
    path: Path
    state: str  # present (already there) | downloaded | failed
    reason: str = ""


Opener = Callable[..., Any]


def fetch(
    directory: str | Path | None = None,
    names: Iterable[str] | None = None,
    *,
    timeout: float = 60.0,
    progress: bool = True,
    registry: dict[str, WeightFile] | None = None,
    opener: Opener | None = None,
) -> list[FetchResult]:
    """Download each missing or corrupt file into ``directory`` and verify its sha256.

    A file is written to a temporary name, hashed while it streams, and renamed into place only
    when the digest is the pinned one; nothing half-downloaded or wrong is ever left under the
    real name. Failures (no network, HTTP errors, a wrong digest) are reported per file, never
    raised: the caller prints ``format_fetch`` and exits non-zero when any failed.
    """
    registry = registry or REGISTRY
    opener = opener or urllib.request.urlopen
    folder = weights_dir(directory)
    results = []
    for name in names or registry:
        if name not in registry:
            raise KeyError(f"unknown weights {name!r}; known: {', '.join(registry)}")
        w = registry[name]
        path = folder / w.filename
        if path.is_file() and w.matches(sha256_file(path)):
            results.append(FetchResult(name, path, "present"))
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _download(w, path, timeout, progress, opener)
            results.append(FetchResult(name, path, "downloaded"))
        except FetchError as e:
            results.append(FetchResult(name, path, "failed", str(e)))
        except OSError as e:  # the folder cannot be created or written
            results.append(FetchResult(name, path, "failed", f"cannot write {path}: {e}"))
    return results


def _download(w: WeightFile, path: Path, timeout: float, progress: bool, opener: Opener) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{w.filename}.", suffix=".part")
    url = source_url(w)
    try:
        digest = hashlib.sha256()
        try:
            with opener(url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) if hasattr(response, "headers") else 0
                bar = _bar(total or w.size, f"{w.name} ({w.size / 1e6:.0f} MB)", progress)
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
                bar.close()
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as e:
            raise FetchError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise FetchError(
                f"cannot download {url}: {reason} (no network here? run the fetch "
                f"on a machine with internet access, then `{FETCH_HINT} --from FOLDER` "
                f"here, or copy {w.filename} into {path.parent}, or point "
                f"${WEIGHTS_ENV} at a staged copy)"
            ) from None
        got = digest.hexdigest()
        if not w.matches(got):
            raise FetchError(f"downloaded {url} but its sha256 is {got}, expected {w.sha256}; the file was discarded")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bar(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        enabled = False
    if not enabled:

        class _Null:
            def update(self, n: int) -> None: ...
            def close(self) -> None: ...

        return _Null()
    return tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=True)


def format_fetch(results: list[FetchResult]) -> str:
    lines = []
    for r in results:
        line = f"  {r.state:<10} {r.name:<9}  {r.path}"
        if r.reason:
            line += f"\n             {r.reason}"
        lines.append(line)
    failed = sum(r.state == "failed" for r in results)
    lines.append(f"{failed} of {len(results)} file(s) failed." if failed else "all weights present and verified.")
    return "\n".join(lines)


def copy_into(src: str | Path, directory: str | Path | None = None) -> list[FetchResult]:
    """Stage files copied by hand (e.g. from a machine with network): every registry file found in
    ``src`` is verified and copied into the weights directory; wrong digests are refused."""
    src, folder = Path(src), weights_dir(directory)
    results = []
    for name, w in REGISTRY.items():
        candidate = src / w.filename
        if not candidate.is_file():
            continue
        if not w.matches(sha256_file(candidate)):
            results.append(
                FetchResult(name, folder / w.filename, "failed", f"{candidate}: sha256 is not the pinned {w.sha256}")
            )
            continue
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{w.filename}.", suffix=".part")
        os.close(fd)
        shutil.copyfile(candidate, tmp)
        os.replace(tmp, folder / w.filename)
        results.append(FetchResult(name, folder / w.filename, "downloaded"))
    return results


# --------------------------------------------------------------------------------------------
# resolve: the file a metric loads, or MissingWeightsError
# --------------------------------------------------------------------------------------------
class Resolved(NamedTuple):
    name: str
    path: Path
    sha256: str
    official: bool  # False: a custom file from $LITEVAE_<NAME>_WEIGHTS, used as-is


def resolve(name: str, directory: str | Path | None = None) -> Resolved:
    """The verified file for ``name`` (custom override first), or MissingWeightsError /
    CorruptWeightsError with a message naming the file, the directory and the fetch command."""
    w = _entry(name)
    custom = os.environ.get(w.override_env)
    if custom:
        path = Path(custom).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{w.override_env}={custom} is not a file", name=name, path=path)
        return Resolved(name, path, sha256_file(path), False)
    folder = weights_dir(directory)
    path = folder / w.filename
    flag = f" --dir {folder}" if directory else ""
    if not path.is_file():
        raise MissingWeightsError(
            f"{w.filename} not found in {folder} (needed for {w.used_by}); "
            f"run `{FETCH_HINT}{flag}` where there is network access",
            name=name,
            path=path,
        )
    got = sha256_file(path)
    if not w.matches(got):
        raise CorruptWeightsError(
            f"{path} is corrupt (sha256 {got[:16]}..., expected {w.sha256[:16]}...); "
            f"delete it and run `{FETCH_HINT}{flag}`",
            name=name,
            path=path,
        )
    return Resolved(name, path, got, True)


def expected_sha256(name: str) -> str:
    """The sha256 the protocol records for ``name``: a custom file's own digest, else the pinned
    one (whether or not the file is present yet: the protocol is what is measured, not what is
    available; a missing file makes the metric unavailable in the record, not a new protocol)."""
    w = _entry(name)
    custom = os.environ.get(w.override_env)
    if custom and Path(custom).expanduser().is_file():
        return sha256_file(Path(custom).expanduser())
    return w.sha256


def inception_weights_path(directory: str | Path | None = None) -> Path:
    """The Inception file for torch-fidelity's ``feature_extractor_weights_path``."""
    return resolve("inception", directory).path


# --------------------------------------------------------------------------------------------
# LPIPS with a staged backbone (never downloads)
# --------------------------------------------------------------------------------------------
def lpips_linear_path(net: str) -> Path:
    """The small calibrated linear layers shipped inside the lpips package."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{'vgg' if net == 'vgg16' else net}.pth"


def load_lpips(net: str = "alex", device: Any = "cpu", directory: str | Path | None = None):
    """``lpips.LPIPS(net=net)`` (v0.1, linear layers from the package) in eval mode, frozen, on
    ``device``, with its torchvision backbone loaded from the weights directory instead of
    downloaded. Raises MissingWeightsError naming the file, the directory and the fetch command."""
    import torch

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"lpips net {net!r}: expected one of {', '.join(LPIPS_BACKBONES)}")
    resolved = resolve(LPIPS_BACKBONES[net], directory)
    state = torch.load(resolved.path, map_location="cpu", weights_only=True)
    model = lpips_from_backbone_state(net, state)
    return model.to(device)


def lpips_from_backbone_state(net: str, state: dict[str, Any]):
    """Build LPIPS with a random trunk (no download), then copy the torchvision ``features.*``
    tensors into its slices: lpips keeps torchvision's layer indices as module names."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation notices
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    mapped = {}
    for key in model.net.state_dict():
        _slice, index, param = key.split(".", 2)
        source = f"{index}.{param}"
        if source not in features:
            raise MissingWeightsError(f"the {net} backbone file has no tensor features.{source}")
        mapped[key] = features[source]
    model.net.load_state_dict(mapped, strict=True)
    model.eval()
    model.requires_grad_(False)
    return model
