"""Weights: read checkpoints safely, fetch torchvision's published ones, and load them strictly into the zoo.

A checkpoint is untrusted input. ``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers, so a pickle that would run code is refused unrun.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pickle
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path, sha256_file
from rtresnet.models.pretrained import NamedWeights, find_named_weights, looks_like_weight_name
from rtresnet.models.registry import ArchSpec, get_arch, inspect_state_dict
from rtresnet.progress import track
from rtresnet.spec import Preprocessing

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # where training scripts nest the weights
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class LoadedModel:
    model: nn.Module  # eval mode
    arch: str
    num_classes: int
    in_channels: int
    weights: str | None  # named weight ("IMAGENET1K_V2") or the checkpoint's file name
    weights_sha256: str | None
    preprocessing: Preprocessing | None  # named weights carry theirs; None for custom files
    labels: tuple[str, ...]  # ImageNet names for named weights; () otherwise


class CheckpointMismatchError(RtresnetError):
    """A checkpoint that does not fit the architecture; ``report`` has the full key lists."""

    def __init__(self, message: str, report: str) -> None:
        super().__init__(message)
        self.report = report


def rtresnet_home() -> Path:
    return Path(os.environ.get("RTRESNET_HOME") or "~/.cache/rtresnet").expanduser()


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1K class names in torchvision's order (index = logit position)."""
    return _imagenet_list("imagenet_classes.txt", "names")


@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1K WordNet IDs ("n01440764", ...) in class-index order, parallel to imagenet_classes().

    They are the ILSVRC-2012 folder names; the class indices are their sorted order.
    """
    return _imagenet_list("imagenet_synsets.txt", "IDs")


def _imagenet_list(file_name: str, what: str) -> tuple[str, ...]:
    """One entry per non-blank line of a packaged ``rtresnet/data`` file, exactly 1000 of them."""
    text = resources.files("rtresnet").joinpath("data", file_name).read_text(encoding="utf-8")
    items = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(items) != 1000:
        raise RtresnetError(f"packaged {file_name} has {len(items)} {what}, expected 1000; reinstall rtresnet")
    return items


# ---------------------------------------------------------------------------------------------- read and write


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .pth/.pt (tensors only) or .safetensors; unwrap full checkpoints, strip prefixes."""
    path = Path(path)
    if not path.is_file():
        raise RtresnetError(f"weights file not found: {path}; pass a {'/'.join(CHECKPOINT_SUFFIXES)} file "
                            "or a named weight such as IMAGENET1K_V1")
    if path.suffix == ".safetensors":
        obj = _load_safetensors(path)
    else:
        obj = _load_pickle(path)
    return _unwrap(obj, path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise RtresnetError(f"{path} is not a readable safetensors file ({e}); is it truncated? "
                            "download or save it again") from None


def _load_pickle(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, IndexError) as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:  # weights_only refuses globals other than tensor rebuilders: a pickled model, or a payload
            raise RtresnetError(f"{path} holds Python objects, not just tensors (it references {found.group(1)}); "
                                "refused because unpickling them could run arbitrary code. Re-save it as a state "
                                "dict (torch.save(model.state_dict(), path)) or as .safetensors") from None
        raise RtresnetError(f"{path} is not a PyTorch checkpoint the safe (weights_only) loader can read; if it "
                            "is one, re-save it with torch.save(model.state_dict(), path) or as .safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        detail = (str(e).splitlines() or [""])[0].split(". ")[0][:100]
        raise RtresnetError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {detail}); is it "
                            "truncated? download or save it again") from None


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping) and not isinstance(obj.get("fc.weight"), torch.Tensor):
                log.info("using the %r entry of checkpoint %s", key, path.name)
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise RtresnetError(f"{path} holds {type(obj).__name__ if obj is not None else 'None'}, not a state dict; "
                            "pass a file saved with torch.save(model.state_dict(), path)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise RtresnetError(f"{path} is not a state dict: entry {key!r} is a {type(value).__name__}, not a "
                                "tensor; pass a file saved with torch.save(model.state_dict(), path)")
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    if len(state) < len(obj):
        raise RtresnetError(f"{path} has duplicate keys once 'module.' prefixes are removed; save it again unwrapped")
    stripped = [k for k in obj if any(k.startswith(p) for p in _PREFIXES)]
    if stripped:
        log.info("stripped wrapper prefixes (module./_orig_mod.) from %d keys of %s", len(stripped), path.name)
    return state


