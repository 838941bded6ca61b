"""Model zoo: torchvision-compatible ResNets, a registry, their weights (checkpoints, the published catalog and its
download, a factory that loads them), and parameter/MAC counters.

Modules that need torch (``resnet``, ``checkpoint``, ``factory``) load on first use only, so listing the zoo stays
instant. The registry imports nothing from the factory or the checkpoint code.
"""

from __future__ import annotations

import importlib
from typing import Any

from rtresnet.models.pretrained import NamedWeights, default_weights, find_named_weights, named_weights
from rtresnet.models.profile import ModelSummary, count_arch, count_macs, count_params, summarize_models
from rtresnet.models.registry import ArchSpec, StateDictShape, get_arch, inspect_state_dict, list_models

_LAZY = {"BasicBlock": "resnet", "Bottleneck": "resnet", "ResNet": "resnet", "create_model": "factory",
         "load_model": "factory", "LoadedModel": "factory", "load_state_dict": "checkpoint",
         "save_state_dict": "checkpoint"}

__all__ = ["ArchSpec", "BasicBlock", "Bottleneck", "LoadedModel", "ModelSummary", "NamedWeights", "ResNet",
           "StateDictShape", "count_arch", "count_macs", "count_params", "create_model", "default_weights",
           "find_named_weights", "get_arch", "inspect_state_dict", "list_models", "load_model", "load_state_dict",
           "named_weights", "save_state_dict", "summarize_models"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"rtresnet.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rtresnet.models' has no attribute {name!r}")
