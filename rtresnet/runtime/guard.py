"""The load guard: refuse a TensorRT engine that this TensorRT or GPU cannot load, before TensorRT's own
"plan file is not compatible" error, and say which command rebuilds it. Never imports tensorrt.
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

from rtresnet.errors import RtresnetError
from rtresnet.sidecar import Sidecar, read_sidecar, verify_engine

log = logging.getLogger(__name__)

_AMPERE = (8, 0)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4])


def _cc_tuple(cc: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(cc).split(".")[:2])


def rebuild_hint(sidecar: Sidecar, engine_path: str | Path) -> str:
    command = sidecar.extra.get("build_command")
    if not command:
        command = shlex.join(["rtresnet", "build", "MODEL.onnx", "--backend", "tensorrt",
                              "--output", str(engine_path), "--force"])
    return f"rebuild it here with `{command}`"


def check_engine_loadable(sidecar: Sidecar | None, engine_path: str | Path, *, device_index: int = 0,
                          trt_version: str | None = None, compute_capability: str | None = None) -> Sidecar:
    """Return the engine's sidecar if this TensorRT version and GPU can load the engine; raise otherwise.

    ``trt_version`` / ``compute_capability`` default to the installed TensorRT and the CUDA GPU the engine is
    loaded on (``device_index``): on a machine with mixed GPUs the engine must fit that one, not GPU 0.
    """
    engine_path = Path(engine_path)
    if sidecar is None:
        sidecar = read_sidecar(engine_path)           # verifies the engine's sha256 itself
    else:
        verify_engine(engine_path, sidecar, rebuild_hint(sidecar, engine_path))
    if sidecar.backend != "tensorrt":
        raise RtresnetError(f"{engine_path} is an {sidecar.backend} engine, not a TensorRT plan; load it with "
                            f"the {sidecar.backend} backend")
    if trt_version is None or compute_capability is None:
        from rtresnet.environment import gpu_info, tensorrt_version

        trt_version = trt_version or tensorrt_version()
        gpu = gpu_info(device_index)
        compute_capability = compute_capability or (gpu or {}).get("compute_capability")
    if trt_version is None:
        raise RtresnetError(f"{engine_path} is a TensorRT engine but TensorRT is not installed; install it with "
                            f"`pip install 'rtresnet[gpu]'` or build an onnxruntime engine with `rtresnet build "
                            f"--backend onnxruntime`")
    if compute_capability is None:
        raise RtresnetError(f"{engine_path} is a TensorRT engine but no CUDA GPU {device_index} is visible; run it "
                            f"on the GPU it was built for ({_gpu_name(sidecar)})")
    flags = sidecar.flags or {}
    _check_version(sidecar, engine_path, trt_version, bool(flags.get("version_compat")))
    _check_gpu(sidecar, engine_path, compute_capability, flags.get("hardware_compat", "none"))
    return sidecar


def _gpu_name(sidecar: Sidecar) -> str:
    gpu = sidecar.gpu or {}
    return f"{gpu.get('name', 'unknown GPU')}, compute capability {gpu.get('compute_capability', '?')}"


def _check_version(sidecar: Sidecar, engine_path: Path, runtime: str, version_compat: bool) -> None:
    built = sidecar.tensorrt_version or "unknown"
    if built == runtime:
        return
    b, r = _version_tuple(built), _version_tuple(runtime)
    # Version-compatible plans run on the same or a newer runtime (10 -> 11 included), never an older one.
    if version_compat and b and r >= b:
        log.info("%s was built version-compatible with TensorRT %s; loading it with TensorRT %s",
                 engine_path, built, runtime)
        return
    why = "built version-compatible, but only newer runtimes can load it" if version_compat else "not built " \
        "version-compatible (--version-compat)"
    raise RtresnetError(f"{engine_path} was built with TensorRT {built} but this is TensorRT {runtime} ({why}); "
                        f"{rebuild_hint(sidecar, engine_path)}")


def _check_gpu(sidecar: Sidecar, engine_path: Path, runtime_cc: str, hardware_compat: str) -> None:
    built_cc = (sidecar.gpu or {}).get("compute_capability")
    if built_cc is None:
        raise RtresnetError(f"the sidecar of {engine_path} names no GPU; {rebuild_hint(sidecar, engine_path)}")
    if _cc_tuple(built_cc) == _cc_tuple(runtime_cc):
        return
    if hardware_compat == "ampere+" and _cc_tuple(runtime_cc) >= _AMPERE:
        log.info("%s was built hardware-compatible (ampere+) on compute capability %s; loading it on %s",
                 engine_path, built_cc, runtime_cc)
        return
    raise RtresnetError(f"{engine_path} was built for compute capability {built_cc} ({_gpu_name(sidecar)}) but "
                        f"this GPU is {runtime_cc} (hardware compatibility: {hardware_compat}); "
                        f"{rebuild_hint(sidecar, engine_path)}")