def save_state_dict(model_or_sd: nn.Module | Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict atomically: .safetensors (preferred: no pickle) or .pth/.pt."""
    path = Path(path)
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else dict(model_or_sd)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
    elif path.suffix in (".pth", ".pt"):
        with atomic_path(path) as tmp:
            torch.save(tensors, tmp)
    else:
        raise RtresnetError(f"cannot save weights as {path.name!r}; use a .safetensors, .pth or .pt file name")
    return path


# -------------------------------------------------------------------------------------------------- download


def download_weights(weights: NamedWeights, cache_dir: str | Path | None = None) -> Path:
    """Return the cached file of ``weights``, downloading it first (hash-checked, renamed into place when good)."""
    return _fetch(weights, cache_dir)[0]


def _fetch(weights: NamedWeights, cache_dir: str | Path | None = None) -> tuple[Path, str]:
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


# ------------------------------------------------------------------------------------------------------- load


def load_model(arch: str, *, weights: str | Path | None = None, num_classes: int | None = None,
               in_channels: int = 3, reset_head: bool = False, zero_init_residual: bool = False) -> LoadedModel:
    """Build ``arch`` and load ``weights`` strictly: a named torchvision weight ("IMAGENET1K_V2", "DEFAULT") or a
    checkpoint path. ``num_classes`` defaults to the checkpoint's; a different one needs ``reset_head=True``.
    A checkpoint with other input channels than ``in_channels`` has its first conv adapted."""
    spec = get_arch(arch)
    if num_classes is not None and num_classes < 1:
        raise RtresnetError(f"num_classes must be at least 1, got {num_classes}")
    if in_channels < 1:
        raise RtresnetError(f"in_channels must be at least 1, got {in_channels}")
    if weights is None:
        model = spec.build(num_classes or 1000, in_channels, zero_init_residual).eval()
        return LoadedModel(model, arch, num_classes or 1000, in_channels, None, None, None, ())

    named = _resolve_named(arch, weights)
    if named:
        path, sha = _fetch(named)
        state = load_state_dict(path)
    else:
        path = Path(weights)
        state = load_state_dict(path)  # checks the file exists before hashing it
        sha = sha256_file(path)
    ckpt_classes, ckpt_channels = _check_fits(spec, state, path)

    if ckpt_classes is None:  # a backbone saved without its classifier
        if num_classes is None or not reset_head:
            raise RtresnetError(f"{_source(named, path)} has no classifier head (fc); pass --num-classes N "
                                "--reset-head (num_classes=N, reset_head=True) to add a fresh one")
        log.warning("checkpoint has no classifier head; initializing a %d-class one", num_classes)
        head_reset = True
    elif num_classes is None or num_classes == ckpt_classes:
        num_classes, head_reset = ckpt_classes, False
    elif reset_head:
        log.warning("re-initializing the classifier head: checkpoint has %d classes, model gets %d",
                    ckpt_classes, num_classes)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        head_reset = True
    else:
        raise RtresnetError(f"{_source(named, path)} has a {ckpt_classes}-class head but num_classes={num_classes} "
                            f"was asked; pass --reset-head (reset_head=True) to re-initialize the classifier, or "
                            f"drop --num-classes")
    if in_channels != ckpt_channels:
        state["conv1.weight"] = adapt_input_conv(state["conv1.weight"], in_channels)
        log.warning("adapted conv1 from %d to %d input channels (%s)", ckpt_channels, in_channels,
                    "summed over the input channels" if in_channels == 1 else "repeated and rescaled")

    model = spec.build(num_classes, in_channels, zero_init_residual)
    result = model.load_state_dict(state, strict=not head_reset)
    if head_reset and (result.unexpected_keys or set(result.missing_keys) != {"fc.weight", "fc.bias"}):
        raise RtresnetError(f"unexpected keys while loading {path.name}: missing {result.missing_keys}, "
                            f"unexpected {result.unexpected_keys}")
    preprocessing = named.preprocessing if named and in_channels == 3 else None
    labels = imagenet_classes() if named and not head_reset else ()
    if named and in_channels != 3:
        log.info("named weights' ImageNet preprocessing dropped: it is defined for 3 channels, not %d", in_channels)
    return LoadedModel(model.eval(), arch, num_classes, in_channels, named.name if named else path.name, sha,
                       preprocessing, labels)


def _resolve_named(arch: str, weights: str | Path) -> NamedWeights | None:
    text = str(weights)
    if isinstance(weights, Path) or Path(text).exists() or not looks_like_weight_name(text):
        return None
    return find_named_weights(arch, text)  # its error lists what is available ("none") and suggests a file path


def _source(named: NamedWeights | None, path: Path) -> str:
    return f"{named.arch} {named.name}" if named else f"checkpoint {path.name}"


def _check_fits(spec: ArchSpec, state: Mapping[str, torch.Tensor], path: Path) -> tuple[int | None, int]:
    """Compare keys and shapes with ``spec`` (head and conv1 input channels are options, checked later).
    Returns the checkpoint's (classes, input channels); classes is None for a backbone without fc."""
    fc, conv1 = state.get("fc.weight"), state.get("conv1.weight")
    headless = "fc.weight" not in state and "fc.bias" not in state
    ckpt_classes = int(fc.shape[0]) if fc is not None and fc.dim() == 2 else 1000
    ckpt_channels = int(conv1.shape[1]) if conv1 is not None and conv1.dim() == 4 else 3
    with torch.device("meta"):  # shapes only: no memory, no init time
        expected = {k: tuple(v.shape) for k, v in spec.build(ckpt_classes, ckpt_channels).state_dict().items()}
    missing = [k for k in expected if k not in state and not (headless and k.startswith("fc."))]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
                  for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or mismatched):
        return None if headless else ckpt_classes, ckpt_channels
    shape = inspect_state_dict(state)
    if shape is None:
        likely = "it does not look like a ResNet state dict"
    elif shape.arch and shape.arch != spec.name:
        likely = f"it looks like {shape.describe()}: pass --arch {shape.arch}"
    else:
        likely = f"it looks like {shape.describe()}"
    parts = [f"{len(keys)} {label} ({_few(keys)})"
             for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched))
             if keys]
    report = "\n".join([f"checkpoint {path} vs {spec.name}:", *(f"  missing: {k}" for k in missing),
                        *(f"  unexpected: {k}" for k in unexpected), *(f"  shape: {m}" for m in mismatched)])
    log.debug("%s", report)
    raise CheckpointMismatchError(f"checkpoint {path.name} does not fit {spec.name}: {'; '.join(parts)}; {likely}",
                                  report)


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a first-conv kernel (out, C, kh, kw) to ``in_channels`` while keeping the response to a gray image:
    sum over C for one channel; otherwise repeat the channels and rescale by C / in_channels."""
    c = weight.shape[1]
    if in_channels == c:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // c)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (c / in_channels)
