"""``export_triton``: an engine (or exported ONNX) -> a Triton model repository for the NGC tritonserver container.

    <repository>/<model>/config.pbtxt     generated from the sidecar, checked against Triton's ModelConfig schema
    <repository>/<model>/1/model.plan     the TensorRT plan as built (or 1/model.onnx for onnxruntime / ONNX)
    <repository>/<model>/labels.txt       the classification extension's labels, when the model carries them
    <repository>/<model>/README.md        the `docker run ... tritonserver` command and what the plan needs

The model folder is assembled beside its destination and renamed into place only after it validated, so a failed
export leaves the repository as it was.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rtresnet.errors import RtresnetError
from rtresnet.serving.model_config import (
    LABELS_FILE,
    PLATFORMS,
    TritonModel,
    check_config,
    check_matches_engine,
    parse_config,
)
from rtresnet.sidecar import read_sidecar, sidecar_path
from rtresnet.spec import ModelInfo, TensorSpec, check_range

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_ONNX_MAX_BATCH = 32
CONTAINER = "nvcr.io/nvidia/tritonserver:<YY.MM>-py3"


@dataclass(frozen=True)
class TritonRepository:
    repository: Path
    model_dir: Path
    model_name: str
    platform: str
    max_batch: int
    docker_command: str
    requirement: str        # what the container must match (TensorRT / onnxruntime version)

    @property
    def config_path(self) -> Path:
        return self.model_dir / "config.pbtxt"


@dataclass(frozen=True)
class _Source:
    path: Path
    backend: str
    info: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    min_batch: int
    max_batch: int | None
    requirement: str
    is_engine: bool = True
    compute_capability: str | None = None


def _source(path: Path) -> _Source:
    if sidecar_path(path).is_file() or path.suffix.lower() in (".engine", ".plan", ".trt"):
        sidecar = read_sidecar(path)  # checks the engine's sha256 too
        if sidecar.backend not in PLATFORMS:  # OpenVINO: Triton's openvino backend compiles IR/ONNX itself
            source = sidecar.extra.get("onnx_path") or "the ONNX it was built from"
            raise RtresnetError(f"{path} is a compiled {sidecar.backend} blob, which Triton cannot load; export "
                                f"{source} instead (Triton runs it with its onnxruntime backend)")
        if sidecar.backend == "onnxruntime":  # an ONNX engine can be opened: its I/O must be the sidecar's
            import onnx

            from rtresnet.sidecar import check_engine_io
            from rtresnet.spec import graph_io

            check_engine_io(sidecar, path, *graph_io(onnx.load(str(path), load_external_data=False).graph))
        profile = sidecar.profile or {}
        if sidecar.backend == "tensorrt":
            need = f"TensorRT {sidecar.tensorrt_version} (the plan loads only in a Triton release built with it)"
            cc = (sidecar.gpu or {}).get("compute_capability")
        else:
            need = f"onnxruntime {sidecar.onnxruntime_version} or newer in Triton's onnxruntime backend"
            cc = None
        return _Source(path, sidecar.backend, sidecar.model, sidecar.inputs, sidecar.outputs,
                       int(profile.get("min_batch", 1)), profile.get("max_batch"), need,
                       compute_capability=cc and str(cc))
    if path.suffix.lower() != ".onnx":
        raise RtresnetError(f"{path} is neither an ONNX model (.onnx) nor an engine with its sidecar")
    import onnx

    from rtresnet.spec import graph_io, read_model_info

    info = read_model_info(path)
    inputs, outputs = graph_io(onnx.load(str(path), load_external_data=False).graph)
    if any(isinstance(t.shape[0], int) for t in inputs):
        raise RtresnetError(f"{path} has a fixed batch size; Triton's batching needs a dynamic batch axis: "
                            f"re-export it with `rtresnet export`")
    return _Source(path, "onnxruntime", info, inputs, outputs, 1, None, "Triton's onnxruntime backend",
                   is_engine=False)


def check_model_name(name: str) -> str:
    """Triton model names (and folder names) hold only letters, digits, '_', '.' and '-'."""
    if not MODEL_NAME.match(name):
        raise RtresnetError(f"model name {name!r} may hold only letters, digits, '_', '.' and '-'")
    return name


def default_model_name(path: Path) -> str:
    """The engine's file name without its suffix, in the characters Triton allows in model names."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).strip(".") or "model"


