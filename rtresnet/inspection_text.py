"""``rtresnet inspect``'s text: a ``ModelReport`` as aligned lines that fit the terminal (``--json`` is
``ModelReport.to_dict``)."""

from __future__ import annotations

import json
import shlex
import shutil
import textwrap

from rtresnet.inspection import DEFAULT_TOP_OPS, FUSED_INT8_OPS, ModelReport
from rtresnet.sidecar import sidecar_path

KIND_NAMES = {"onnx": "ONNX model", "onnxruntime-engine": "onnxruntime engine", "tensorrt-plan": "TensorRT plan",
              "openvino-blob": "OpenVINO compiled blob"}


def format_report(report: ModelReport, *, wide: bool = False, width: int | None = None) -> str:
    """``report`` as aligned plain text, wrapped at ``width`` (the terminal's, at least 80; 100 when piped).
    ``wide``: every op type instead of the most frequent ``DEFAULT_TOP_OPS``."""
    width = width or max(80, shutil.get_terminal_size((100, 24)).columns)
    lines: list[str] = []

    def row(label: str, value: str | list[str]) -> None:
        """``label`` and ``value`` wrapped under itself; a list wraps between its items only ("Conv 20", ...)."""
        lead = f"  {label:<14}"
        items = value if isinstance(value, list) else [value]
        words = [w.replace(" ", "\0") for w in items] if isinstance(value, list) else items
        text = ", ".join(words) if isinstance(value, list) else words[0]
        wrapped = textwrap.wrap(text, width, initial_indent=lead, subsequent_indent=" " * len(lead),
                                break_on_hyphens=False, break_long_words=False)
        lines.extend(w.replace("\0", " ") for w in wrapped or [lead.rstrip()])

    r, g, s, m = report, report.graph, report.sidecar, report.model
    title = f"{r.path.name}: {KIND_NAMES[r.kind]}, {r.precision}"
    if g is not None and g.quantization is not None:
        title += f" (float part {g.float_precision})"
    lines.append(title)
    row("file", str(r.path))
    row("size", f"{_size_text(r.size_bytes)} ({r.size_bytes} bytes)")
    row("sha256", r.sha256)
    if m is not None:
        weights = m.weights or "none recorded (random init)"
        row("model", f"{m.arch}, {m.num_classes} classes, input {m.input_size[0]}x{m.input_size[1]}, "
                     f"weights {weights}" + (f", {len(m.labels)} labels" if m.labels else ""))
        p = m.preprocessing
        row("input format", f"{m.input_format}: resize {p.resize} ({p.interpolation}), center crop "
                            f"{p.crop[0]}x{p.crop[1]}, {p.channel_order}, /{p.value_range:g}, mean "
                            f"{' '.join(f'{v:g}' for v in p.mean)}, std {' '.join(f'{v:g}' for v in p.std)}")
    for note in r.notes:
        row("note", note)

    width_name = max(len(t.name) for t in (*r.inputs, *r.outputs))
    for label, tensors in (("inputs", r.inputs), ("outputs", r.outputs)):
        lines.append(label)
        for t in tensors:
            shape = "[" + ", ".join(str(d) for d in t.shape) + "]"
            lines.append(f"  {t.name:<{width_name}}  {shape:<22} {t.dtype}")
    if s is not None:
        p = s.profile
        lines.append(f"batch profile: min {p['min_batch']}, opt {p['opt_batch']}, max {p['max_batch']}")
    elif r.inputs and r.inputs[0].shape and not isinstance(r.inputs[0].shape[0], int):
        planned = f" (export planned max {m.max_batch})" if m is not None and m.max_batch else ""
        lines.append(f"batch profile: dynamic batch{planned}; an engine sets its own (rtresnet build --max-batch N)")

    if g is not None:
        lines.append("graph" + ("" if g.path == r.path else f" (source ONNX {g.path.name})"))
        row("opsets", ", ".join(f"{d} {v}" for d, v in g.opsets.items()))
        row("ir version", str(g.ir_version))
        row("producer", g.producer)
        shown = g.op_counts if wide else g.op_counts[:DEFAULT_TOP_OPS]
        more = len(g.op_counts) - len(shown)
        row(f"nodes ({g.nodes})", [f"{op} {n}" for op, n in shown]
            + ([f"{more} more op types (--wide)"] if more else []))
        row("initializers", [f"{dt} {n}" for dt, n in g.initializers.items()] or "none")
        if (qz := g.quantization) is not None:
            lines.append("int8")
            row("Q/DQ nodes", f"QuantizeLinear {qz.quantize_nodes}, DequantizeLinear {qz.dequantize_nodes}")
            row("weights", f"{qz.weight_dtype or '-'}, {qz.weight_scales} scales ({qz.per_channel_weights} "
                           f"per-channel, {qz.per_tensor_weights} per-tensor)")
            if qz.activation_dtype:
                sym = {True: "symmetric", False: "asymmetric", None: ""}[qz.activation_symmetric]
                row("activations", f"{qz.activation_dtype} {sym}".strip())
            if qz.settings:
                row("calibrated", ", ".join(f"{k} {v}" for k, v in qz.settings.items()))
            lines.append("  quantized ops  nodes in int8 / of that type, DequantizeLinear inputs")
            for o in qz.ops:
                dq_in = f"{o.dq_inputs:>4} DQ inputs" if o.op_type not in FUSED_INT8_OPS else "   fused int8 kernel"
                lines.append(f"    {o.op_type:<26} {o.nodes:>4} / {o.total:<4} {dq_in}")

    if s is not None:
        lines.append(f"sidecar {sidecar_path(r.path).name} (engine sha256 matches)")
        row("built", f"{s.built_at} in {s.build_seconds:g} s by rtresnet {s.rtresnet_version or '?'}")
        if s.backend == "tensorrt":
            gpu = s.gpu or {}
            row("backend", f"TensorRT {s.tensorrt_version or '?'}, CUDA {s.cuda_version or '?'}")
            row("built for", f"{gpu.get('name', 'unknown GPU')}, compute capability "
                             f"{gpu.get('compute_capability', '?')}")
        else:
            from rtresnet.backends import engine_builder

            row("backend", engine_builder(s.backend).describe(s))
        if s.selection:
            from rtresnet.engine.select import describe

            row("auto", describe(s.selection))
        if s.cpu:
            row("built on cpu", f"{s.cpu.get('model', '?')} ({s.cpu.get('arch', '?')}; ISA "
                                f"{' '.join(s.cpu.get('isa') or []) or 'n/a'})")
        row("flags", ", ".join(f"{k}={v}" for k, v in sorted(s.flags.items())) or "none")
        if s.calibration:
            row("calibration", _calibration_parts(dict(s.calibration)))
        row("source onnx", f"{s.extra.get('onnx_path', '?')} (sha256 {s.onnx_sha256[:16]}...)")
        for k, v in sorted(s.extra.items()):
            if k not in ("onnx_path", "build_command"):
                row(k.replace("_", " "), v if isinstance(v, str) else json.dumps(v))
        if command := s.extra.get("build_command"):
            lines.append("  build command")
            lines.extend(_shell_lines(command, width, indent=4))
    if r.runnable is not None:
        lines.extend(textwrap.wrap(f"runs here: {'yes' if r.runnable else 'no'}, {r.runnable.detail}", width,
                                   subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))
    return "\n".join(lines)


