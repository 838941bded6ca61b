"""The architecture registry: a dict filled by a decorator that refuses duplicates (torchvision's size)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from rtresnet.errors import RtresnetError
from rtresnet.models.resnet import BasicBlock, Bottleneck, ResNet


@dataclass(frozen=True)
class ArchSpec:
    name: str
    block: type[BasicBlock | Bottleneck]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64

    def build(self, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
        return ResNet(self.block, list(self.layers), num_classes=num_classes, in_channels=in_channels,
                      zero_init_residual=zero_init_residual, groups=self.groups,
                      width_per_group=self.width_per_group)


_ARCHS: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.name in _ARCHS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _ARCHS[spec.name] = spec
    return spec


for _spec in (
    ArchSpec("resnet18", BasicBlock, (2, 2, 2, 2)),
    ArchSpec("resnet34", BasicBlock, (3, 4, 6, 3)),
    ArchSpec("resnet50", Bottleneck, (3, 4, 6, 3)),
    ArchSpec("resnet101", Bottleneck, (3, 4, 23, 3)),
    ArchSpec("resnet152", Bottleneck, (3, 8, 36, 3)),
    ArchSpec("resnext50_32x4d", Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4),
    ArchSpec("resnext101_32x8d", Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8),
    ArchSpec("resnext101_64x4d", Bottleneck, (3, 4, 23, 3), groups=64, width_per_group=4),
    ArchSpec("wide_resnet50_2", Bottleneck, (3, 4, 6, 3), width_per_group=128),
    ArchSpec("wide_resnet101_2", Bottleneck, (3, 4, 23, 3), width_per_group=128),
):
    register(_spec)


def list_models() -> list[str]:
    return sorted(_ARCHS)


def get_arch(name: str) -> ArchSpec:
    try:
        return _ARCHS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_ARCHS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RtresnetError(f"unknown architecture {name!r}{hint} (known: {', '.join(list_models())})") from None


def create_model(arch: str, *, weights: str | None = None, num_classes: int | None = None,
                 in_channels: int = 3, zero_init_residual: bool = False, reset_head: bool = False,
                 log: Callable[[str], Any] | None = None) -> nn.Module:
    """Build ``arch``; with ``weights`` (a file path or a named weight such as IMAGENET1K_V2), load them strictly.

    ``num_classes`` defaults to the checkpoint's head (1000 without weights). The model is returned in eval mode.
    """
    spec = get_arch(arch)
    if weights is None:
        return spec.build(num_classes or 1000, in_channels, zero_init_residual).eval()
    from rtresnet.weights import load_weights_into  # weights import torch.load machinery; only when asked

    return load_weights_into(spec, weights, num_classes=num_classes, in_channels=in_channels,
                             reset_head=reset_head, log=log).eval()
