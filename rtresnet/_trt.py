"""The one helper module of the TensorRT family: importing ``tensorrt`` and the process-wide TensorRT logger.

TensorRT keeps a single logger pointer per process: the first Builder, OnnxParser or Runtime registers its logger,
later ones reuse that pointer. A second logger object freed while an earlier TensorRT object still lives is a
use-after-free (NVIDIA/TensorRT#1475), so every builder, parser and runtime here shares ``logger()``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from rtresnet.errors import RtresnetError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_logger: Any = None


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a one-line error saying how to get it (or what to use instead)."""
    try:
        import tensorrt
    except ImportError as e:
        # a missing package and a package whose libraries (libnvinfer) fail to load need different fixes
        what = "is not installed" if getattr(e, "name", None) == "tensorrt" else f"cannot be imported ({e})"
        raise RtresnetError(f"TensorRT {what}; install it on a machine with an NVIDIA GPU with "
                            f"`pip install 'rtresnet[gpu]'` or use an onnxruntime engine "
                            f"(`rtresnet build --backend onnxruntime`)") from None
    return tensorrt


def logger() -> Any:
    """The process-wide TensorRT logger (made on first use, then shared): TensorRT's messages go to Python
    logging, warnings visible, info and verbose only with --debug."""
    global _logger
    if _logger is None:
        with _lock:
            if _logger is None:  # another thread may have made it while this one waited
                _logger = _make_logger(import_tensorrt())
    return _logger


def _make_logger(trt: Any) -> Any:
    severity = trt.ILogger.Severity
    levels = {severity.INTERNAL_ERROR: logging.ERROR, severity.ERROR: logging.ERROR,
              severity.WARNING: logging.WARNING, severity.INFO: logging.DEBUG, severity.VERBOSE: logging.DEBUG}

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev, msg) -> None:
            log.log(levels.get(sev, logging.DEBUG), "TensorRT: %s", msg)

    return Logger()
