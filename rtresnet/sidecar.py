"""The engine sidecar: a JSON file beside every engine (``<engine>.json``), defined once and validated by every
reader. The engine itself stays a plain TensorRT plan / ONNX model that trtexec, Triton and C++ can load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rtresnet.backends import ENGINE_KINDS
from rtresnet.backends import EngineBackend as Backend
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_write_text, sha256_file
from rtresnet.spec import ModelInfo, TensorSpec

SCHEMA = "rtresnet.engine-sidecar"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Sidecar:
    backend: Backend
    precision: str                      # "fp32" | "fp16" | "int8"
    model: ModelInfo                    # from the ONNX metadata: arch, preprocessing, labels...
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    profile: dict                       # {"min_batch": 1, "opt_batch": 8, "max_batch": 32}
    onnx_sha256: str                    # the ONNX the engine was built from
    engine_sha256: str
    build_seconds: float
    built_at: str                       # ISO 8601 UTC
    flags: dict                         # every build option that changes the engine (cache key part)
    calibration: dict | None = None     # {"method", "cache_key", "target"} for INT8
    tensorrt_version: str | None = None
    cuda_version: str | None = None
    gpu: dict | None = None             # {"name", "compute_capability"}
    onnxruntime_version: str | None = None
    execution_providers: tuple[str, ...] = ()
    cpu: dict | None = None             # {"model", "isa": [...]}
    rtresnet_version: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        return json.dumps({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar") -> Sidecar:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise RtresnetError(f"{source} is not valid JSON: {e}") from None
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise RtresnetError(f"{source} is not an rtresnet engine sidecar")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise RtresnetError(f"{source} has schema version {d.get('schema_version')}; this rtresnet reads "
                                f"version {SCHEMA_VERSION}: rebuild the engine")
        try:
            values = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
            values["model"] = ModelInfo.from_dict(d["model"])
            values["inputs"] = tuple(TensorSpec.from_dict(t) for t in d["inputs"])
            values["outputs"] = tuple(TensorSpec.from_dict(t) for t in d["outputs"])
            values["execution_providers"] = tuple(d.get("execution_providers") or ())
            sidecar = cls(**values)
        except (KeyError, TypeError, ValueError) as e:
            raise RtresnetError(f"{source} is missing or has a malformed field: {e}") from None
        if sidecar.backend not in ENGINE_KINDS:
            raise RtresnetError(f"{source} names an unknown backend {sidecar.backend!r}")
        return sidecar


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: Sidecar) -> Path:
    return atomic_write_text(sidecar_path(engine_path), sidecar.to_json() + "\n")


def read_sidecar(engine_path: str | Path, *, verify_hash: bool = True) -> Sidecar:
    """Read and validate the sidecar of ``engine_path``; refuse it if the engine's sha256 does not match."""
    engine, path = Path(engine_path), sidecar_path(engine_path)
    if not engine.is_file():
        raise RtresnetError(f"engine not found: {engine}")
    if not path.is_file():
        raise RtresnetError(f"no sidecar {path.name} beside {engine}; rebuild it with `rtresnet build`")
    sidecar = Sidecar.from_json(path.read_text(), source=str(path))
    if verify_hash:
        verify_engine(engine, sidecar)
    return sidecar


def verify_engine(engine_path: str | Path, sidecar: Sidecar,
                  what_to_do: str = "rebuild it with `rtresnet build --force`") -> None:
    """Refuse an engine file whose sha256 is not the one its sidecar recorded (changed or replaced)."""
    if sha256_file(engine_path) != sidecar.engine_sha256:
        raise RtresnetError(f"{engine_path} does not match its sidecar (sha256 differs): the file was changed or "
                            f"replaced; {what_to_do}")