def _size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _shell_lines(command: str, width: int, indent: int) -> list[str]:
    """``command`` wrapped with `` \\`` continuations: still one command when pasted into a shell."""
    lines, current = [], " " * indent
    for word in (shlex.quote(w) for w in shlex.split(command)):
        if current.strip() and len(current) + 1 + len(word) + 2 > width:
            lines.append(current + " \\")
            current = " " * (indent + 2) + word
        else:
            current += (" " if current.strip() else "") + word
    return lines + [current]


def _calibration_parts(cal: dict) -> list[str]:
    """What a reader asks first (method, target, how many samples of which data), then the rest by name."""
    parts = [f"method {cal.pop('method')}"] if "method" in cal else []
    parts += [f"target {cal.pop('target')}"] if "target" in cal else []
    if "data" in cal:
        samples = cal.pop("samples", None)
        kind, fingerprint = cal.pop("data_kind", None), cal.pop("data_fingerprint", None)
        cal.pop("data_count", None)
        parts.append(f"{samples if samples is not None else '?'} samples of {kind + ' ' if kind else ''}"
                     f"{cal.pop('data')}" + (f" (fingerprint {fingerprint})" if fingerprint else ""))
    return parts + [f"{k} {v[:16] + '...' if k == 'cache_key' and isinstance(v, str) else v}"
                    for k, v in sorted(cal.items())]
