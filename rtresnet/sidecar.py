"""The engine sidecar: a JSON file beside every engine (``<engine>.json``), defined once and validated by every
reader. The engine itself stays a plain TensorRT plan / ONNX model that trtexec, Triton and C++ can load.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import get_args

from rtresnet.backends import ENGINE_KINDS
from rtresnet.backends import EngineBackend as Backend
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_write_text, sha256_file
from rtresnet.spec import INPUT_FORMATS, LIMITS, ModelInfo, Precision, TensorSpec, describe_range

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
    calibration: dict | None = None     # INT8: method, target, settings, data source and fingerprint, cache key
    tensorrt_version: str | None = None
    cuda_version: str | None = None
    gpu: dict | None = None             # {"name", "compute_capability"}
    onnxruntime_version: str | None = None
    execution_providers: tuple[str, ...] = ()
    cpu: dict | None = None             # {"model", "isa": [...]}
    rtresnet_version: str = ""
    extra: dict = field(default_factory=dict)
    # Added without a schema version change (older sidecars read with these defaults; readers ignore what they
    # do not know, cpp/src/sidecar.cpp included):
    source: dict | None = None          # the ONNX `build` was given: {"path", "sha256", "precision", "converter"}
    verification: dict | None = None    # FP16/INT8 graph vs that source: cosine, top-1 agreement, samples...
    openvino_version: str | None = None  # OpenVINO engines: the version that compiled the blob
    selection: dict | None = None       # `--backend auto` on a CPU: the candidates measured and the one kept

    def to_json(self) -> str:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        return json.dumps({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar") -> Sidecar:
        rebuild = "rebuild the engine with `rtresnet build --force`"
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise RtresnetError(f"{source} is not valid JSON ({str(e)[:80]}); {rebuild}") from None
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise RtresnetError(f"{source} is not an rtresnet engine sidecar; {rebuild}")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
            why = "a newer rtresnet wrote it: upgrade rtresnet, or " if newer else ""
            raise RtresnetError(f"{source} has schema version {version}; this rtresnet reads "
                                f"version {SCHEMA_VERSION}: {why}{rebuild}")
        required = [k for k, f in cls.__dataclass_fields__.items()
                    if f.default is MISSING and f.default_factory is MISSING]
        if missing := [k for k in required if k not in d]:
            raise RtresnetError(f"{source} is missing or has a malformed field: missing {', '.join(missing)}; "
                                f"{rebuild}")
        try:
            values = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
            values["model"] = ModelInfo.from_dict(d["model"])
            values["inputs"] = tuple(TensorSpec.from_dict(t) for t in d["inputs"])
            values["outputs"] = tuple(TensorSpec.from_dict(t) for t in d["outputs"])
            values["execution_providers"] = tuple(d.get("execution_providers") or ())
            sidecar = cls(**values)
            for name in ("profile", "flags", "extra"):  # read with .get() everywhere: they must be objects
                if not isinstance(getattr(sidecar, name), dict):
                    raise TypeError(f"{name} must be an object, got {getattr(sidecar, name)!r}")
            if sidecar.selection is not None and not isinstance(sidecar.selection, dict):
                raise TypeError(f"selection must be an object, got {sidecar.selection!r}")
            if sidecar.openvino_version is not None and not isinstance(sidecar.openvino_version, str):
                raise TypeError(f"openvino_version must be a string, got {sidecar.openvino_version!r}")
            if not isinstance(sidecar.engine_sha256, str) or not isinstance(sidecar.onnx_sha256, str):
                raise TypeError("engine_sha256 and onnx_sha256 must be strings")
        except (KeyError, TypeError, ValueError, AttributeError, RtresnetError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
            raise RtresnetError(f"{source} is missing or has a malformed field: {what}; {rebuild}") from None
        if not isinstance(sidecar.backend, str) or sidecar.backend not in ENGINE_KINDS:
            raise RtresnetError(f"{source} names an unknown backend {sidecar.backend!r}; {rebuild}")
        check_consistent(sidecar, source)
        return sidecar


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "batch" for d in shape) + "]"


def check_consistent(s: Sidecar, source: str) -> None:
    """Refuse a sidecar whose parts contradict each other (edited by hand, or of another engine). The C++ library
    (cpp/src/sidecar.cpp) applies the same rules in the same words: both runtimes refuse the same sidecars."""
    def fail(what: str) -> None:
        raise RtresnetError(f"{source} {what}: rebuild the engine with `rtresnet build`")

    m, p = s.model, s.model.preprocessing
    sizes = (m.num_classes, m.in_channels, *m.input_size, p.resize)
    if len(m.input_size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
        raise RtresnetError(f"{source} is missing or has a malformed field: the model's sizes must be integers; "
                            "rebuild the engine with `rtresnet build`")
    for what, value in (("num classes", m.num_classes), ("in channels", m.in_channels),
                        *(("input size", v) for v in m.input_size), ("resize", p.resize)):
        lo, hi = LIMITS[what]
        if value >= 1 and not lo <= value <= hi:  # below 1: the "non-positive sizes" check below says it
            fail(f"has a model with {what} {value}, outside {describe_range(what)}")
    if s.precision not in get_args(Precision):
        fail(f"names an unknown precision {s.precision!r}")
    if m.input_format not in INPUT_FORMATS:
        fail(f"names an unknown input format {m.input_format!r}")
    if m.num_classes < 1 or m.in_channels < 1 or min(m.input_size) < 1:
        fail("has a model with non-positive sizes")
    if p.channels != m.in_channels:
        fail(f"has {p.channels} mean/std values for {m.in_channels} input channels")
    if tuple(p.crop) != tuple(m.input_size):
        fail(f"crops {p.crop[0]}x{p.crop[1]} but the input size is {m.input_size[0]}x{m.input_size[1]}")
    if m.labels and len(m.labels) != m.num_classes:
        fail(f"has {len(m.labels)} labels for {m.num_classes} classes")
    if len(s.inputs) != 1 or len(s.outputs) != 1:
        fail(f"lists {len(s.inputs)} inputs and {len(s.outputs)} outputs; rtresnet runs classifiers with one of each")
    inp, out = s.inputs[0], s.outputs[0]
    want = m.input_shape()
    if len(inp.shape) != 4 or tuple(inp.shape[1:]) != tuple(want[1:]):
        fail(f"input {inp.name} has shape {_shape_str(inp.shape)} but the model takes {_shape_str(want)}")
    frames = m.input_format != "float-nchw"
    if frames != (inp.dtype == "uint8") or (not frames and inp.dtype not in ("float32", "float16")):
        fail(f"input {inp.name} is {inp.dtype}, which does not fit input format {m.input_format}")
    if len(out.shape) != 2 or out.shape[1] != m.num_classes:
        fail(f"output {out.name} has shape {_shape_str(out.shape)} but the model has {m.num_classes} classes")
    if out.dtype not in ("float32", "float16"):
        fail(f"output {out.name} is {out.dtype}, not float logits")
    lo, opt, hi = (s.profile.get(k) for k in ("min_batch", "opt_batch", "max_batch"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, opt, hi)) or not 1 <= lo <= opt <= hi:
        fail(f"has batch profile {lo}/{opt}/{hi} (min/opt/max must satisfy 1 <= min <= opt <= max)")
    if hi > LIMITS["batch"][1]:
        fail(f"has max batch {hi}, outside {describe_range('batch')}")
    if isinstance(inp.shape[0], int) and (lo != inp.shape[0] or hi != inp.shape[0]):
        fail(f"has batch profile {lo}..{hi} for a fixed batch of {inp.shape[0]}")


def check_engine_io(sidecar: Sidecar, engine_path: str | Path, inputs: tuple[TensorSpec, ...],
                    outputs: tuple[TensorSpec, ...]) -> None:
    """Refuse an engine whose own input/output (names, dtypes, non-batch dimensions) differ from its sidecar's: the
    sidecar then belongs to another engine. The C++ library makes the same check (cpp/src/engine.cpp)."""
    def same(a: TensorSpec, b: TensorSpec) -> bool:
        if (a.name, a.dtype, len(a.shape)) != (b.name, b.dtype, len(b.shape)):
            return False
        return all(x == y or not isinstance(x, int) or not isinstance(y, int)
                   for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def text(t: TensorSpec) -> str:
        return f"{t.name}[{','.join(str(d) if isinstance(d, int) else '?' for d in t.shape)}] {t.dtype}"

    command = sidecar.extra.get("build_command")
    hint = f"rebuild it with `{command}`" if command else "rebuild it with `rtresnet build --force`"
    for verb, got, want in (("takes", inputs, sidecar.inputs), ("returns", outputs, sidecar.outputs)):
        if len(got) != 1 or not same(got[0], want[0]):
            raise RtresnetError(f"{engine_path} {verb} {', '.join(text(t) for t in got)} but its sidecar says "
                                f"{text(want[0])}: the sidecar belongs to another engine; {hint}")


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
