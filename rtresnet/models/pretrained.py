"""torchvision's published ImageNet weights for the zoo: where to fetch them, how to check them, how to feed them.

Copied from torchvision 0.29 ``torchvision/models/resnet.py`` (URLs, accuracy, resize sizes). Each file name
ends in the first 8 hex digits of the file's sha256, which is how torchvision checks its downloads too.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rtresnet.environment import rtresnet_home
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path, sha256_file
from rtresnet.progress import track
from rtresnet.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

log = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20

URL_BASE = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class NamedWeights:
    """One published checkpoint: ImageNet-1K accuracy (percent) and the preprocessing it was evaluated with."""

    arch: str
    name: str  # "IMAGENET1K_V1" | "IMAGENET1K_V2"
    file_name: str  # e.g. "resnet50-11ad3fa6.pth"
    top1_pct: float
    top5_pct: float
    resize: int  # shorter side before the center crop: 256 for V1 recipes, 232 for V2 ones
    crop: int = 224
    num_classes: int = 1000

    @property
    def url(self) -> str:
        return URL_BASE + self.file_name

    @property
    def sha256_prefix(self) -> str:
        return self.file_name.rsplit("-", 1)[1].split(".")[0]

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(resize=self.resize, crop=(self.crop, self.crop), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             interpolation="bilinear", channel_order="RGB")


_W = NamedWeights
_CATALOG: tuple[NamedWeights, ...] = (
    _W("resnet18", "IMAGENET1K_V1", "resnet18-f37072fd.pth", 69.758, 89.078, 256),
    _W("resnet34", "IMAGENET1K_V1", "resnet34-b627a593.pth", 73.314, 91.420, 256),
    _W("resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", 76.130, 92.862, 256),
    _W("resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 80.858, 95.434, 232),
    _W("resnet101", "IMAGENET1K_V1", "resnet101-63fe2227.pth", 77.374, 93.546, 256),
    _W("resnet101", "IMAGENET1K_V2", "resnet101-cd907fc2.pth", 81.886, 95.780, 232),
    _W("resnet152", "IMAGENET1K_V1", "resnet152-394f9c45.pth", 78.312, 94.046, 256),
    _W("resnet152", "IMAGENET1K_V2", "resnet152-f82ba261.pth", 82.284, 96.002, 232),
    _W("resnext50_32x4d", "IMAGENET1K_V1", "resnext50_32x4d-7cdf4587.pth", 77.618, 93.698, 256),
    _W("resnext50_32x4d", "IMAGENET1K_V2", "resnext50_32x4d-1a0047aa.pth", 81.198, 95.340, 232),
    _W("resnext101_32x8d", "IMAGENET1K_V1", "resnext101_32x8d-8ba56ff5.pth", 79.312, 94.526, 256),
    _W("resnext101_32x8d", "IMAGENET1K_V2", "resnext101_32x8d-110c445d.pth", 82.834, 96.228, 232),
    # torchvision published only the new-recipe weights for this one, under the V1 name (resize 232).
    _W("resnext101_64x4d", "IMAGENET1K_V1", "resnext101_64x4d-173b62eb.pth", 83.246, 96.454, 232),
    _W("wide_resnet50_2", "IMAGENET1K_V1", "wide_resnet50_2-95faca4d.pth", 78.468, 94.086, 256),
    _W("wide_resnet50_2", "IMAGENET1K_V2", "wide_resnet50_2-9ba9bcbe.pth", 81.602, 95.758, 232),
    _W("wide_resnet101_2", "IMAGENET1K_V1", "wide_resnet101_2-32ee1156.pth", 78.848, 94.284, 256),
    _W("wide_resnet101_2", "IMAGENET1K_V2", "wide_resnet101_2-d733dc28.pth", 82.510, 96.020, 232),
)


def named_weights(arch: str) -> tuple[NamedWeights, ...]:
    """The published weights of ``arch``, oldest first (empty for an arch without any)."""
    return tuple(w for w in _CATALOG if w.arch == arch)


def default_weights(arch: str) -> NamedWeights | None:
    """torchvision's DEFAULT: the most accurate published weights."""
    found = named_weights(arch)
    return max(found, key=lambda w: w.top1_pct) if found else None


def looks_like_weight_name(text: str) -> bool:
    """True for "IMAGENET1K_V2", "DEFAULT" or "ResNet50_Weights.IMAGENET1K_V2"; False for anything path-like."""
    name = text.rsplit(".", 1)[-1] if "_Weights." in text else text
    return bool(name) and name.replace("_", "").isalnum() and name.upper() == name


def find_named_weights(arch: str, name: str) -> NamedWeights:
    """Resolve ``name`` (as in torchvision: "IMAGENET1K_V1", "DEFAULT", "ResNet50_Weights.IMAGENET1K_V2")."""
    key = name.rsplit(".", 1)[-1].upper() if "_Weights." in name else name.upper()
    available = named_weights(arch)
    if key == "DEFAULT" and available:
        return default_weights(arch)  # type: ignore[return-value]
    for w in available:
        if w.name == key:
            return w
    names = [w.name for w in available] + (["DEFAULT"] if available else [])
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise RtresnetError(f"{arch} has no named weights {name!r}; {hint}available: {', '.join(names) or 'none'} "
                        "(or pass a checkpoint file path)")


def download_weights(weights: NamedWeights, cache_dir: str | Path | None = None) -> Path:
    """Return the cached file of ``weights``, downloading it first (hash-checked, renamed into place when good)."""
    return fetch(weights, cache_dir)[0]


def fetch(weights: NamedWeights, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(path, full sha256) of the cached file; hashing once serves both the check and LoadedModel."""
    folder = Path(cache_dir) if cache_dir is not None else rtresnet_home() / "weights"
    dest = folder / weights.file_name
    if dest.is_file():
        sha = sha256_file(dest)
        if sha.startswith(weights.sha256_prefix):
            return dest, sha
        log.warning("cached %s does not match its sha256 prefix %s; downloading it again", dest,
                    weights.sha256_prefix)
        dest.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RtresnetError(f"cannot create the weights cache {folder} ({e}); set RTRESNET_HOME to a writable "
                            "folder") from None
    log.info("downloading %s to %s", weights.url, dest)
    offline_hint = (f"download it where the network allows and pass the file: --weights /path/to/"
                    f"{weights.file_name} (or copy it into {folder}/)")
    digest = hashlib.sha256()
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(weights.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
                length = response.headers.get("Content-Length") if response.headers else None
                total = -(-int(length) // _CHUNK_BYTES) if length and str(length).isdigit() else None
                for chunk in track(iter(lambda: response.read(_CHUNK_BYTES), b""), total, weights.file_name):
                    digest.update(chunk)
                    f.write(chunk)
            if not digest.hexdigest().startswith(weights.sha256_prefix):
                # Raising inside atomic_path removes the temporary file: nothing bad lands in the cache.
                raise RtresnetError(f"downloaded {weights.url} has sha256 {digest.hexdigest()[:16]}..., expected "
                                    f"prefix {weights.sha256_prefix}; the file was discarded. Retry, or {offline_hint}")
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, a cut-off body
        reason = getattr(e, "reason", None) or e or type(e).__name__
        raise RtresnetError(f"cannot download {weights.url} ({reason}); {offline_hint}") from None
    return dest, digest.hexdigest()
