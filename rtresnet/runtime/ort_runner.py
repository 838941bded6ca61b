"""onnxruntime runner: an exported ONNX or an onnxruntime engine, on CPU, CUDA or onnxruntime's TensorRT EP."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.runtime.base import InputSpec, Runner
from rtresnet.spec import ModelInfo, TensorSpec

log = logging.getLogger(__name__)

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(double)": "float64"}
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# onnxruntime's worker threads spin for a while before sleeping, also after a run returns; in a process that runs
# several models in turn (a perception stack) they then hold the cores the next model needs, doubling its latency
# (benchmarks/interleaved.py). ``spinning`` picks a mode; the default spins while a run lasts (between its parallel
# sections, where it pays) and stops when the run returns ("session.force_spinning_stop"): as fast as "always" alone,
# as harmless as "never" interleaved, whatever else the process runs (torch, OpenVINO, other sessions).
SPIN_MODES = {  # mode -> onnxruntime session config entries
    "always": {"session.intra_op.allow_spinning": "1", "session.inter_op.allow_spinning": "1",
               "session.force_spinning_stop": "0"},  # onnxruntime's own default
    "never": {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0",
              "session.force_spinning_stop": "0"},
    "during-run": {"session.intra_op.allow_spinning": "1", "session.inter_op.allow_spinning": "1",
                   "session.force_spinning_stop": "1"},
}


def spin_mode(spinning: bool | None) -> str:
    """The ``SPIN_MODES`` key for the runner option ``spinning``: True "always", False "never", None (default)
    "during-run"."""
    if spinning is not None and not isinstance(spinning, bool):
        raise RtresnetError(f"spinning takes True (always), False (never) or None (rtresnet's default: spin while a "
                            f"run lasts, stop when it returns), got {spinning!r}")
    return "during-run" if spinning is None else "always" if spinning else "never"


def _device_id(device: str) -> int:
    _, _, index = device.partition(":")
    try:
        return int(index) if index else 0
    except ValueError:
        raise RtresnetError(f"bad device {device!r}; use cpu, cuda, cuda:N or tensorrt:N") from None


def providers_for(device: str, tensorrt_options: dict[str, Any] | None = None) -> list[Any]:
    """onnxruntime providers for ``device``: cpu, cuda[:N] or tensorrt[:N] (onnxruntime's TensorRT EP, configured
    with ``tensorrt_options`` from ``tensorrt_ep_options``)."""
    kind = device.split(":")[0]
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    opts = {"device_id": _device_id(device)}
    if kind == "cuda":
        return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]
    if kind == "tensorrt":
        return [("TensorrtExecutionProvider", {**opts, **(tensorrt_options or {})}), ("CUDAExecutionProvider", opts),
                "CPUExecutionProvider"]
    raise RtresnetError(f"onnxruntime cannot run on device {device!r}; use cpu, cuda[:N] or tensorrt[:N]")


def tensorrt_ep_options(info: ModelInfo, quantization: dict[str, str], *, input_name: str, min_batch: int,
                        max_batch: int, cache_dir: Path) -> dict[str, Any]:
    """TensorRT EP options for a model: precision flags from its rtresnet metadata (``quantization`` holds the
    ``rtresnet_quantization.*`` settings: target, method, high_precision), an engine cache (the EP otherwise builds
    its engine again in every process) and an explicit profile over the runner's batch range (the EP otherwise
    rebuilds its engine each time a larger batch arrives)."""
    int8 = info.precision == "int8"
    if int8 and quantization.get("target") == "cpu":
        raise RtresnetError("this INT8 model was quantized for the CPU (UINT8 asymmetric activations, which TensorRT "
                            "misreads); quantize the FP32 model again with `--target tensorrt` for the TensorRT EP, "
                            "or run this one with --device cpu")

    def shape(batch: int) -> str:
        return f"{input_name}:" + "x".join(str(d) for d in info.input_shape(batch))

    options: dict[str, Any] = {
        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
        "trt_profile_min_shapes": shape(min_batch), "trt_profile_opt_shapes": shape(max_batch),
        "trt_profile_max_shapes": shape(max_batch)}
    # the float remainder of a Q/DQ graph runs in FP16 when it was quantized that way (ModelOpt's default)
    if info.precision == "fp16" or (int8 and quantization.get("high_precision") == "fp16"):
        options["trt_fp16_enable"] = True
    if int8:
        options["trt_int8_enable"] = True  # scales come from the Q/DQ nodes: no calibration table
    return options


def tensorrt_cache_dir(model_path: Path) -> Path:
    """Where the TensorRT EP keeps its engines: a folder beside the model, or under $RTRESNET_HOME when the model's
    folder is read-only (the EP names engine files by a hash of the graph, so models never share one)."""
    if os.access(model_path.parent, os.W_OK):
        return model_path.parent / f"{model_path.stem}.trt-cache"
    from rtresnet.environment import rtresnet_home

    return rtresnet_home() / "ort-trt-cache"


def _tensorrt_setup(path: Path, info: ModelInfo, profile: dict | None,
                    max_batch: int | None) -> tuple[dict[str, Any], tuple[int, int]]:
    """TensorRT EP options for the ONNX at ``path`` and the batch range of their profile (min, max)."""
    import onnx

    from rtresnet.engine.request import DEFAULT_MAX_BATCH
    from rtresnet.spec import QUANT_META_PREFIX, graph_io

    model = onnx.load(str(path), load_external_data=False)
    quantization = {p.key[len(QUANT_META_PREFIX):]: p.value for p in model.metadata_props
                    if p.key.startswith(QUANT_META_PREFIX)}
    first = graph_io(model.graph)[0][0]
    batch = first.shape[0]
    lo, hi = (batch, batch) if isinstance(batch, int) else (1, None)
    if profile:
        lo, hi = max(lo, int(profile.get("min_batch", lo))), profile.get("max_batch", hi)
    hi = int(hi or max_batch or info.max_batch or DEFAULT_MAX_BATCH)
    cache_dir = tensorrt_cache_dir(path)
    options = tensorrt_ep_options(info, quantization, input_name=first.name, min_batch=lo, max_batch=hi,
                                  cache_dir=cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return options, (lo, hi)


def _provider_name(p: Any) -> str:
    return p[0] if isinstance(p, tuple) else p


def _provider_device_id(p: Any) -> int:
    return int(p[1].get("device_id", 0)) if isinstance(p, tuple) and len(p) > 1 else 0


class OrtRunner(Runner):
    """onnxruntime ``InferenceSession`` behind the runner contract.

    On CPU, ``InferenceSession.run`` is thread-safe, so concurrent ``infer`` calls run in parallel. On CUDA and the
    TensorRT EP, torch CUDA tensors are bound in place with IO binding (zero-copy) and calls are serialized.
    ``spinning`` (True, False, None) picks how onnxruntime's worker threads wait (``SPIN_MODES``); ``self.spinning``
    names the mode that ran.
    """

    backend = "onnxruntime"

    @classmethod
    def from_engine(cls, path: str | Path, sidecar, *, device: str | None = None, **options) -> OrtRunner:
        """The loader's entry point for an onnxruntime engine with its sidecar: hash verified, and run on the
        providers it was optimized for unless told otherwise (its fused kernels belong to them)."""
        from rtresnet.sidecar import verify_engine

        verify_engine(Path(path), sidecar)
        if device is None and "providers" not in options and sidecar.execution_providers:
            options = {**options, "providers": list(sidecar.execution_providers)}
        runner = cls(path, sidecar.model, device=device, profile=sidecar.profile, **options)
        return runner._matching_sidecar(sidecar, path)

    def _io_specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """The session's own inputs and outputs, in the sidecar's terms."""
        def spec(arg) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else "?" for d in arg.shape)
            return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type))

        return (tuple(spec(a) for a in self._session.get_inputs()),
                tuple(spec(a) for a in self._session.get_outputs()))

    def __init__(self, path: str | Path, info: ModelInfo, *, device: str | None = None,
                 providers: list[Any] | None = None, threads: int | None = None, optimization: str = "all",
                 profile: dict | None = None, check_finite: bool = False, max_batch: int | None = None,
                 spinning: bool | None = None) -> None:
        import onnxruntime as ort

        if optimization not in OPTIMIZATION_LEVELS:
            raise RtresnetError(f"unknown optimization level {optimization!r}; use one of "
                                f"{', '.join(OPTIMIZATION_LEVELS)}")
        if threads is not None and threads < 0:
            raise RtresnetError(f"threads must be >= 0 (0 = onnxruntime's default), got {threads}")
        trt_range = None  # the TensorRT EP's profile: batches beyond it are split, never rebuilt for
        if providers is None:
            trt_options = None
            if (device or "cpu").split(":")[0] == "tensorrt":
                trt_options, trt_range = _tensorrt_setup(Path(path), info, profile, max_batch)
            providers = providers_for(device or "cpu", trt_options)
        available = ort.get_available_providers()
        missing = [_provider_name(p) for p in providers if _provider_name(p) not in available]
        if missing:
            raise RtresnetError(f"onnxruntime here lacks {', '.join(missing)} (available: {', '.join(available)}); "
                                f"install onnxruntime-gpu for CUDA/TensorRT or run with --device cpu")
        main = _provider_name(providers[0])
        gpu = main in _GPU_PROVIDERS
        device_id = _provider_device_id(providers[0]) if gpu else 0
        # the torch device of the session's memory ("tensorrt:1" -> "cuda:1"), whatever device/providers said
        device = f"cuda:{device_id}" if gpu else "cpu"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one graph branch at a time: ResNets are a chain, spare cores go intra-op
        opts.log_severity_level = 3
        self.spinning = spin_mode(spinning)  # recorded by bench and sidecars: which SPIN_MODES entry ran
        for key, value in SPIN_MODES[self.spinning].items():
            opts.add_session_config_entry(key, value)
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
            raise RtresnetError(f"onnxruntime cannot load {path}: "
                                f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None
        if session.get_providers()[0] != main:
            raise RtresnetError(f"onnxruntime could not start {main} (it fell back to {session.get_providers()[0]}); "
                                f"check the CUDA/TensorRT libraries or run with --device cpu")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RtresnetError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; rtresnet runs "
                                f"classifiers with one input and one output")
        dtype = _ORT_DTYPES.get(inputs[0].type)
        if dtype is None:
            raise RtresnetError(f"{path} takes {inputs[0].type}, which rtresnet cannot feed")
        batch_dim, *sample = inputs[0].shape
        if not all(isinstance(d, int) for d in sample):
            raise RtresnetError(f"{path} has dynamic image dimensions {inputs[0].shape}; export with a fixed size")
        lo, hi = (batch_dim, batch_dim) if isinstance(batch_dim, int) else (1, None)
        if profile:
            lo, hi = max(lo, int(profile.get("min_batch", lo))), profile.get("max_batch", hi)
        lo, hi = trt_range or (lo, hi)
        spec = InputSpec(inputs[0].name, tuple(sample), dtype, "NCHW" if info.input_format == "float-nchw" else "NHWC",
                         lo, None if hi is None else int(hi))
        num_classes = outputs[0].shape[-1] if isinstance(outputs[0].shape[-1], int) else info.num_classes
        super().__init__(info, spec, num_classes=num_classes, device=device, check_finite=check_finite,
                         max_batch=max_batch)
        self.path = Path(path)
        self.providers = tuple(session.get_providers())
        self._session = session
        self._in, self._out = inputs[0].name, outputs[0].name
        self._out_names = [self._out]
        self._out_dtype = _ORT_DTYPES.get(outputs[0].type, "float32")
        self._gpu, self._device_id = gpu, device_id
        self._binding = session.io_binding() if gpu else None
        # session.run is thread-safe; a shared IO binding is not
        self.concurrent = not gpu
        log.debug("onnxruntime session on %s for %s", ", ".join(self.providers), path)

    def _run(self, x: Any) -> Any:
        session = self._session  # one read: a concurrent close() cannot pull it away mid-call
        if session is None:
            raise RtresnetError(f"this {self.backend} runner is closed; load the model again")
        if isinstance(x, np.ndarray):
            return session.run(self._out_names, {self._in: x})[0]
        if self._gpu and x.is_cuda and x.device.index in (None, self._device_id):
            return self._run_bound(x)
        return session.run(self._out_names, {self._in: x.cpu().numpy()})[0]

    def _run_bound(self, x: Any) -> Any:
        """Zero-copy on CUDA: bind the caller's tensor and a fresh output tensor in place."""
        import torch

        y = torch.empty((x.shape[0], self.num_classes), dtype=getattr(torch, self._out_dtype), device=x.device)
        # onnxruntime runs on its own stream: the producer of x must be done before it reads x
        torch.cuda.current_stream(x.device).synchronize()
        b = self._binding
        b.bind_input(self._in, "cuda", self._device_id, self._dtype, tuple(x.shape), x.data_ptr())
        b.bind_output(self._out, "cuda", self._device_id, np.dtype(self._out_dtype), tuple(y.shape), y.data_ptr())
        self._session.run_with_iobinding(b)  # synchronizes the provider's stream before returning
        return y

    def _release(self) -> None:
        self._binding = None
        self._session = None
