"""Triton's ``config.pbtxt`` for an rtresnet engine: written from the sidecar and checked against Triton's own schema
(``ModelConfig`` from tritonclient's ``model_config_pb2``) plus the rules Triton applies when it loads a model
(``ValidateModelConfig`` and the backends' checks), so a repository that would not load is refused here, not in the
container.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtresnet.errors import RtresnetError
from rtresnet.spec import ModelInfo, TensorSpec

SERVE_EXTRA = "pip install 'rtresnet[serve]'"
LABELS_FILE = "labels.txt"
MODEL_INFO_PARAMETER = "rtresnet.model_info"  # ModelInfo (preprocessing, labels...) as JSON in `parameters`

# Triton's platform, backend and default model file per rtresnet engine backend.
PLATFORMS = {
    "tensorrt": ("tensorrt_plan", "tensorrt", "model.plan"),
    "onnxruntime": ("onnxruntime_onnx", "onnxruntime", "model.onnx"),
}
GPU_ONLY_PLATFORMS = ("tensorrt_plan",)
TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "object": "TYPE_STRING",
    "bytes": "TYPE_STRING",
}


def model_config_pb2() -> Any:
    """Triton's ModelConfig protobuf module (tritonclient[grpc], in the serve extra)."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb2
    except ImportError:
        raise RtresnetError(f"Triton's model config schema comes with tritonclient; {SERVE_EXTRA}") from None
    return pb2


def triton_dtype(numpy_dtype: str) -> str:
    if numpy_dtype not in TRITON_DTYPES:
        raise RtresnetError(f"Triton has no data type for {numpy_dtype!r}")
    return TRITON_DTYPES[numpy_dtype]


@dataclass(frozen=True)
class TritonModel:
    """What ``config.pbtxt`` says about one model; ``inputs``/``outputs`` carry the batch axis first."""

    name: str
    backend: str                                  # rtresnet engine backend: tensorrt | onnxruntime
    max_batch: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    info: ModelInfo
    instances: int = 1
    instance_kind: str = "KIND_GPU"               # KIND_GPU | KIND_CPU
    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0                       # 0: unbounded (Triton's default)
    label_output: str | None = None               # the output label_filename applies to

    def to_proto(self) -> Any:
        pb2 = model_config_pb2()
        platform, _backend, filename = PLATFORMS[self.backend]
        config = pb2.ModelConfig(name=self.name, platform=platform, max_batch_size=self.max_batch,
                                 default_model_filename=filename)
        for spec in self.inputs:
            entry = config.input.add(name=spec.name, data_type=triton_dtype(spec.dtype), dims=_sample_dims(spec))
            if len(entry.dims) == 3 and self.info.input_format == "float-nchw":
                entry.format = pb2.ModelInput.FORMAT_NCHW  # image clients (Triton's image_client) read it
            elif len(entry.dims) == 3:
                entry.format = pb2.ModelInput.FORMAT_NHWC
        for spec in self.outputs:
            entry = config.output.add(name=spec.name, data_type=triton_dtype(spec.dtype), dims=_sample_dims(spec))
            if spec.name == self.label_output:
                entry.label_filename = LABELS_FILE  # Triton's classification extension: class_count -> labels
        batching = config.dynamic_batching
        batching.max_queue_delay_microseconds = self.max_queue_delay_us
        batching.preferred_batch_size.extend(self.preferred_batch_sizes)
        if self.max_queue_size:
            batching.default_queue_policy.max_queue_size = self.max_queue_size
        config.instance_group.add(count=self.instances, kind=self.instance_kind)
        config.parameters[MODEL_INFO_PARAMETER].string_value = json.dumps(self.info.to_dict(), sort_keys=True)
        return config


