"""Model zoo: torchvision-compatible ResNets, a registry, published weights, and parameter/MAC counters.

The modules (``rtresnet.models.resnet``) load torch on first use only, so listing the zoo stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

from rtresnet.models.pretrained import NamedWeights, default_weights, find_named_weights, named_weights
from rtresnet.models.profile import ModelSummary, count_arch, count_macs, count_params, summarize_models
from rtresnet.models.registry import ArchSpec, StateDictShape, create_model, get_arch, inspect_state_dict, list_models

_TORCH_MODULES = ("BasicBlock", "Bottleneck", "ResNet")

__all__ = ["ArchSpec", "BasicBlock", "Bottleneck", "ModelSummary", "NamedWeights", "ResNet", "StateDictShape",
           "count_arch", "count_macs", "count_params", "create_model", "default_weights", "find_named_weights",
           "get_arch", "inspect_state_dict", "list_models", "named_weights", "summarize_models"]


def __getattr__(name: str) -> Any:
    if name in _TORCH_MODULES:
        return getattr(importlib.import_module("rtresnet.models.resnet"), name)
    raise AttributeError(f"module 'rtresnet.models' has no attribute {name!r}")
