"""Count parameters and multiply-accumulates two ways that tests hold equal: by running a built model once
with hooks (``count_macs``), and from an arch's layer arithmetic without building it (``count_arch``, instant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rtresnet.models.pretrained import NamedWeights, named_weights
from rtresnet.models.registry import get_arch, list_models

if TYPE_CHECKING:  # torch only where a built model is counted; count_arch and summarize_models need none
    import torch
    from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int] = (224, 224), in_channels: int | None = None) -> int:
    """MACs of convolutions and linear layers for one image (the convention of torchvision's GFLOPS column)."""
    import torch
    from torch import nn

    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    if in_channels is None:
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        in_channels = first.in_channels
    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    device = next(model.parameters()).device
    # On the meta device only shapes flow. Batch norm there runs as a slow Python decomposition; it keeps the
    # shape and adds no MACs in this convention, so it is skipped for the count.
    bypassed = [m for m in model.modules() if device.type == "meta" and isinstance(m, nn.BatchNorm2d)]
    for m in bypassed:
        m.forward = _identity  # type: ignore[method-assign]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, in_channels, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        for m in bypassed:
            del m.forward
    return total


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def count_arch(arch: str, input_size: tuple[int, int] = (224, 224), num_classes: int = 1000,
               in_channels: int = 3) -> tuple[int, int]:
    """(parameters, MACs) of a registered arch from its layer arithmetic, without building it (microseconds).

    It walks the same construction as ``ResNet.__init__``; tests check it against ``count_params`` and the
    hook-based ``count_macs`` of built models for every arch.
    """
    from rtresnet.spec import check_range

    spec = get_arch(arch)
    for what, value in (("input size", input_size[0]), ("input size", input_size[1]),
                        ("num classes", num_classes), ("in channels", in_channels)):
        check_range(what, value)
    params = macs = 0
    h, w = input_size

    def conv(cin: int, cout: int, k: int, stride: int, pad: int, groups: int = 1) -> None:
        nonlocal params, macs, h, w
        h, w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        weights = cout * (cin // groups) * k * k
        params += weights + 2 * cout  # the conv, then its batch norm's weight and bias
        macs += weights * h * w

    conv(in_channels, 64, 7, 2, 3)
    h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1  # max pool 3x3, stride 2, padding 1
    inplanes, expansion = 64, spec.expansion
    for stage, blocks in enumerate(spec.layers):
        planes = 64 * 2**stage
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            h_in, w_in = h, w
            if spec.expansion == 1:
                conv(inplanes, planes, 3, stride, 1)
                conv(planes, planes, 3, 1, 1)
            else:
                width = int(planes * (spec.width_per_group / 64.0)) * spec.groups
                conv(inplanes, width, 1, 1, 0)
                conv(width, width, 3, stride, 1, spec.groups)
                conv(width, planes * expansion, 1, 1, 0)
            if i == 0 and (stride != 1 or inplanes != planes * expansion):
                h_out, w_out, (h, w) = h, w, (h_in, w_in)
                conv(inplanes, planes * expansion, 1, stride, 0)  # projection shortcut
                h, w = h_out, w_out
            inplanes = planes * expansion
    params += inplanes * num_classes + num_classes
    macs += inplanes * num_classes
    return params, macs


@dataclass(frozen=True)
class ModelSummary:
    """One row of `rtresnet models`: counted size and compute, and the published weights."""

    arch: str
    params: int
    macs: int  # per image at input_size
    input_size: tuple[int, int]
    weights: tuple[NamedWeights, ...]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict:
        return {"arch": self.arch, "params": self.params, "macs": self.macs, "gmacs": round(self.gmacs, 3),
                "input_size": list(self.input_size),
                "weights": [{"name": w.name, "top1_pct": w.top1_pct, "top5_pct": w.top5_pct, "url": w.url,
                             "sha256_prefix": w.sha256_prefix, "preprocessing": w.preprocessing.to_dict()}
                            for w in self.weights]}


def summarize_models(input_size: tuple[int, int] = (224, 224)) -> list[ModelSummary]:
    """Every registered arch with its parameter and MAC counts (counted on the meta device, so fast)."""
    rows = []
    for arch in list_models():
        params, macs = count_arch(arch, input_size)
        rows.append(ModelSummary(arch, params, macs, tuple(input_size), named_weights(arch)))  # type: ignore[arg-type]
    return rows
