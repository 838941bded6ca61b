"""Checkpoints: read state dicts safely, write them atomically, and say why one does not fit an architecture.

A checkpoint is untrusted input. ``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers, so a pickle that would run code is refused unrun.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path
from rtresnet.models.registry import ArchSpec, inspect_state_dict

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # where training scripts nest the weights
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers


class CheckpointMismatchError(RtresnetError):
    """A checkpoint that does not fit the architecture; ``report`` has the full key lists."""

    def __init__(self, message: str, report: str) -> None:
        super().__init__(message)
        self.report = report


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
    state = _strip_common_prefix(state, path)
    stripped = [k for k in obj if any(k.startswith(p) for p in _PREFIXES)]
    if stripped:
        log.info("stripped wrapper prefixes (module./_orig_mod.) from %d keys of %s", len(stripped), path.name)
    return state


def _strip_common_prefix(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Keys that all share the prefix before a ResNet's ``conv1.`` (Lightning's ``model.``, ``net.``, ``backbone.``)
    lose it; anything else is left for the fit check to explain."""
    if any(k.startswith("conv1.") for k in state):
        return state
    stem = next((k for k in state if k.endswith("conv1.weight") and ".layer" not in k and not k.startswith("layer")),
                None)
    prefix = stem[:-len("conv1.weight")] if stem else ""
    if not prefix or not all(k.startswith(prefix) for k in state):
        return state
    log.info("stripped the prefix %r shared by every key of %s", prefix, path.name)
    return {k[len(prefix):]: v for k, v in state.items()}


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


def check_fits(spec: ArchSpec, state: Mapping[str, torch.Tensor], path: Path) -> tuple[int | None, int]:
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


def check_finite_weights(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights a model cannot compute with: NaN or infinite values in any float tensor, or a negative
    BatchNorm ``running_var`` (its square root is NaN). A diverged training run saves such checkpoints, and every
    later stage would compare NaN logits with NaN logits, so the tensor is named here, before anything is built."""
    bad = []
    for key, value in state.items():
        if not value.is_floating_point():
            continue  # num_batches_tracked and other integer buffers
        nan, inf = int(value.isnan().sum()), int(value.isinf().sum())
        negative = int((value < 0).sum()) if key.endswith("running_var") else 0
        counts = [f"{n} {what} values" for n, what in ((nan, "NaN"), (inf, "infinite"), (negative, "negative"))
                  if n]
        if counts:
            bad.append(f"{key} has {' and '.join(counts)}")
    if bad:
        more = f" (and {len(bad) - 1} more tensors: {_few([b.split(' has ')[0] for b in bad[1:]])})" \
            if len(bad) > 1 else ""
        raise RtresnetError(f"weights: {bad[0]} in {source}{more}; a model with them computes NaN or infinite "
                            "logits: use an earlier checkpoint of the run, or find where training diverged")


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
