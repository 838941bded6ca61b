"""``loadtest``: a bounded closed-loop load on a running Triton (any Triton: ``rtresnet serve`` or the NGC container).

``concurrency`` clients each keep one request in flight until ``requests`` were sent or ``timeout_s`` passed (the
load is bounded in count and in time, like perf_analyzer's count windows). The latency of a request is measured
around the client's ``infer`` call (serialization, network, queue, batching, compute, reply). The batch sizes Triton
formed come from its statistics extension, read before and after the run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rtresnet.bench.stats import LatencyStats
from rtresnet.errors import RtresnetError
from rtresnet.serving.model_config import SERVE_EXTRA

log = logging.getLogger(__name__)

PROTOCOLS = ("http", "grpc")
MAX_ERRORS_KEPT = 5


@dataclass(frozen=True)
class ServerStats:
    """What Triton's statistics say happened during the run (differences of its counters)."""

    inferences: int                      # samples run by the model
    executions: int                      # model executions (one per batch Triton formed)
    batch_sizes: dict[int, int]          # batch size -> executions of that size

    @property
    def mean_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


@dataclass(frozen=True)
class LoadTestResult:
    url: str
    protocol: str
    model_name: str
    concurrency: int
    batch_size: int                      # samples per request
    requests_sent: int
    requests_failed: int
    duration_s: float
    throughput_req_s: float
    throughput_img_s: float
    latency: LatencyStats | None         # successful requests only
    server: ServerStats | None           # None when the statistics endpoint is not readable
    errors: tuple[str, ...] = field(default=())  # the first distinct error messages
    stopped_by_timeout: bool = False

    @property
    def ok(self) -> bool:
        return self.requests_failed == 0 and self.requests_sent > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.server is not None:
            d["server"]["mean_batch"] = self.server.mean_batch
        return d


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """(protocol, "host:port") from ``http://h:p``, ``grpc://h:p`` or ``h:p`` (HTTP unless ``protocol`` says)."""
    parsed = urlparse(url if "://" in url else f"{protocol or 'http'}://{url}")
    scheme = parsed.scheme.lower()
    if scheme not in PROTOCOLS:
        raise RtresnetError(f"URL scheme {scheme!r} is not one of {', '.join(PROTOCOLS)} (e.g. http://127.0.0.1:8000)")
    if protocol is not None and protocol != scheme:
        raise RtresnetError(f"the URL says {scheme} but the protocol asked is {protocol}")
    try:
        port = parsed.port
    except ValueError:
        raise RtresnetError(f"{url!r} has no valid port") from None
    if not parsed.hostname or port is None:
        example = f"{scheme}://127.0.0.1:{8001 if scheme == 'grpc' else 8000}"
        raise RtresnetError(f"{url!r} needs a host and a port, e.g. {example}")
    return scheme, f"{parsed.hostname}:{port}"


def client_module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise RtresnetError(f"the load test talks to Triton with tritonclient; {SERVE_EXTRA}") from None
    return module


def connect(module: Any, protocol: str, address: str, timeout_s: float) -> Any:
    if protocol == "grpc":
        return module.InferenceServerClient(address)
    return module.InferenceServerClient(address, connection_timeout=timeout_s, network_timeout=timeout_s)


def describe_error(e: Exception) -> str:
    text = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    return (text or type(e).__name__).splitlines()[0]


def as_dict(reply: Any, protocol: str) -> dict:
    """tritonclient's HTTP replies are dicts already; its gRPC replies are protobuf messages."""
    if protocol != "grpc":
        return reply
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(reply, preserving_proto_field_name=True)


def _input_of(client: Any, module: Any, protocol: str, model: str) -> tuple[str, str, list[int], str]:
    """(name, Triton datatype, sample dims, first output) of ``model`` from its metadata."""
    try:
        meta = client.get_model_metadata(model)
        ready = client.is_model_ready(model)
    except Exception as e:  # tritonclient raises InferenceServerException, or connection errors
        raise RtresnetError(f"cannot reach model {model!r}: {describe_error(e)}") from None
    if not ready:
        raise RtresnetError(f"model {model!r} is not ready on the server")
    meta = as_dict(meta, protocol)
    inputs, outputs = meta.get("inputs", []), meta.get("outputs", [])
    if len(inputs) != 1 or not outputs:
        raise RtresnetError(f"model {model!r} has {len(inputs)} inputs; the load test drives one-input classifiers")
    first = inputs[0]
    dims = [int(d) for d in first["shape"]][1:]
    if any(d < 1 for d in dims):
        raise RtresnetError(f"input {first['name']} has dynamic dims {first['shape']}; the load test needs fixed ones")
    return first["name"], first["datatype"], dims, outputs[0]["name"]


