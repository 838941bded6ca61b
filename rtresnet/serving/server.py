"""``serve``: any model ``rtresnet.runtime.load`` takes, behind a real Triton Inference Server (PyTriton's bundled
tritonserver, Python backend) with dynamic batching, HTTP, gRPC and Prometheus metrics. rtresnet adds no server of its
own: Triton batches and queues; each Triton model instance runs one rtresnet Runner.

Outputs: the engine's logits, plus ``topk_labels`` / ``topk_probabilities`` / ``topk_indices`` (computed only when a
request asks for them). Triton's classification extension (``class_count`` on the logits output) works as well.
The model's preprocessing, labels and identity are in the model config's ``parameters`` (``rtresnet.model_info``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rtresnet.errors import RtresnetError
from rtresnet.runtime.base import top_predictions
from rtresnet.serving.model_config import MODEL_INFO_PARAMETER, SERVE_EXTRA
from rtresnet.serving.repository import check_model_name, default_model_name
from rtresnet.spec import check_range

log = logging.getLogger(__name__)

TOPK_OUTPUTS = ("topk_labels", "topk_probabilities", "topk_indices")
# Statistics stay readable (load tests read the batch sizes Triton formed); the rest of PyTriton's default list
# stays behind its generated token.
RESTRICTED_ENDPOINTS = ["shared-memory", "model-repository", "trace", "logging"]


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens and batches. Port 0 picks a free port."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str | None = None          # default: the model file's name
    max_batch: int | None = None           # default: the engine's maximum batch, else 32
    dynamic_batching: bool = True
    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()
    instances: int = 1
    max_queue_size: int = 0                # 0: unbounded; else a full queue rejects new requests at once
    topk: int = 5
    runner_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoints:
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    model_name: str

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def ready_line(self) -> str:
        return (f"READY model={self.model_name} http={self.http_url} grpc={self.grpc_url} "
                f"metrics={self.metrics_url}")


def _require_pytriton() -> None:
    try:
        import pytriton  # noqa: F401
    except ImportError:
        raise RtresnetError(f"serving needs PyTriton (a bundled Triton Inference Server); {SERVE_EXTRA}") from None


def use_running_libpython() -> None:
    """PyTriton's Python-backend stub links libpython without an RPATH: under pyenv it picks up the system's
    libpython while loading this interpreter's standard library, and model load fails ('_thread.RLock' object has no
    attribute '_recursion_count'). The running interpreter's LIBDIR first on LD_LIBRARY_PATH (inherited by Triton)
    makes the stub use the same Python as ours."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if paths[:1] != [libdir]:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in paths if p != libdir]])


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port(host: str, port: int, what: str, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton binds: TIME_WAIT leftovers are fine
        try:
            s.bind((host, port))
        except PermissionError:
            raise RtresnetError(f"no permission to listen on {host}:{port} ({what}); pass {option} above 1023") \
                from None
        except OSError as e:
            if e.errno == 98:  # EADDRINUSE
                raise RtresnetError(f"port {port} on {host} is in use ({what}); pass another {option} "
                                    f"(0 picks a free one)") from None
            raise RtresnetError(f"cannot listen on {host}:{port} ({what}): {e.strerror}") from None


def resolve_ports(settings: ServeSettings) -> ServeSettings:
    """Ports checked free before Triton starts (a busy port is a one-line error, not a dying child); 0 -> free."""
    try:
        socket.getaddrinfo(settings.host, None)
    except OSError:
        raise RtresnetError(f"cannot resolve host {settings.host!r}; use an address such as 127.0.0.1") from None
    ports = {}
    for attr, what, option in (("http_port", "HTTP", "--http-port"), ("grpc_port", "gRPC", "--grpc-port"),
                               ("metrics_port", "metrics", "--metrics-port")):
        port = getattr(settings, attr)
        if not 0 <= port <= 65535:
            raise RtresnetError(f"{option} {port} is not a port number (0-65535)")
        if port == 0:
            port = _free_port(settings.host)
        else:
            _check_port(settings.host, port, what, option)
        ports[attr] = port
    if len(set(ports.values())) != len(ports):
        raise RtresnetError(f"HTTP, gRPC and metrics need three different ports, got {sorted(ports.values())}")
    return replace(settings, **ports)


class _Model:
    """One Triton model instance's inference callable over its own Runner."""

    def __init__(self, runner: Any, topk: int) -> None:
        self.runner = runner
        self.input_name = runner.input_spec.name
        self.topk = min(topk, runner.num_classes)

    def __call__(self, requests: list) -> list[dict[str, np.ndarray]]:
        arrays = [r[self.input_name] for r in requests]
        bad = [i for i, a in enumerate(arrays) if a.dtype.kind == "f" and not np.isfinite(a).all()]
        if bad:
            # PyTriton answers one execution with one error: requests batched with a bad one fail with it.
            raise RtresnetError(f"input contains NaN or inf values ({len(bad)} of {len(requests)} requests in this "
                                f"batch); check the client's preprocessing")
        x = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        logits = self.runner.infer(np.ascontiguousarray(x))
        wanted = set().union(*(r.requested_output_names or TOPK_OUTPUTS for r in requests))
        outputs: dict[str, np.ndarray] = {"logits": logits}
        if wanted & set(TOPK_OUTPUTS):
            top = top_predictions(logits.astype(np.float32), self.runner.info, self.topk)
            outputs["topk_labels"] = np.array([[p.label.encode() for p in row] for row in top], dtype=np.object_)
            outputs["topk_probabilities"] = np.array([[p.probability for p in row] for row in top], np.float32)
            outputs["topk_indices"] = np.array([[p.index for p in row] for row in top], np.int64)
        out, start = [], 0
        for a in arrays:
            stop = start + a.shape[0]
            out.append({k: v[start:stop] for k, v in outputs.items()})
            start = stop
        return out


@dataclass(frozen=True)
class RunningServer:
    endpoints: Endpoints
    is_alive: Callable[[], bool]


@contextlib.contextmanager
def start_server(model: str | Path, settings: ServeSettings = ServeSettings(), *, backend: str | None = None,
                 device: str | None = None, debug: bool = False) -> Iterator[RunningServer]:
    """Start Triton serving ``model``; yield once the model answers; stop Triton and close the runners on exit.

    Triton's own log goes to a temporary file (its last error is quoted when it fails to start), or with ``debug``
    to this process's output.

    Example::

        free = ServeSettings(http_port=0, grpc_port=0, metrics_port=0)
        with start_server("engines/resnet18.onnx", free) as server:
            print(server.endpoints.http_url)
    """
    _require_pytriton()
    path = Path(model)
    name = check_model_name(settings.model_name or default_model_name(path))
    if settings.instances < 1:
        raise RtresnetError(f"instances must be at least 1, got {settings.instances}")
    if settings.topk < 1:
        raise RtresnetError(f"topk must be at least 1, got {settings.topk}")
    if settings.max_queue_delay_us < 0 or settings.max_queue_size < 0:
        raise RtresnetError("max queue delay and max queue size cannot be negative")
    if settings.max_queue_size and not settings.dynamic_batching:
        raise RtresnetError("a max queue size needs dynamic batching (Triton's queue policy belongs to its batcher)")
    settings = resolve_ports(settings)
    from rtresnet.runtime import load

    runners = []
    try:
        for _ in range(settings.instances):  # one runner per Triton instance: instances run side by side
            runners.append(load(path, backend=backend, device=device, **settings.runner_options))
        endpoints = Endpoints(settings.host, settings.http_port, settings.grpc_port, settings.metrics_port, name)
        with _triton(runners, settings, endpoints, debug) as triton:
            yield RunningServer(endpoints, triton.is_alive)
    finally:
        for r in runners:
            r.close()


def _max_batch(runner: Any, asked: int | None) -> int:
    top = runner.input_spec.max_batch
    if asked is not None:
        return check_range("batch", asked, "max batch")  # above the engine's maximum the runner splits the batch
    return int(top or runner.info.max_batch or 32)


@contextlib.contextmanager
def _triton(runners: list, settings: ServeSettings, endpoints: Endpoints, debug: bool) -> Iterator[Any]:
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    use_running_libpython()
    first = runners[0]
    spec = first.input_spec
    max_batch = _max_batch(first, settings.max_batch)
    bad = [b for b in settings.preferred_batch_sizes if not 1 <= b <= max_batch]
    if bad:
        raise RtresnetError(f"preferred batch sizes {bad} are outside 1..{max_batch} (the served max batch)")
    probe = first.infer(np.zeros((1, *spec.sample_shape), dtype=spec.dtype))  # warm-up; output dtype and width
    k = min(settings.topk, first.num_classes)
    outputs = [Tensor(name="logits", dtype=probe.dtype.type, shape=(probe.shape[1],)),
               Tensor(name="topk_labels", dtype=np.bytes_, shape=(k,)),
               Tensor(name="topk_probabilities", dtype=np.float32, shape=(k,)),
               Tensor(name="topk_indices", dtype=np.int64, shape=(k,))]
    policy = QueuePolicy(max_queue_size=settings.max_queue_size) if settings.max_queue_size else None
    batcher = DynamicBatcher(max_queue_delay_microseconds=settings.max_queue_delay_us,
                             preferred_batch_size=list(settings.preferred_batch_sizes) or None,
                             default_queue_policy=policy)
    # Without a batcher Triton runs each request as it came (client-side batches still up to max_batch)
    config = ModelConfig(max_batch_size=max_batch, batching=True,
                         batcher=batcher if settings.dynamic_batching else None)
    log_dir = None if debug else Path(tempfile.mkdtemp(prefix="rtresnet-triton-"))
    triton_log = None if log_dir is None else log_dir / "tritonserver.log"
    if not debug:  # PyTriton logs each failed request with a traceback; rtresnet's error reply says enough
        logging.getLogger("pytriton").setLevel(logging.ERROR)
    triton_config = TritonConfig(http_address=settings.host, http_port=settings.http_port,
                                 grpc_address=settings.host, grpc_port=settings.grpc_port,
                                 metrics_address=settings.host, metrics_port=settings.metrics_port,
                                 allow_gpu_metrics=False, exit_timeout_secs=5, log_verbose=1 if debug else 0,
                                 log_file=triton_log)
    triton = Triton(config=triton_config, security_config=TritonSecurityConfig(
        restricted_endpoints=RESTRICTED_ENDPOINTS))
    try:
        triton.bind(endpoints.model_name, [_Model(r, settings.topk) for r in runners],
                    inputs=[Tensor(name=spec.name, dtype=np.dtype(spec.dtype).type, shape=spec.sample_shape)],
                    outputs=outputs, config=config)
        _publish_model_info(triton, endpoints.model_name, first)
        triton.run()
    except Exception as e:
        triton.stop()
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)
        if isinstance(e, RtresnetError):
            raise
        reason = _last_error(triton_log) or (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise RtresnetError(f"Triton did not start: {reason}") from None
    try:
        yield triton
    finally:
        triton.stop()
        if log_dir is not None:
            shutil.rmtree(log_dir, ignore_errors=True)


def _last_error(log_file: Path | None) -> str | None:
    """The last error line of Triton's log ("E1202 18:49:46 ... file.cc:470] message")."""
    if log_file is None or not log_file.is_file():
        return None
    errors = [line for line in log_file.read_text(errors="replace").splitlines() if line.startswith("E")]
    return errors[-1].split("] ", 1)[-1].strip() if errors else None


def _publish_model_info(triton: Any, name: str, runner: Any) -> None:
    """Put ModelInfo (preprocessing, labels, arch, precision) into the model config's parameters, where clients read
    it with get_model_config. PyTriton 0.7 has no option for it; its generated config is extended before load."""
    models = [m for m in triton._model_manager.models if m.model_name == name]
    if len(models) != 1 or not hasattr(models[0], "_get_triton_model_config"):
        raise RtresnetError("this PyTriton version is not the one rtresnet serves with; "
                            f"{SERVE_EXTRA}")
    params = models[0]._get_triton_model_config().backend_parameters
    params[MODEL_INFO_PARAMETER] = json.dumps(runner.info.to_dict(), sort_keys=True)


def serve(model: str | Path, settings: ServeSettings = ServeSettings(), *, backend: str | None = None,
          device: str | None = None, on_ready: Callable[[Endpoints], None] | None = None,
          stop: threading.Event | None = None, debug: bool = False) -> None:
    """Serve ``model`` until SIGINT or SIGTERM (or ``stop`` is set); ``on_ready`` is called once it answers.
    Both signals stop Triton and its stubs cleanly and free their shared memory."""
    stop = stop or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with start_server(model, settings, backend=backend, device=device, debug=debug) as server:
            if on_ready is not None:
                on_ready(server.endpoints)
            while not stop.wait(0.5):
                if not server.is_alive():
                    raise RtresnetError("Triton stopped unexpectedly; run with --debug for its log")
            log.info("stopping Triton")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
