"""Typed benchmark results and their JSON form (schema ``rtresnet.bench-report``, versioned).

Accuracy figures are percentages (``top1_pct``) and drops are percentage points (``top1_drop_pts``), the units
the terminal table, the gates (``--min-top1 95``) and the JSON share.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from rtresnet.bench.stats import LatencyStats
from rtresnet.errors import RtresnetError

SCHEMA = "rtresnet.bench-report"
SCHEMA_VERSION = 1
Status = Literal["ok", "unavailable", "failed"]


@dataclass(frozen=True)
class BatchResult:
    batch_size: int
    host: LatencyStats                      # end-to-end, host to host
    device: LatencyStats | None             # GPU compute only (CUDA events); None on the CPU
    throughput_img_s: float                 # batch_size / mean host latency
    device_throughput_img_s: float | None
    speedup_vs_baseline: float | None       # baseline median host latency / this one, same batch size
    warmup_iters: int
    # the speedup is not to be trusted: this row's or the baseline's timing at this batch size was unstable (CoV
    # above stats.UNSTABLE_COV), or the machine was busy during the run
    speedup_unstable: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> BatchResult:
        d = dict(d)
        d["host"] = LatencyStats.from_dict(d["host"])
        d["device"] = LatencyStats.from_dict(d["device"]) if d.get("device") else None
        return cls(**d)


@dataclass(frozen=True)
class AccuracyResult:
    """Against the PyTorch FP32 logits on the same inputs; label figures only with a labeled data set."""

    samples: int
    top1_agreement_pct: float
    top5_agreement_pct: float     # share of samples whose reference top-1 is in this backend's top-5
    max_abs_diff: float
    cosine_mean: float
    top1_pct: float | None = None
    top5_pct: float | None = None
    top1_drop_pts: float | None = None  # reference top-1 minus this one (positive = worse)
    top5_drop_pts: float | None = None


@dataclass(frozen=True)
class BackendResult:
    name: str
    status: Status
    reason: str | None = None               # why it is unavailable or failed
    runtime: str = ""                        # "torch" | "onnxruntime" | "tensorrt"
    precision: str = "fp32"
    device: str = "cpu"
    artifact: str | None = None              # the engine or ONNX file that ran
    size_bytes: int | None = None            # on disk (torch: its FP32 state dict)
    build_s: float | None = None             # export, convert and build (0 for torch)
    load_s: float | None = None              # load the engine / weights into a runner
    peak_rss_mib: float | None = None
    peak_gpu_mib: float | None = None
    batches: tuple[BatchResult, ...] = ()
    accuracy: AccuracyResult | None = None
    warnings: tuple[str, ...] = ()
    device_scope: str | None = None          # how device latency was timed: a key of timing.DEVICE_SCOPES
    label: str = ""                          # short row label of the terminal table ("ort int8", "trt fp16")
    baseline: bool = False                   # the row speedups and agreement are measured against

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def batch(self, batch_size: int) -> BatchResult | None:
        return next((b for b in self.batches if b.batch_size == batch_size), None)

    @classmethod
    def from_dict(cls, d: dict) -> BackendResult:
        d = dict(d)
        d["batches"] = tuple(BatchResult.from_dict(b) for b in d.get("batches") or ())
        d["accuracy"] = AccuracyResult(**d["accuracy"]) if d.get("accuracy") else None
        d["warnings"] = tuple(d.get("warnings") or ())
        return cls(**d)


@dataclass(frozen=True)
class GateFailure:
    backend: str
    metric: str          # "top1_pct" | "top1_drop_pts" | "status"
    value: float | None
    threshold: float
    message: str


@dataclass(frozen=True)
class BenchReport:
    created_at: str                          # ISO 8601 UTC
    model: dict                              # arch, num_classes, in_channels, input_size, weights, input_format
    data: dict                               # source, samples, labeled, synthetic, fingerprint
    timing: dict                             # batch sizes, threads, warm-up/iterations, timed scopes
    memory_method: str
    environment: dict
    baseline: str                            # the backend speedups are measured against
    backends: tuple[BackendResult, ...]
    gates: dict = field(default_factory=dict)  # {"min_top1_pct": .., "max_top1_drop_pts": ..}
    gate_failures: tuple[GateFailure, ...] = ()
    notes: tuple[str, ...] = ()              # run-wide warnings (e.g. a busy machine)
    machine_busy: bool = False               # other load on the cores during the run (see notes)

    @property
    def passed(self) -> bool:
        return not self.gate_failures

    def backend(self, name: str) -> BackendResult:
        for b in self.backends:
            if b.name == name:
                return b
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> BenchReport:
        if d.get("schema") != SCHEMA:
            raise RtresnetError("not an rtresnet bench report (schema field missing or different)")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise RtresnetError(f"bench report schema version {d.get('schema_version')} is not supported; this "
                                f"rtresnet reads version {SCHEMA_VERSION}: rerun `rtresnet bench`")
        values = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        values["backends"] = tuple(BackendResult.from_dict(b) for b in d["backends"])
        values["gate_failures"] = tuple(GateFailure(**g) for g in d.get("gate_failures") or ())
        values["notes"] = tuple(d.get("notes") or ())
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> BenchReport:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise RtresnetError(f"bench report is not valid JSON: {e}") from None
