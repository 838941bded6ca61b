"""``run``: every backend on the same inputs, batch sizes and threads, in one process, side by side."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtresnet.bench.accuracy import accuracy_result, evaluate
from rtresnet.bench.backends import (
    BACKENDS,
    FP32_GPU_NOTE,
    BackendSpec,
    Workspace,
    load_model_file,
    load_runner,
    numerics,
    parse_backends,
    short_label,
    unavailable_reason,
)
from rtresnet.bench.env import busy_note, environment_block, load_average, utc_now
from rtresnet.bench.gates import check_gates, validate_gates
from rtresnet.bench.memory import PeakMemory, memory_method
from rtresnet.bench.results import BackendResult, BatchResult, BenchReport
from rtresnet.bench.stats import UNSTABLE_COV, LatencyStats
from rtresnet.bench.subjects import BenchModel, arch_model, baseline_file, files_model, guessed_labels
from rtresnet.bench.timing import DEVICE_SCOPES, HOST_SCOPE, TimingConfig, time_compute, time_device, time_host
from rtresnet.errors import RtresnetError, UsageError
from rtresnet.progress import track
from rtresnet.spec import ModelInfo, Preprocessing
from rtresnet.steps import step

log = logging.getLogger(__name__)

DEFAULT_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")
DEFAULT_GPU_BACKENDS = ("torch-cuda", "onnxruntime-cuda", "tensorrt-fp16", "tensorrt-int8")
DEVICES = ("cpu", "cuda")
SYNTHETIC_SAMPLES = 64


@dataclasses.dataclass(frozen=True)
class _Options:
    """How every backend is measured: the same for all of them."""

    sizes: tuple[int, ...]
    timing: TimingConfig
    threads: int
    data: str | Path
    samples: int | None
    calib_data: str | Path | None
    calib_size: int
    calib_method: str
    seed: int
    min_top1: float | None
    max_top1_drop: float | None
    device_timing: bool
    device: str | None = None


@dataclasses.dataclass(frozen=True)
class _Job:
    """One row of the benchmark: a backend made here (``spec``) or a user's model file (``spec`` None)."""

    name: str
    label: str
    spec: BackendSpec | None
    prepare: Any  # () -> the artifact the runner loads (None for torch; {batch: plan} for TensorRT)
    baseline: bool = False  # a --models file given as --baseline: the others are compared with it


def _sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(b) for b in batch_sizes)
    if not sizes or any(b < 1 for b in sizes):
        raise RtresnetError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    return tuple(sorted(set(sizes)))