def _sample_dims(spec: TensorSpec) -> list[int]:
    """Dims without the batch axis, as Triton wants them when max_batch_size > 0."""
    dims = list(spec.shape[1:])
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise RtresnetError(f"tensor {spec.name} has dynamic sample dims {spec.shape}; Triton needs them fixed")
    return dims


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """``text`` parsed into Triton's ModelConfig; a field or value its schema does not know is an error."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise RtresnetError(f"{source} does not parse as Triton's ModelConfig: {e}") from None


def config_problems(config: Any, model_dir: Path | None = None) -> list[str]:
    """Why Triton would refuse to load ``config`` (a ModelConfig); empty when it would load. With ``model_dir`` the
    files it names (model file in each version folder, label file) are checked too."""
    pb2 = model_config_pb2()
    problems: list[str] = []
    known = {p for p, _, _ in PLATFORMS.values()}
    if not config.name:
        problems.append("name is empty")
    if model_dir is not None and config.name and config.name != model_dir.name:
        problems.append(f"name {config.name!r} differs from its folder {model_dir.name!r}")
    if config.platform not in known and config.backend not in {b for _, b, _ in PLATFORMS.values()}:
        problems.append(f"platform {config.platform!r} is not one of {', '.join(sorted(known))}")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size {config.max_batch_size} is negative")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size > 0")
        for size in config.dynamic_batching.preferred_batch_size:
            if size < 1 or (config.max_batch_size and size > config.max_batch_size):
                problems.append(f"preferred_batch_size {size} is outside 1..max_batch_size "
                                f"({config.max_batch_size})")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        if not tensors:
            problems.append(f"no {kind}")
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            problems.append(f"duplicate {kind} names {names}")
        for t in tensors:
            if not t.name:
                problems.append(f"an {kind} has no name")
            if t.data_type == pb2.TYPE_INVALID:
                problems.append(f"{kind} {t.name!r} has no data_type")
            if not t.dims:
                problems.append(f"{kind} {t.name!r} has no dims")
            if any(d == 0 or d < -1 for d in t.dims):
                problems.append(f"{kind} {t.name!r} has dims {list(t.dims)}: each must be >= 1 or -1")
            if kind == "input" and t.format != pb2.ModelInput.FORMAT_NONE and len(t.dims) != 3:
                problems.append(f"input {t.name!r} has an image format but {len(t.dims)} dims, not 3 (CHW/HWC)")
    if not config.instance_group:
        problems.append("no instance_group")
    for group in config.instance_group:
        if group.count < 1:
            problems.append(f"instance_group count {group.count} must be at least 1")
        if config.platform in GPU_ONLY_PLATFORMS and group.kind == pb2.ModelInstanceGroup.KIND_CPU:
            problems.append(f"{config.platform} runs on GPUs only; instance_group kind KIND_CPU cannot load it")
    if model_dir is not None:
        problems += _file_problems(config, model_dir)
    return problems


def _file_problems(config: Any, model_dir: Path) -> list[str]:
    problems: list[str] = []
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        problems.append(f"{model_dir} has no version folder (1/)")
    filename = config.default_model_filename or next(
        (f for p, _, f in PLATFORMS.values() if p == config.platform), "")
    for version in versions:
        if not (version / filename).is_file():
            problems.append(f"{version.name}/{filename} is missing")
    for out in config.output:
        if not out.label_filename:
            continue
        labels = model_dir / out.label_filename
        if not labels.is_file():
            problems.append(f"label file {out.label_filename} of output {out.name!r} is missing")
            continue
        count = len(labels.read_text().splitlines())
        classes = out.dims[-1] if out.dims else 0
        if count != classes:
            problems.append(f"{out.label_filename} has {count} labels for {classes} classes of output {out.name!r}")
    return problems


def check_config(config: Any, model_dir: Path | None = None, source: str = "config.pbtxt") -> None:
    problems = config_problems(config, model_dir)
    if problems:
        raise RtresnetError(f"{source} would not load in Triton: {'; '.join(problems)}")


def check_matches_engine(config: Any, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                         source: str = "config.pbtxt") -> None:
    """Triton compares the config with the model's own tensors at load time; rtresnet compares with the sidecar."""
    pb2 = model_config_pb2()
    for kind, declared, actual in (("input", config.input, inputs), ("output", config.output, outputs)):
        engine = {t.name: t for t in actual}
        for t in declared:
            if t.name not in engine:
                raise RtresnetError(f"{source}: {kind} {t.name!r} is not in the engine ({', '.join(engine)})")
            spec = engine[t.name]
            want_dims, want_type = _sample_dims(spec), triton_dtype(spec.dtype)
            if list(t.dims) != want_dims or pb2.DataType.Name(t.data_type) != want_type:
                raise RtresnetError(f"{source}: {kind} {t.name!r} is {pb2.DataType.Name(t.data_type)} "
                                    f"{list(t.dims)}, the engine has {want_type} {want_dims}")
