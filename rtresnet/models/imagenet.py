"""The ImageNet-1K class names and WordNet IDs (the labels of the named weights), read from rtresnet/data/*.txt."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from rtresnet.errors import RtresnetError


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
    text = resources.files("rtresnet.data").joinpath(file_name).read_text(encoding="utf-8")
    items = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(items) != 1000:
        raise RtresnetError(f"packaged {file_name} has {len(items)} {what}, expected 1000; reinstall rtresnet")
    return items
