"""The factory: an architecture from the registry, with named or checkpoint weights loaded strictly.

``create_model`` returns the module; ``load_model`` also returns what the weights say about it (classes, labels,
preprocessing, sha256). The registry imports nothing from here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.models.checkpoint import adapt_input_conv, check_finite_weights, check_fits, load_state_dict
from rtresnet.models.imagenet import imagenet_classes
from rtresnet.models.pretrained import NamedWeights, fetch, find_named_weights, looks_like_weight_name
from rtresnet.models.registry import get_arch
from rtresnet.spec import Preprocessing

log = logging.getLogger(__name__)


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


def create_model(arch: str, *, weights: str | None = None, num_classes: int | None = None,
                 in_channels: int = 3, zero_init_residual: bool = False, reset_head: bool = False) -> nn.Module:
    """Build ``arch`` in eval mode; with ``weights`` (a file path or a named weight such as IMAGENET1K_V2), load them
    strictly through ``load_model`` (which also returns labels and preprocessing).

    ``num_classes`` defaults to the checkpoint's head (1000 without weights).
    """
    if weights is None:
        return get_arch(arch).build(num_classes or 1000, in_channels, zero_init_residual).eval()
    return load_model(arch, weights=weights, num_classes=num_classes, in_channels=in_channels,
                      reset_head=reset_head, zero_init_residual=zero_init_residual).model


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
        path, sha = fetch(named)
        state = load_state_dict(path)
    else:
        path = Path(weights)
        state = load_state_dict(path)  # checks the file exists before hashing it
        sha = sha256_file(path)
    ckpt_classes, ckpt_channels = check_fits(spec, state, path)

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

    check_finite_weights(state, _source(named, path))  # after a head reset: a dropped fc does not matter
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
