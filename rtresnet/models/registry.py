"""The architecture registry: a dict filled by a decorator that refuses duplicates (torchvision's size)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rtresnet.errors import UsageError

if TYPE_CHECKING:  # torch loads only when a model is built: `rtresnet models` needs none

    from rtresnet.models.resnet import ResNet


@dataclass(frozen=True)
class ArchSpec:
    name: str
    block: Literal["BasicBlock", "Bottleneck"]  # the class name in rtresnet.models.resnet
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64

    @property
    def expansion(self) -> int:
        """Output channels of a block per planes (the block class's ``expansion``; a test keeps them equal)."""
        return 4 if self.block == "Bottleneck" else 1

    def build(self, num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False) -> ResNet:
        from rtresnet.models import resnet

        return resnet.ResNet(getattr(resnet, self.block), list(self.layers), num_classes=num_classes,
                             in_channels=in_channels, zero_init_residual=zero_init_residual, groups=self.groups,
                             width_per_group=self.width_per_group)


_ARCHS: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.name in _ARCHS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _ARCHS[spec.name] = spec
    return spec


for _spec in (
    ArchSpec("resnet18", "BasicBlock", (2, 2, 2, 2)),
    ArchSpec("resnet34", "BasicBlock", (3, 4, 6, 3)),
    ArchSpec("resnet50", "Bottleneck", (3, 4, 6, 3)),
    ArchSpec("resnet101", "Bottleneck", (3, 4, 23, 3)),
    ArchSpec("resnet152", "Bottleneck", (3, 8, 36, 3)),
    ArchSpec("resnext50_32x4d", "Bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4),
    ArchSpec("resnext101_32x8d", "Bottleneck", (3, 4, 23, 3), groups=32, width_per_group=8),
    ArchSpec("resnext101_64x4d", "Bottleneck", (3, 4, 23, 3), groups=64, width_per_group=4),
    ArchSpec("wide_resnet50_2", "Bottleneck", (3, 4, 6, 3), width_per_group=128),
    ArchSpec("wide_resnet101_2", "Bottleneck", (3, 4, 23, 3), width_per_group=128),
):
    register(_spec)


def list_models() -> list[str]:
    """Registered archs in zoo order (ResNets by depth, then ResNeXt, then wide)."""
    return list(_ARCHS)


def get_arch(name: str) -> ArchSpec:
    try:
        return _ARCHS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_ARCHS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown architecture {name!r}{hint} (known: {', '.join(list_models())})") from None


@dataclass(frozen=True)
class StateDictShape:
    """What a ResNet state dict's tensor shapes say about the network that produced it."""

    block: str  # "BasicBlock" | "Bottleneck"
    layers: tuple[int, ...]  # blocks per stage
    groups: int
    width_per_group: int
    in_channels: int | None
    num_classes: int | None
    deep_stem: bool = False  # three 3x3 stem convs (timm's resnet*d, "ResNet-D"): not a torchvision ResNet


    @property
    def arch(self) -> str | None:
        """The registered arch with this structure (the head and input channels are options, not identity)."""
        if self.deep_stem:
            return None
        for spec in _ARCHS.values():
            if (spec.block, spec.layers, spec.groups, spec.width_per_group) == (
                    self.block, self.layers, self.groups, self.width_per_group):
                return spec.name
        return None

    def describe(self) -> str:
        layers = "-".join(map(str, self.layers))
        what = f"{self.block} blocks {layers}"
        if self.block == "Bottleneck":
            what += f", groups {self.groups}, width/group {self.width_per_group}"
        if self.deep_stem:
            return (f"a ResNet with a deep stem ({what}; three 3x3 stem convs, as timm's resnet*d): rtresnet's zoo "
                    f"has torchvision's single 7x7 stem only")
        name = self.arch or "an unregistered ResNet variant"
        facts = [what] + [f"{n} {label}" for n, label in ((self.num_classes, "classes"),
                                                         (self.in_channels, "input channels")) if n is not None]
        return f"{name} ({', '.join(facts)})"


def inspect_state_dict(state_dict: Mapping[str, Any]) -> StateDictShape | None:
    """Infer the architecture from shapes: block type, blocks per stage, bottleneck width; None if not a ResNet."""
    layers = []
    for stage in range(1, 5):
        indices = {int(k.split(".")[1]) for k in state_dict
                   if k.startswith(f"layer{stage}.") and k.split(".")[1].isdigit()}
        if not indices:
            return None
        layers.append(max(indices) + 1)
    groups, width_per_group = 1, 64
    bottleneck = "layer1.0.conv3.weight" in state_dict
    if bottleneck:
        try:
            width = state_dict["layer1.0.conv1.weight"].shape[0]
            per_group = state_dict["layer1.0.conv2.weight"].shape[1]
        except (KeyError, AttributeError, IndexError):
            return None
        # Bottleneck width of stage 1 is width_per_group * groups; the 3x3 conv sees width / groups inputs.
        groups, width_per_group = width // per_group, per_group
    conv1, fc = state_dict.get("conv1.weight", state_dict.get("conv1.0.weight")), state_dict.get("fc.weight")
    return StateDictShape(block="Bottleneck" if bottleneck else "BasicBlock", layers=tuple(layers), groups=groups,
                          width_per_group=width_per_group,
                          in_channels=int(conv1.shape[1]) if conv1 is not None and len(conv1.shape) == 4 else None,
                          num_classes=int(fc.shape[0]) if fc is not None and len(fc.shape) == 2 else None,
                          deep_stem="conv1.0.weight" in state_dict)
