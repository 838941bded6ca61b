"""Model zoo: torchvision-compatible ResNets, a registry, and a MAC counter."""

from rtresnet.models.profile import count_macs, count_params
from rtresnet.models.registry import ArchSpec, create_model, get_arch, list_models
from rtresnet.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["ArchSpec", "BasicBlock", "Bottleneck", "ResNet", "count_macs", "count_params", "create_model",
           "get_arch", "list_models"]
