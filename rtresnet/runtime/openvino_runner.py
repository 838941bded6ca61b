"""OpenVINO runner: an OpenVINO engine (compiled blob + sidecar) or an ONNX compiled on load, on the CPU.

The load guard refuses a blob compiled by another OpenVINO version or on another CPU (model or ISA differ) before
OpenVINO's own import error, and says which command rebuilds it, as the TensorRT guard does for plans.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.runtime.base import InputSpec, Runner
from rtresnet.spec import ModelInfo, TensorSpec

log = logging.getLogger(__name__)

_DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8", "i8": "int8", "f64": "float64"}


def check_blob_loadable(sidecar, engine_path: Path) -> None:
    """Refuse a blob this OpenVINO or this CPU cannot run: compiled kernels follow the build CPU's ISA."""
    from rtresnet.environment import cpu_info, package_version
    from rtresnet.runtime.guard import rebuild_hint

    version = package_version("openvino")
    if version is None:
        raise RtresnetError(f"{engine_path} is an OpenVINO engine but OpenVINO is not installed; "
                            f"pip install 'rtresnet[openvino]', or build an onnxruntime engine with "
                            f"`rtresnet build --backend onnxruntime`")
    if sidecar.openvino_version != version:
        raise RtresnetError(f"{engine_path} was compiled by OpenVINO {sidecar.openvino_version} but this is "
                            f"OpenVINO {version}; {rebuild_hint(sidecar, engine_path)}")
    built, here = sidecar.cpu or {}, cpu_info()
    for key, what in (("arch", "architecture"), ("model", "CPU"), ("isa", "instruction set")):
        if built.get(key) != (list(here[key]) if key == "isa" else here[key]):
            raise RtresnetError(f"{engine_path} was compiled for another {what} ({built.get(key)} vs this "
                                f"machine's {here[key]}): OpenVINO blobs run only where they were compiled; "
                                f"{rebuild_hint(sidecar, engine_path)}")


class OpenVinoRunner(Runner):
    """OpenVINO ``CompiledModel`` on the CPU behind the runner contract.

    One synchronous infer request, calls serialized by the runner's lock (an ``InferRequest`` is not re-entrant);
    the compiled model uses ``threads`` intra-op threads (default: OpenVINO's, every core) in one stream.
    """

    backend = "openvino"

    @classmethod
    def from_engine(cls, path: str | Path, sidecar, *, device: str | None = None, **options) -> OpenVinoRunner:
        """The loader's entry point for an OpenVINO engine with its sidecar: hash, version and CPU checked first."""
        from rtresnet.sidecar import verify_engine

        path = Path(path)
        verify_engine(path, sidecar)
        check_blob_loadable(sidecar, path)
        runner = cls(path, sidecar.model, device=device, profile=sidecar.profile,
                     inference_precision=(sidecar.flags or {}).get("inference_precision", "f32"), **options)
        return runner._matching_sidecar(sidecar, path)

    def __init__(self, path: str | Path, info: ModelInfo, *, device: str | None = None, threads: int | None = None,
                 inference_precision: str = "f32", profile: dict | None = None, check_finite: bool = False,
                 max_batch: int | None = None) -> None:
        from rtresnet.engine.openvino import SUFFIXES, compile_config, compile_onnx

        if (device or "cpu") != "cpu":
            raise RtresnetError(f"the openvino backend runs on the CPU, not {device!r}; drop --device or use cpu")
        if threads is not None and threads < 0:
            raise RtresnetError(f"threads must be >= 0 (0 = OpenVINO's default), got {threads}")
        path = Path(path)
        if path.suffix.lower() in SUFFIXES:
            import openvino as ov

            try:
                with open(path, "rb") as f:
                    compiled = ov.Core().import_model(f.read(), "CPU", compile_config(inference_precision, threads))
            except Exception as e:  # OpenVINO's import errors are RuntimeErrors with C++ traces
                raise RtresnetError(f"OpenVINO cannot load {path}: {str(e).strip().splitlines()[0][:200]}; "
                                    f"rebuild it with `rtresnet build --backend openvino --force`") from None
        else:
            lo, hi = (profile or {}).get("min_batch"), (profile or {}).get("max_batch")
            compiled = compile_onnx(path, min_batch=lo, max_batch=hi, inference_precision=inference_precision,
                                    threads=threads)
        inp, out = compiled.inputs[0], compiled.outputs[0]
        dtype = _DTYPES.get(inp.get_element_type().get_type_name())
        if dtype is None:
            raise RtresnetError(f"{path} takes {inp.get_element_type()}, which rtresnet cannot feed")
        shape = inp.get_partial_shape()
        if shape.rank.is_dynamic or any(shape[i].is_dynamic for i in range(1, shape.rank.get_length())):
            raise RtresnetError(f"{path} has dynamic image dimensions {shape}; export with a fixed size")
        batch = shape[0]
        lo = batch.get_min_length() if batch.is_dynamic else batch.get_length()
        hi = (batch.get_max_length() if batch.get_max_length() >= 0 else None) if batch.is_dynamic \
            else batch.get_length()
        sample = tuple(shape[i].get_length() for i in range(1, shape.rank.get_length()))
        spec = InputSpec(inp.get_any_name(), sample, dtype, "NCHW" if info.input_format == "float-nchw" else "NHWC",
                         max(lo, 1), hi)
        classes = out.get_partial_shape()[-1]
        super().__init__(info, spec, num_classes=classes.get_length() if classes.is_static else info.num_classes,
                         device="cpu", check_finite=check_finite, max_batch=max_batch)
        self.path = path
        self.inference_precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32"
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self._compiled, self._request = compiled, compiled.create_infer_request()
        self._out_dtype = _DTYPES.get(out.get_element_type().get_type_name(), "float32")
        log.debug("OpenVINO %s on %d threads, %s precision", path, self.threads, self.inference_precision)

    def _io_specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """The compiled model's own input and output, in the sidecar's terms."""
        def spec(port) -> TensorSpec:
            shape = port.get_partial_shape()
            dims = tuple(shape[i].get_length() if shape[i].is_static else "?" for i in range(shape.rank.get_length()))
            return TensorSpec(port.get_any_name(), dims, _DTYPES.get(port.get_element_type().get_type_name(), "?"))

        return (spec(self._compiled.inputs[0]),), (spec(self._compiled.outputs[0]),)

    def _run(self, x: Any) -> Any:
        request = self._request  # one read: a close() cannot pull it away mid-call (calls hold the lock anyway)
        if request is None:
            raise RtresnetError(f"this {self.backend} runner is closed; load the model again")
        if not isinstance(x, np.ndarray):
            x = x.cpu().numpy()
        from rtresnet.engine.openvino import run

        return run(request, x)

    def _release(self) -> None:
        self._request = None
        self._compiled = None
