"""Model zoo: torchvision-compatible ResNets, a registry, published weights, and parameter/MAC counters."""

from rtresnet.models.pretrained import NamedWeights, default_weights, find_named_weights, named_weights
from rtresnet.models.profile import ModelSummary, count_arch, count_macs, count_params, summarize_models
from rtresnet.models.registry import ArchSpec, StateDictShape, create_model, get_arch, inspect_state_dict, list_models
from rtresnet.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["ArchSpec", "BasicBlock", "Bottleneck", "ModelSummary", "NamedWeights", "ResNet", "StateDictShape",
           "count_arch", "count_macs", "count_params", "create_model", "default_weights", "find_named_weights",
           "get_arch", "inspect_state_dict", "list_models", "named_weights", "summarize_models"]