def export_triton(engine: str | Path, repository: str | Path, *, model_name: str | None = None,
                  max_batch: int | None = None, max_queue_delay_us: int = 100, instances: int = 1,
                  preferred_batch_sizes: Sequence[int] = (), max_queue_size: int = 0, kind: str | None = None,
                  force: bool = False) -> TritonRepository:
    """Write a Triton model repository entry for ``engine`` (a TensorRT plan or onnxruntime engine with its sidecar,
    or an exported ONNX) under ``repository``. ``max_batch`` defaults to the engine profile's maximum; ``kind``
    ("gpu" | "cpu") applies to plain ONNX only (a plan runs on GPUs, an onnxruntime engine on the CPU it was built
    for). An existing model folder is replaced only with ``force``."""
    path = Path(engine)
    if not path.is_file():
        if path.exists():  # a folder, FIFO or device
            raise RtresnetError(f"{path} is not a regular file; give an engine with its sidecar or an exported .onnx")
        raise RtresnetError(f"model file not found: {path}")
    src = _source(path)
    name = check_model_name(model_name or default_model_name(path))
    if instances < 1:
        raise RtresnetError(f"instances must be at least 1, got {instances}")
    if max_queue_delay_us < 0 or max_queue_size < 0:
        raise RtresnetError("max_queue_delay_us and max_queue_size cannot be negative")
    batch = _max_batch(src, max_batch)
    bad = [b for b in preferred_batch_sizes if not 1 <= b <= batch]
    if bad:
        raise RtresnetError(f"preferred batch sizes {bad} are outside 1..{batch} (the model's max batch)")
    instance_kind = _instance_kind(src, kind)
    labels = src.info.labels if len(src.info.labels) == src.info.num_classes else ()
    logits = src.outputs[0].name
    model = TritonModel(name=name, backend=src.backend, max_batch=batch, inputs=src.inputs, outputs=src.outputs,
                        info=src.info, instances=instances, instance_kind=instance_kind,
                        max_queue_delay_us=max_queue_delay_us, preferred_batch_sizes=tuple(preferred_batch_sizes),
                        max_queue_size=max_queue_size, label_output=logits if labels else None)
    config = model.to_proto()
    if src.compute_capability:  # a plan runs on the SM it was built for: Triton then says so instead of crashing
        config.cc_model_filenames[src.compute_capability] = config.default_model_filename
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    repo = Path(repository)
    if repo.exists() and not repo.is_dir():
        raise RtresnetError(f"repository {repo} is a file; give a folder")
    final = repo / name
    if final.exists() and not force:
        raise RtresnetError(f"{final} exists; pass --force to replace it")
    repo.mkdir(parents=True, exist_ok=True)
    platform = PLATFORMS[src.backend][0]
    docker = _docker_command(repo, instance_kind)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        model_dir = staging / name
        (model_dir / "1").mkdir(parents=True)
        shutil.copyfile(path, model_dir / "1" / config.default_model_filename)
        if labels:
            (model_dir / LABELS_FILE).write_text("\n".join(labels) + "\n")
        (model_dir / "config.pbtxt").write_text(text)
        (model_dir / "README.md").write_text(_readme(name, src, platform, batch, docker))
        # the file as Triton will read it, against Triton's schema, its load rules and the engine's tensors
        written = parse_config((model_dir / "config.pbtxt").read_text(), source=f"{name}/config.pbtxt")
        check_config(written, model_dir, source=f"{name}/config.pbtxt")
        check_matches_engine(written, src.inputs, src.outputs, source=f"{name}/config.pbtxt")
        _replace(model_dir, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s (%s, max_batch_size %d, %d x %s)", final, platform, batch, instances, instance_kind)
    return TritonRepository(repo, final, name, platform, batch, docker, src.requirement)


def _max_batch(src: _Source, asked: int | None) -> int:
    if src.min_batch > 1:
        raise RtresnetError(f"the engine's profile starts at batch {src.min_batch}; Triton sends any batch from 1 up: "
                            f"rebuild it with --min-batch 1")
    top = src.max_batch
    if asked is not None:
        check_range("batch", asked, "max batch")
        if top is not None and asked > top:
            raise RtresnetError(f"max batch {asked} exceeds the engine profile's maximum {top}; Triton would refuse "
                                f"the model: rebuild the engine with --max-batch {asked}")
        return asked
    return int(top or src.info.max_batch or DEFAULT_ONNX_MAX_BATCH)


def _instance_kind(src: _Source, kind: str | None) -> str:
    # a plan runs on GPUs; an onnxruntime engine holds CPU-provider kernels optimized for the CPU it was built on
    fixed = "gpu" if src.backend == "tensorrt" else "cpu" if src.is_engine else None
    if kind is not None and kind not in ("cpu", "gpu"):
        raise RtresnetError(f"instance kind must be cpu or gpu, got {kind!r}")
    if fixed and kind and kind != fixed:
        raise RtresnetError(f"this {src.backend} engine runs on the {fixed.upper()} only; leave --kind out or "
                            f"export the ONNX instead")
    return f"KIND_{(fixed or kind or 'cpu').upper()}"


def _docker_command(repo: Path, kind: str) -> str:
    gpus = "--gpus all " if kind == "KIND_GPU" else ""
    return (f"docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 -v {repo.resolve()}:/models "
            f"{CONTAINER} tritonserver --model-repository=/models")


def _readme(name: str, src: _Source, platform: str, batch: int, docker: str) -> str:
    return (f"# {name}\n\n{src.info.arch}, {src.info.precision}, {platform}, max_batch_size {batch}; generated by "
            f"`rtresnet export-triton` from {src.path.name}.\n\nServe it with the NGC container, using the release "
            f"that carries {src.requirement}:\n\n    {docker}\n\nPreprocessing (the server takes model inputs, not "
            f"images): see the `rtresnet.model_info` parameter in config.pbtxt.\n")


def _replace(new: Path, final: Path) -> None:
    """Move ``new`` into ``final``; an existing folder is set aside first and removed only after the move."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    try:
        new.rename(final)
    except OSError:
        if old is not None:
            old.rename(final)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
