"""NVIDIA ModelOpt's ONNX PTQ as the independent reference for the TensorRT INT8 graph (the ``dev`` extra).

ModelOpt is NVIDIA's own recipe for TensorRT Q/DQ graphs. It patches onnxruntime's quantization modules for the
whole process when it runs, so it runs here in a subprocess, never beside rtresnet's own quantizer.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rtresnet.errors import RtresnetError


def modelopt_quantize(onnx_path: str | Path, calib_npy: str | Path, output: str | Path, *,
                      method: str = "entropy", timeout_s: float = 900) -> Path:
    """``python -m modelopt.onnx.quantization --quantize_mode int8`` on the CPU (its defaults otherwise:
    FP16 remainder, TensorRT placement); raises with ModelOpt's last lines when it fails."""
    cmd = [sys.executable, "-m", "modelopt.onnx.quantization", "--onnx_path", str(onnx_path), "--quantize_mode",
           "int8", "--calibration_data", str(calib_npy), "--calibration_method", method,
           "--calibration_eps", "cpu", "--output_path", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not Path(output).is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RtresnetError(f"ModelOpt failed (exit {proc.returncode}): {tail}; install it with "
                            f"`pip install -e '.[dev]'`")
    return Path(output)


def activation_scales(model) -> dict[str, float]:
    """Activation tensor -> its per-tensor Q/DQ scale."""
    from onnx import numpy_helper

    from rtresnet.precision.qdq_placement import activation_quantizers

    inits = {t.name: t for t in model.graph.initializer}
    return {tensor: float(numpy_helper.to_array(inits[q.input[1]]).reshape(-1)[0])
            for tensor, q in activation_quantizers(model).items() if q.input[1] in inits}


@dataclass(frozen=True)
class PlacementDiff:
    ours: dict[str, str]  # activation tensor -> producing op type
    reference: dict[str, str]

    @property
    def only_ours(self) -> list[str]:
        return sorted(set(self.ours) - set(self.reference))

    @property
    def only_reference(self) -> list[str]:
        return sorted(set(self.reference) - set(self.ours))

    def table(self) -> str:
        """Markdown: quantized activation tensors per producing op kind, rtresnet vs ModelOpt."""
        ours, ref = Counter(self.ours.values()), Counter(self.reference.values())
        rows = ["| tensor produced by | rtresnet | ModelOpt |", "|---|---|---|"]
        rows += [f"| {kind} | {ours[kind]} | {ref[kind]} |" for kind in sorted(set(ours) | set(ref))]
        rows.append(f"| **all** | **{len(self.ours)}** | **{len(self.reference)}** |")
        return "\n".join(rows)


def compare_placement(ours, reference) -> PlacementDiff:
    """Activation Q/DQ sets of two quantized models (onnx.ModelProto)."""
    from rtresnet.precision.qdq_placement import quantized_activations

    return PlacementDiff(quantized_activations(ours), quantized_activations(reference))
