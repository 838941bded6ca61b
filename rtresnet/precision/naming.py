"""The one file-naming scheme of converted models and engines: ``_``-separated fields, most general first.

    <model>_<precision>[_<int8 target>].onnx                     FP16 / INT8 Q/DQ ONNX (quantize, build's input)
    <model>_<precision>_b<min>-<max>[_opt<n>]_<backend...>.engine|.onnx    engine (rtresnet.engine.request)
    <engine stem>.qdq.onnx | <engine stem>.fp16.onnx              the converted ONNX `build` made the engine from

``<precision>`` is ``fp32``, ``fp16`` or ``int8-<calibration method>`` (``int8-entropy``, ``int8-minmax``,
``int8-percentile99.9``): two calibrations of one model never share a file. The engine part lives in
``rtresnet.engine.request.BuildRequest.default_output``; this module is the part both stages name.
"""

from __future__ import annotations

from pathlib import Path


def precision_tag(precision: str, method: str | None = None, percentile: float | None = None) -> str:
    """``int8-entropy``, ``int8-percentile99.99``, ``fp16``: the precision field of a file name."""
    if precision != "int8" or method is None:
        return precision
    return f"int8-{method}{percentile:g}" if method == "percentile" and percentile is not None else f"int8-{method}"


def converted_name(model: str, precision: str, *, method: str | None = None, percentile: float | None = None,
                   target: str | None = None) -> str:
    """File name of a converted ONNX: ``r18_int8-entropy_cpu.onnx``, ``r18_int8-minmax_tensorrt.onnx``,
    ``r18_fp16.onnx`` (the INT8 target is part of an INT8 graph's layout; FP16 graphs serve every target)."""
    parts = [model, precision_tag(precision, method, percentile)]
    if precision == "int8" and target:
        parts.append(target)
    return "_".join(parts) + ".onnx"


def converted_path(source: Path, folder: Path | None = None, **kwargs) -> Path:
    """``converted_name`` for ``source``'s stem, in ``folder`` (default: beside ``source``)."""
    return (folder if folder is not None else source.parent) / converted_name(source.stem, **kwargs)


def intermediate_path(engine: Path, precision: str) -> Path:
    """The converted ONNX ``build`` writes beside ``engine``: ``x.engine`` -> ``x.qdq.onnx`` (INT8) or
    ``x.fp16.onnx`` (FP16). Named after the engine, not the model: two engines never overwrite each other's."""
    return engine.with_name(f"{engine.stem}.{'qdq' if precision == 'int8' else precision}.onnx")
