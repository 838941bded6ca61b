"""``load``: one entry point from an artifact (or an arch name) to the right runner.

    .engine / .plan / .trt + sidecar   -> TensorRT runner (a sidecar naming onnxruntime -> onnxruntime runner)
    .onnx with a sidecar                -> onnxruntime runner on the onnxruntime engine (sidecar: spec, profile)
    .blob + sidecar                     -> OpenVINO runner on the compiled blob
    .onnx                               -> onnxruntime runner on the exported model (ONNX metadata: spec);
                                           backend="openvino": OpenVINO compiles it on load
    arch name ("resnet50")              -> PyTorch baseline (weights=..., num_classes=..., input_size=...)
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtresnet.backends import RUNTIMES, engine_runner
from rtresnet.errors import RtresnetError, UsageError
from rtresnet.fileutil import check_input_file
from rtresnet.runtime.base import Runner
from rtresnet.sidecar import read_sidecar, sidecar_path
from rtresnet.spec import ModelInfo, Preprocessing, resolve_preprocessing

if TYPE_CHECKING:
    from rtresnet.models.factory import LoadedModel

log = logging.getLogger(__name__)

BACKENDS = RUNTIMES  # load(backend=...): the runtimes of rtresnet.backends
TRT_SUFFIXES = (".engine", ".plan", ".trt")
SIDECAR_SUFFIXES = (*TRT_SUFFIXES, ".blob")  # engine files that mean nothing without their sidecar


def _construct(cls: type[Runner], *args: Any, factory: Any = None, **options: Any) -> Runner:
    """Build ``cls`` (through ``factory``, default the class itself) after checking ``options`` against its
    signature, so a typo is a clear error."""
    accepted = [n for n, p in inspect.signature(cls.__init__).parameters.items() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        shown = ", ".join(n for n in accepted if n not in ("device", "profile"))
        raise RtresnetError(f"the {cls.backend} runner has no option {', '.join(unknown)} (options: {shown})")
    return (factory or cls)(*args, **options)


def is_arch_name(name: str | Path) -> bool:
    """Whether ``name`` is meant as an arch name ("resnet50"): those have neither dots nor slashes; paths do."""
    p = Path(name)
    return not (p.suffix or len(p.parts) > 1)


def load(path_or_arch: str | Path, *, backend: str | None = None, device: str | None = None,
         **options: Any) -> Runner:
    """Load a runner for a TensorRT plan, an ONNX model / onnxruntime engine, or an arch name (PyTorch baseline).

    ``backend`` (torch | onnxruntime | openvino | tensorrt) is inferred from the artifact when omitted; asking for
    one the artifact cannot run is an error, never a silent switch. ``options`` go to the runner: ``threads``,
    ``optimization``, ``providers``, ``spinning`` (onnxruntime), ``inference_precision`` (openvino), ``cuda_graph``
    (TensorRT), ``weights``, ``num_classes``, ``in_channels``, ``input_size``, ``fp16``, ``channels_last`` (torch), and
    ``check_finite``, ``max_batch`` (all).

    Example::

        with load("engines/resnet18.onnx", threads=2) as runner:
            print(runner.predict(["cat.jpg"], topk=3))
    """
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    target = Path(path_or_arch)
    if target.is_file():
        return _load_file(target, backend, device, options)
    if target.is_dir():
        raise RtresnetError(f"{target} is a folder; give a model file (.onnx, or an engine with its sidecar)")
    if os.path.lexists(target) or not is_arch_name(target):
        check_input_file(target, "model file")  # says what it is: missing, a broken link, a loop, a FIFO...
        raise RtresnetError(f"model file not found: {target}")  # only if it vanished meanwhile
    if backend not in (None, "torch"):
        raise RtresnetError(f"{path_or_arch!r} is not a file; an arch name runs on the torch backend, the "
                            f"{backend} backend needs an exported ONNX or a built engine")
    return load_torch(str(path_or_arch), device=device, **options)


def _load_file(path: Path, backend: str | None, device: str | None, options: dict[str, Any]) -> Runner:
    if sidecar_path(path).is_file() or path.suffix.lower() in SIDECAR_SUFFIXES:
        # The engine's sha256 is checked once: by TensorRT's load guard, or here for onnxruntime engines.
        sidecar = read_sidecar(path, verify_hash=False)
        if backend not in (None, sidecar.backend):
            raise RtresnetError(f"{path} is an engine for {sidecar.backend}, not {backend}; load it with backend "
                                f"{sidecar.backend} (or leave the backend out)")
        runner = engine_runner(sidecar.backend)  # the vocabulary says which runner loads this backend's engines
        from rtresnet.engine.select import runner_defaults

        # `--backend auto` measured these settings fastest on this machine: the defaults, the caller's options win
        options = {**runner_defaults(sidecar.selection), **options}
        return _construct(runner, path, sidecar, factory=runner.from_engine, device=device, **options)
    if path.suffix.lower() != ".onnx":
        raise RtresnetError(f"{path} is neither an ONNX model (.onnx) nor an engine with a sidecar "
                            f"(.engine/.plan + .json)")
    if backend == "tensorrt":
        raise RtresnetError(f"{path} is an ONNX model; build a TensorRT engine from it first: "
                            f"rtresnet build {path} --backend tensorrt")
    if backend == "torch":
        raise RtresnetError("the torch backend loads an arch name with --weights, not an ONNX file")
    from rtresnet.spec import read_model_info

    runner = engine_runner(backend or "onnxruntime")
    return _construct(runner, path, read_model_info(path), device=device, **options)


def load_torch(arch: str, *, weights: str | Path | None = None, num_classes: int | None = None,
               in_channels: int = 3, input_size: int | Sequence[int] | None = None,
               preprocessing: Preprocessing | None = None, labels: Sequence[str] | None = None,
               device: str | None = None, **options: Any) -> Runner:
    """The PyTorch baseline for ``arch`` + ``weights``, with the weights' own preprocessing when they carry one."""
    from rtresnet.models.factory import load_model
    from rtresnet.runtime.torch_runner import TorchRunner

    loaded = load_model(arch, weights=None if weights is None else str(weights), num_classes=num_classes,
                        in_channels=in_channels)
    info = baseline_info(loaded, input_size, preprocessing, labels)
    return _construct(TorchRunner, loaded.model, info, device=device, **options)


def baseline_info(loaded: LoadedModel, input_size: int | Sequence[int] | None = None,
                  preprocessing: Preprocessing | None = None, labels: Sequence[str] | None = None) -> ModelInfo:
    """The ``ModelInfo`` of a PyTorch model loaded from weights: input size (default: the weights' crop, else 224)
    and preprocessing by ``resolve_preprocessing``. Bench describes the model its backends are made from with it."""
    from rtresnet import __version__

    if input_size is None:
        size = loaded.preprocessing.crop if loaded.preprocessing else (224, 224)
    else:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
        if len(size) != 2:
            raise RtresnetError(f"input_size takes one or two integers (H, W), got {input_size}")
    preprocessing = resolve_preprocessing(preprocessing, loaded.preprocessing, loaded.in_channels, size)
    return ModelInfo(arch=loaded.arch, num_classes=loaded.num_classes, in_channels=loaded.in_channels,
                     input_size=size, preprocessing=preprocessing, weights=loaded.weights,
                     weights_sha256=loaded.weights_sha256, labels=tuple(labels or loaded.labels),
                     rtresnet_version=__version__)