def _server_stats(client: Any, protocol: str, model: str) -> dict | None:
    try:
        stats = client.get_inference_statistics(model)
    except Exception as e:  # a restricted statistics endpoint: the run still counts, without batch sizes
        log.info("Triton's statistics are not readable (%s); batch sizes are not reported", describe_error(e))
        return None
    stats = as_dict(stats, protocol)
    entries = stats.get("model_stats") or []
    if not entries:
        return None
    e = entries[0]
    return {"inferences": int(e.get("inference_count", 0)), "executions": int(e.get("execution_count", 0)),
            "batches": {int(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0))
                        for b in e.get("batch_stats", [])}}


def _stats_delta(before: dict | None, after: dict | None) -> ServerStats | None:
    if before is None or after is None:
        return None
    sizes = {size: count - before["batches"].get(size, 0) for size, count in after["batches"].items()}
    return ServerStats(after["inferences"] - before["inferences"], after["executions"] - before["executions"],
                       {s: n for s, n in sorted(sizes.items()) if n > 0})


def _sample(datatype: str, shape: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if datatype == "UINT8":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    dtype = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}.get(datatype)
    if dtype is None:
        raise RtresnetError(f"the load test sends float or uint8 images; this model takes {datatype}")
    return rng.standard_normal(shape).astype(dtype)


def loadtest(url: str, model_name: str, *, concurrency: int = 1, requests: int = 100, batch_size: int = 1,
             timeout_s: float = 60.0, protocol: str | None = None, seed: int = 0) -> LoadTestResult:
    """Send ``requests`` requests of ``batch_size`` random samples from ``concurrency`` clients to ``model_name`` on
    the Triton at ``url``; stop early after ``timeout_s`` seconds. Failed requests are counted, never retried."""
    for value, what in ((concurrency, "concurrency"), (requests, "requests"), (batch_size, "batch size")):
        if value < 1:
            raise RtresnetError(f"{what} must be at least 1, got {value}")
    if timeout_s <= 0:
        raise RtresnetError(f"timeout must be positive, got {timeout_s}")
    protocol, address = parse_url(url, protocol)
    module = client_module(protocol)
    probe = connect(module, protocol, address, timeout_s)
    name, datatype, dims, output = _input_of(probe, module, protocol, model_name)

    lock = threading.Lock()
    # each client sends one untimed request first (connections, first-call allocations); then the counters are read
    warm = threading.Barrier(concurrency + 1, timeout=timeout_s + 30)
    go = threading.Event()
    issued = 0
    latencies: list[float] = []
    failures: list[str] = []
    deadline = float("inf")  # set when the timed run starts

    def worker(index: int) -> None:
        nonlocal issued
        try:
            client = connect(module, protocol, address, timeout_s)
            data = _sample(datatype, [batch_size, *dims], seed + index)
            inp = module.InferInput(name, data.shape, datatype)
            inp.set_data_from_numpy(data)
            wanted = [module.InferRequestedOutput(output)]
            timeout = {"client_timeout": timeout_s} if protocol == "grpc" else {}
            try:
                client.infer(model_name, [inp], outputs=wanted, **timeout)
            except Exception as e:  # a failing server shows in the timed requests; the message is kept
                log.debug("warm-up request failed: %s", describe_error(e))
        except Exception:
            warm.abort()
            raise
        try:
            warm.wait()
            go.wait()
            while True:
                with lock:
                    if issued >= requests or time.perf_counter() >= deadline:
                        return
                    issued += 1
                t0 = time.perf_counter()
                try:
                    if protocol == "grpc":
                        timeout = {"client_timeout": max(deadline - t0, 0.1)}
                    client.infer(model_name, [inp], outputs=wanted, **timeout)
                except Exception as e:  # every failure is counted with its message
                    with lock:
                        failures.append(describe_error(e))
                    continue
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1e3)
        except threading.BrokenBarrierError:
            return
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        warm.wait()
    except threading.BrokenBarrierError:
        raise RtresnetError(f"the clients did not connect within {timeout_s + 30:.0f} s") from None
    before = _server_stats(probe, protocol, model_name)
    start = time.perf_counter()
    deadline = start + timeout_s
    go.set()
    for t in threads:
        t.join(timeout_s + 30)
    duration = time.perf_counter() - start
    after = _server_stats(probe, protocol, model_name)
    probe.close()
    ok = len(latencies)
    errors = tuple(dict.fromkeys(failures))[:MAX_ERRORS_KEPT]
    return LoadTestResult(url=url, protocol=protocol, model_name=model_name, concurrency=concurrency,
                          batch_size=batch_size, requests_sent=ok + len(failures), requests_failed=len(failures),
                          duration_s=duration, throughput_req_s=ok / duration if duration else 0.0,
                          throughput_img_s=ok * batch_size / duration if duration else 0.0,
                          latency=LatencyStats.from_samples(latencies) if latencies else None,
                          server=_stats_delta(before, after), errors=errors,
                          stopped_by_timeout=ok + len(failures) < requests)