def _reference_logits(model: Any, inputs: np.ndarray, batch: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return evaluate(lambda x: model(torch.from_numpy(x)), inputs, batch)


def _buffers(inputs: np.ndarray, batch: int, count: int) -> list[np.ndarray]:
    """``count`` distinct batches (separate memory) cycling through the data set's samples."""
    n = len(inputs)
    return [np.ascontiguousarray(inputs[np.arange(j * batch, (j + 1) * batch) % n]) for j in range(count)]


def _device_latency(runner: Any, buffers: list[np.ndarray], timing: TimingConfig) -> tuple[LatencyStats, str]:
    """Latency with the input already on the GPU, and its scope (a key of DEVICE_SCOPES): device compute where
    the runner times its own stream (TensorRT), GPU-resident otherwise."""
    import torch

    on_gpu = [torch.from_numpy(x).to(runner.device) for x in buffers]
    if not hasattr(runner, "time_compute"):
        return LatencyStats.from_samples(time_device(runner.infer, on_gpu, timing).samples_ms), "gpu-resident"
    runner.time_compute(True)
    try:
        result = time_compute(runner.infer, lambda: runner.last_compute_ms, on_gpu, timing)
    finally:
        runner.time_compute(False)
    return LatencyStats.from_samples(result.samples_ms), "compute"


def _time_batches(runner_for, inputs: np.ndarray, sizes: tuple[int, ...], timing: TimingConfig,
                  device_timing: bool) -> tuple[list[BatchResult], list[str], str | None]:
    """Time each batch size on ``runner_for(b)`` (a context manager yielding the runner for that size)."""
    results, warnings, unstable, scope = [], [], [], None
    for b in sizes:
        with runner_for(b) as runner:
            limit = runner.input_spec.max_batch
            if limit is not None and b > limit:
                warnings.append(f"batch {b} exceeds the engine's maximum batch {limit}: the runner splits it, so it "
                                f"is timed as {-(-b // limit)} calls; rebuild with --max-batch {b} to time one call")
            buffers = _buffers(inputs, b, timing.buffers)
            host = time_host(runner.infer, buffers, timing)
            stats = LatencyStats.from_samples(host.samples_ms)
            device = None
            if str(runner.device).startswith("cuda") and device_timing:
                device, scope = _device_latency(runner, buffers, timing)
        if stats.unstable:
            unstable.append(f"batch {b} ({stats.cov:.0%})")
        results.append(BatchResult(
            batch_size=b, host=stats, device=device, throughput_img_s=b * 1e3 / stats.latency_ms_mean,
            device_throughput_img_s=b * 1e3 / device.latency_ms_mean if device else None,
            speedup_vs_baseline=None, warmup_iters=host.warmup_iters))
    if unstable:
        warnings.append(f"unstable timing, CoV above {UNSTABLE_COV:.0%} at {', '.join(unstable)}: other load on the "
                        f"machine? time longer (--duration-s) on an idle machine")
    return results, warnings, scope


def _run_backend(job: _Job, model: BenchModel, data_for, opts: _Options) -> BackendResult:
    """One backend end to end; any failure becomes a row with its reason, never an aborted benchmark."""
    name, spec, prepare = job.name, job.spec, job.prepare
    base = {"name": name, "runtime": spec.runtime if spec else "", "precision": spec.precision if spec else "",
            "device": spec.device if spec else "cpu", "label": job.label, "baseline": job.baseline}
    if spec is not None and (reason := unavailable_reason(spec)):
        log.debug("%s: unavailable (%s)", name, reason)  # a row of the report, with its reason
        return BackendResult(status="unavailable", reason=reason, **base)
    stage = "build"
    try:
        t0 = time.perf_counter()
        with step("build"):
            artifact = prepare()
        build_s = time.perf_counter() - t0
        # TensorRT: one engine per batch size (a dict); accuracy runs on the largest size's
        engines = artifact if isinstance(artifact, dict) else None
        artifact = engines[max(engines)] if engines else artifact

        def load(path: Any) -> Any:
            if spec is None:
                return load_model_file(path, threads=opts.threads, device=opts.device)
            return load_runner(spec, engine=path, weights=model.weights, info=model.info, threads=opts.threads)

        stage = "load"
        with numerics(spec), PeakMemory(gpu=base["device"] == "cuda") as mem:
            t0 = time.perf_counter()
            with step("load"):
                runner = load(artifact)
            load_s = time.perf_counter() - t0
            with runner:
                if spec is None:
                    base.update(runtime=runner.backend, precision=runner.info.precision,
                                device="cuda" if str(runner.device).startswith("cuda") else "cpu")
                inputs, labels = data_for(runner.info)
                stage = "accuracy"
                accuracy = None
                if model.reference is not None or job.baseline:
                    with step("accuracy"):
                        logits = evaluate(runner.infer, inputs, max(opts.sizes))
                    if job.baseline:  # the --baseline file: every other row is compared with its logits
                        model.reference = logits
                    accuracy = accuracy_result(model.reference, logits, labels)
                stage = "timing"
                if engines is None:
                    with step("time"):
                        timed = _time_batches(lambda b: contextlib.nullcontext(runner), inputs, opts.sizes,
                                              opts.timing, opts.device_timing)
            if engines is not None:  # one engine loaded at a time, so peak memory is one engine's
                with step("time"):
                    timed = _time_batches(lambda b: load(engines[b]), inputs, opts.sizes, opts.timing,
                                          opts.device_timing)
        batches, warnings, device_scope = timed
        peak = mem.result()
    except Exception as e:  # noqa: BLE001 - a backend's failure is a result, reported with its reason
        msg = str(e).splitlines()[0] if str(e) else ""
        kind = "" if isinstance(e, RtresnetError) else f"{type(e).__name__}: "
        reason = f"{stage} failed: {kind}{msg}"
        log.warning("%s: %s", name, reason, exc_info=log.isEnabledFor(logging.DEBUG))
        return BackendResult(status="failed", reason=reason, **base)
    size = artifact.stat().st_size if isinstance(artifact, Path) and artifact.is_file() else None
    if size is None and model.weights is not None and Path(model.weights).is_file():
        size = Path(model.weights).stat().st_size  # torch: the FP32 weights file it loads
    # engines made here live in a work folder (often temporary): name them; a user's --models file keeps its path
    shown = None if artifact is None else str(artifact) if spec is None else Path(artifact).name
    return BackendResult(status="ok", artifact=shown, size_bytes=size,
                         build_s=build_s, load_s=load_s, peak_rss_mib=peak.peak_rss_mib,
                         peak_gpu_mib=peak.peak_gpu_mib, batches=tuple(batches), accuracy=accuracy,
                         warnings=tuple(warnings), device_scope=device_scope, **base)


def _with_speedups(results: list[BackendResult], busy: bool) -> tuple[list[BackendResult], str]:
    """Speedup against the baseline: a --baseline file for every row, else PyTorch on the same device (torch for
    CPU rows, torch-cuda for GPU rows). A speedup is flagged unstable when either timing varied (high CoV) or the
    machine was busy: the ratio of two latencies is only as good as the worse of them."""
    ok = {r.name: r for r in results if r.ok}
    chosen = next((r for r in results if r.baseline), None)
    if chosen is not None:
        refs = {"cpu": chosen if chosen.ok else None, "cuda": chosen if chosen.ok else None}
    else:
        refs = {"cpu": ok.get("torch"), "cuda": ok.get("torch-cuda") or ok.get("torch")}
    baselines = {r.name for r in refs.values() if r is not None}
    out = []
    for r in results:
        ref = refs.get(r.device)
        r = dataclasses.replace(r, baseline=r.baseline if chosen is not None else r.name in baselines)
        if ref is None or not r.ok:
            out.append(r)
            continue
        batches = []
        for b in r.batches:
            rb = ref.batch(b.batch_size)
            shaky = rb is not None and ref.name != r.name and (busy or b.host.unstable or rb.host.unstable)
            batches.append(dataclasses.replace(
                b, speedup_vs_baseline=rb.host.latency_ms_median / b.host.latency_ms_median if rb else None,
                speedup_unstable=shaky))
        out.append(dataclasses.replace(r, batches=tuple(batches)))
    if chosen is not None:
        return out, chosen.name if chosen.ok else f"none ({chosen.name} did not run)"
    names = [n for n in ("torch", "torch-cuda") if n in ok]
    return out, " / ".join(names) if names else "none (no PyTorch baseline ran)"


class _FirstSyntheticWarning(logging.Filter):
    """Lets one 'SYNTHETIC DATA' warning of the data loader through per benchmark: the bench data and the INT8
    calibration data (and each input format) are loaded separately, and one warning says it for all of them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("SYNTHETIC DATA"):
            return True
        seen, self.seen = self.seen, True
        return not seen


def _select_backends(backends: str | Sequence[str] | None, device: str | None) -> tuple[BackendSpec, ...]:
    """The backends to run: those named (all on ``device`` when one is given), else the defaults for the device."""
    if backends is None:
        return parse_backends(DEFAULT_GPU_BACKENDS if device == "cuda" else DEFAULT_BACKENDS)
    specs = parse_backends(backends)
    other = [s.name for s in specs if device is not None and s.device != device]
    if other:
        raise UsageError(f"--device {device}, but {', '.join(other)} {'runs' if len(other) == 1 else 'run'} on "
                         f"{'the GPU' if device == 'cpu' else 'the CPU'}; drop {'it' if len(other) == 1 else 'them'} "
                         f"from --backends or change --device")
    return specs


def _check_device(device: str | None) -> None:
    if device is None:
        return
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cuda":
        from rtresnet.environment import gpu_info

        if gpu_info() is None:
            raise RtresnetError("--device cuda, but no CUDA GPU is visible to PyTorch (check nvidia-smi and that "
                                "PyTorch is a CUDA build); use --device cpu on this machine")


def run(arch: str | None = None, *, weights: str | Path | None = None, num_classes: int | None = None,
        in_channels: int = 3, input_size: int | tuple[int, int] = 224,
        backends: str | Sequence[str] | None = None, models: Sequence[str | Path] = (),
        baseline: str | Path | None = None, device: str | None = None,
        batch_sizes: Sequence[int] = (1,), timing: TimingConfig | None = None, threads: int | None = None,
        data: str | Path = "synthetic", samples: int | None = None, calib_data: str | Path | None = None,
        calib_size: int = 512, calib_method: str = "entropy", seed: int = 0,
        preprocessing: Preprocessing | None = None, min_top1: float | None = None,
        max_top1_drop: float | None = None, work_dir: str | Path | None = None,
        device_timing: bool = True) -> BenchReport:
    """Benchmark ``backends`` of ``arch`` (made here through export/precision/build) or existing ``models`` files
    against a baseline on the same inputs: latency, throughput, accuracy, size, memory.

    The baseline is PyTorch eager FP32 (with ``arch``, or ``models`` plus ``weights``), or ``baseline``: one of the
    ``models`` files, which the others are then compared with directly (no PyTorch needed). ``backends`` default to
    DEFAULT_BACKENDS (DEFAULT_GPU_BACKENDS with ``device="cuda"``); ``device`` restricts them to one device.
    ``min_top1`` (%) and ``max_top1_drop`` (points) are gates on every row but the baseline's: misses land in
    ``report.gate_failures``.
    Example: ``run("resnet18", backends="torch,onnxruntime,onnxruntime-int8", batch_sizes=(1, 8))``.
    """
    from rtresnet.environment import cpu_info

    if (arch is None) == (not models):
        raise RtresnetError("give an architecture (--arch) or model files (--models), not both or neither")
    _check_device(device)
    sizes = _sizes(batch_sizes)
    timing = timing or TimingConfig()
    threads = threads or cpu_info()["usable_cores"]
    if threads < 1:
        raise RtresnetError(f"threads must be at least 1, got {threads}")
    validate_gates(min_top1, max_top1_drop)
    files = [Path(m) for m in models]
    if baseline is not None and arch is not None:
        raise UsageError("--baseline picks one of the --models files; with --arch the baseline is PyTorch")
    chosen = baseline_file(files, baseline)
    # --models files are compared with the PyTorch baseline when its weights are given (and no file is the baseline)
    specs = (_select_backends(backends, device) if arch is not None else
             (BACKENDS["torch-cuda" if device == "cuda" else "torch"],) if weights is not None else ())
    uses_torch = arch is not None or weights is not None
    torch = None
    if uses_torch:
        import torch
    old_threads = torch.get_num_threads() if torch else None
    tmp = tempfile.TemporaryDirectory(prefix="rtresnet-bench-") if work_dir is None else None
    folder = Path(tmp.name if tmp else work_dir)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    opts = _Options(sizes, timing, threads, data, samples, calib_data, calib_size, calib_method, seed, min_top1,
                    max_top1_drop, device_timing, device)
    synthetic_once = _FirstSyntheticWarning()
    data_log = logging.getLogger("rtresnet.data.datasets")
    data_log.addFilter(synthetic_once)
    try:
        if torch is not None:
            torch.set_num_threads(threads)  # the baseline gets the same cores as onnxruntime
        if arch is not None:
            model, torch_model = arch_model(arch, weights, num_classes, in_channels, input_size, preprocessing,
                                             str(data), folder)
        else:
            model, torch_model = files_model(files, None if chosen is not None and weights is None else weights,
                                              device)
        return _run(model, torch_model, specs, files, chosen, opts, folder)
    finally:
        data_log.removeFilter(synthetic_once)
        if torch is not None:
            torch.set_num_threads(old_threads)
        if tmp is not None:
            tmp.cleanup()


def _run(model: BenchModel, torch_model: Any, specs: tuple[BackendSpec, ...], models: list[Path],
         chosen: Path | None, opts: _Options, folder: Path) -> BenchReport:
    from rtresnet.data.datasets import load_dataset

    data, seed, sizes = opts.data, opts.seed, opts.sizes
    size = opts.samples or (SYNTHETIC_SAMPLES if str(data) == "synthetic" else None)
    with step("data"):
        dataset = load_dataset(data, model.info, size=size, seed=seed, split="test")
    inputs, labels = dataset.inputs, dataset.labels
    untrusted = guessed_labels(data, model.info) if labels is not None else None
    if untrusted:
        log.warning("%s", untrusted)
        labels = None
    cache = {model.info.input_format: (inputs, labels)}

    def data_for(info: ModelInfo) -> tuple[np.ndarray, np.ndarray | None]:
        """The same samples (same seed) for every backend, in each model's own input format."""
        if info.input_format not in cache:
            ds = load_dataset(data, dataclasses.replace(model.info, input_format=info.input_format), size=size,
                              seed=seed, split="test")
            cache[info.input_format] = (ds.inputs, None if untrusted else ds.labels)
        return cache[info.input_format]

    if labels is None and (opts.min_top1 is not None or opts.max_top1_drop is not None):
        why = "its class folders do not match the model's classes" if untrusted else "it has no labels"
        raise RtresnetError(f"--min-top1/--max-top1-drop need labeled data, but {why} ({dataset.source}); "
                            f"use --data digits or an ImageFolder directory (one folder per class)")
    # with a --baseline file, its logits become the reference when its row runs (first)
    if torch_model is not None and chosen is None:
        with step("accuracy"):
            model.reference = _reference_logits(torch_model, inputs, max(sizes))
    elif chosen is None:
        log.warning("no PyTorch weights for %s: pass --weights to compare the models with PyTorch FP32, or "
                    "--baseline FILE to compare them with one of the files", model.info.arch)
    del torch_model
    # INT8 calibrates on --calib-data, else on the bench data (quantize_int8 takes digits' train split)
    workspace = Workspace(folder, weights=model.weights, info=model.info,
                          max_batch=max(sizes), calib_data=opts.calib_data or data, calib_size=opts.calib_size,
                          calib_method=opts.calib_method, seed=seed)

    jobs: list[_Job] = []
    for spec in specs:
        prepare = ((lambda: None) if spec.runtime == "torch" else
                   (lambda s=spec: workspace.engines(s, sizes)) if spec.runtime == "tensorrt" else
                   (lambda s=spec: workspace.engine(s)))
        jobs.append(_Job(spec.name, short_label(spec.runtime, spec.precision, spec.device, spec.channels_last),
                         spec, prepare))
    for p, label in zip(models, model.file_labels, strict=True):
        jobs.append(_Job(p.name, label, None, lambda p=p: p, baseline=p == chosen))
    jobs.sort(key=lambda j: not j.baseline)  # the baseline file first: its logits are the others' reference
    load_before = load_average()
    results = [_run_backend(job, model, data_for, opts)
               for job in track(jobs, total=len(jobs), description="benchmarking")]
    env = environment_block(opts.threads)
    load_after = load_average()
    env["load_average_1m"] = {"before": load_before[0] if load_before else None,
                              "after": load_after[0] if load_after else None}
    busy = busy_note(load_before, load_after, env["cpu"]["usable_cores"])
    results, baseline = _with_speedups(results, busy=busy is not None)
    notes = [n for n in (busy,) if n]
    gpu = any(r.device == "cuda" and r.ok for r in results)
    if any(r.ok and r.device == "cuda" and r.precision == "fp32" for r in results):
        notes.append(FP32_GPU_NOTE)
    scopes = sorted({r.device_scope for r in results if r.ok and r.device_scope})
    device_scope = "; ".join(f"{DEVICE_SCOPES[k]} ({', '.join(r.name for r in results if r.device_scope == k)})"
                             for k in scopes) or None
    return BenchReport(
        created_at=utc_now(),
        model={"arch": model.info.arch, "num_classes": model.info.num_classes, "in_channels": model.info.in_channels,
               "input_size": list(model.info.input_size), "weights": model.info.weights,
               "input_format": model.info.input_format},
        data={"source": dataset.source, "samples": int(len(inputs)), "labeled": labels is not None,
              "synthetic": bool(dataset.synthetic), "fingerprint": dataset.fingerprint},
        timing={"batch_sizes": list(sizes), "threads": opts.threads, "description": opts.timing.describe(),
                "host_scope": HOST_SCOPE, "device_scope": device_scope, "unstable_cov": UNSTABLE_COV},
        memory_method=memory_method(gpu), environment=env, baseline=baseline, notes=tuple(notes),
        backends=tuple(results), gates={"min_top1_pct": opts.min_top1, "max_top1_drop_pts": opts.max_top1_drop},
        gate_failures=check_gates(results, opts.min_top1, opts.max_top1_drop), machine_busy=busy is not None)


__all__ = ["BACKENDS", "DEFAULT_BACKENDS", "DEFAULT_GPU_BACKENDS", "DEVICES", "run"]
