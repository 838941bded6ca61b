"""PyTorch eager runner: the FP32 baseline every engine is compared with (CPU or CUDA)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from rtresnet.errors import RtresnetError
from rtresnet.runtime.base import InputSpec, Runner
from rtresnet.spec import ModelInfo

log = logging.getLogger(__name__)


class TorchRunner(Runner):
    """An ``nn.Module`` in eval mode behind the runner contract.

    Eager FP32 by default. On CUDA, ``fp16=True`` runs under ``torch.autocast(float16)`` and ``channels_last=True``
    converts the model and its inputs to channels-last memory (benchmark baselines). Calls are serialized on the
    runner's lock: autocast state and the CUDA stream are per thread, and one model at a time keeps results exact.
    """

    backend = "torch"

    def __init__(self, model: torch.nn.Module, info: ModelInfo, *, device: str | None = None, fp16: bool = False,
                 channels_last: bool = False, check_finite: bool = False, max_batch: int | None = None) -> None:
        device = device or "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise RtresnetError(f"bad device {device!r}; use cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RtresnetError("device cuda was asked for but PyTorch sees no CUDA GPU; run with --device cpu")
        if dev.type not in ("cpu", "cuda"):
            raise RtresnetError(f"the torch backend runs on cpu or cuda, not {dev.type}")
        if fp16 and dev.type != "cuda":
            raise RtresnetError("fp16 autocast is for CUDA; the CPU baseline is FP32 (drop --fp16 or use cuda)")
        if info.input_format != "float-nchw":
            raise RtresnetError(f"the torch baseline takes float NCHW input, not {info.input_format}")
        spec = InputSpec("input", (info.in_channels, *info.input_size), "float32", "NCHW")
        super().__init__(info, spec, num_classes=info.num_classes, device=str(dev), check_finite=check_finite,
                         max_batch=max_batch)
        self._dev = dev
        self._fp16 = fp16
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(dev, memory_format=self._memory_format)

    def _run(self, x: Any) -> Any:
        # from_numpy warns on read-only arrays (datasets hand out read-only views); copy only those
        t = (torch.from_numpy(x if x.flags.writeable else x.copy()) if isinstance(x, np.ndarray) else x)
        t = t.to(self._dev, memory_format=self._memory_format, non_blocking=True)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self._fp16):
            y = self.model(t)
        return y.float()

    def _release(self) -> None:
        self.model = None  # type: ignore[assignment]
