"""TensorRT runner: a plan file plus its sidecar, run through one execution context on a dedicated CUDA stream.

Only the TensorRT Python API present in both 10.x and 11.x is used (names-based I/O, ``execute_async_v3``);
device memory comes from PyTorch. ``tensorrt`` is imported lazily so that every CPU path works without it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from rtresnet._trt import import_tensorrt, logger
from rtresnet.errors import RtresnetError
from rtresnet.runtime.base import InputSpec, Runner
from rtresnet.sidecar import Sidecar

log = logging.getLogger(__name__)

ALIGNMENT = 256  # bytes: TensorRT's set_tensor_address needs device pointers aligned this way


class TrtRunner(Runner):
    """A TensorRT engine behind the runner contract.

    One execution context per runner; input and output device buffers are allocated once for the largest profile
    shape and reused; work runs on the runner's own ``torch.cuda.Stream``. A contiguous CUDA tensor of the right
    dtype on the engine's device is read in place (zero-copy) unless CUDA graphs are on or its address is not
    256-byte aligned (a slice such as ``x[1:]``), which TensorRT needs; results are copied out of the reused
    buffer, so a returned tensor stays valid. With ``cuda_graph=True`` one graph per batch size is captured on first
    use (after a warm-up run) and replayed afterwards; if a capture fails, the runner warns and runs without graphs
    from then on. The single context and buffers are not re-entrant: concurrent ``infer`` calls are serialized on
    the runner's lock.
    """

    backend = "tensorrt"

    def __init__(self, path: str | Path, sidecar: Sidecar, *, device: str | None = None, cuda_graph: bool = False,
                 check_finite: bool = False, max_batch: int | None = None) -> None:
        import torch

        from rtresnet.runtime.guard import check_engine_loadable

        path = Path(path)
        device = device or "cuda"
        if not device.startswith("cuda"):
            raise RtresnetError(f"TensorRT engines run on a CUDA device, not {device!r}; use --device cuda")
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise RtresnetError(f"bad device {device!r}; use cuda or cuda:N") from None
        if not torch.cuda.is_available():
            raise RtresnetError("this TensorRT engine needs a CUDA GPU and PyTorch sees none; on a CPU machine "
                                "build and run an onnxruntime engine (rtresnet build --backend onnxruntime)")
        explicit = dev.index is not None
        # "cuda" and "cuda:0" compare unequal: pin the index for the zero-copy device check and the load guard
        dev = dev if explicit else torch.device("cuda", torch.cuda.current_device())
        check_engine_loadable(sidecar, path, device_index=dev.index)  # the GPU it runs on, not GPU 0
        trt = import_tensorrt()
        self._runtime = trt.Runtime(logger())  # the process-wide logger: TensorRT keeps one pointer to it
        if (sidecar.flags or {}).get("version_compat"):
            # a version-compatible plan embeds its lean runtime; TensorRT runs that host code only when allowed
            self._runtime.engine_host_code_allowed = True
        # TensorRT puts the engine and its context on the *current* CUDA device: make that the one asked for
        with torch.cuda.device(dev) if explicit else contextlib.nullcontext():
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            context = engine.create_execution_context() if engine is not None else None
        if engine is None:
            raise RtresnetError(f"TensorRT could not deserialize {path} (see its log above); rebuild it on this "
                                f"machine with `rtresnet build --force`")
        if context is None:
            raise RtresnetError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1 or not sidecar.inputs or not sidecar.outputs:
            raise RtresnetError(f"{path} has inputs {inputs} and outputs {outputs}; rtresnet runs classifiers "
                                f"with one input and one output")
        self._in, self._out = inputs[0], outputs[0]
        lo, _, hi = (tuple(d) for d in engine.get_tensor_profile_shape(self._in, 0))
        info = sidecar.model
        # dtypes from the hash-verified sidecar (numpy names), so no TensorRT DataType mapping is needed
        in_dtype, out_dtype = sidecar.inputs[0].dtype, sidecar.outputs[0].dtype
        spec = InputSpec(self._in, tuple(int(d) for d in hi[1:]), in_dtype,
                         "NCHW" if info.input_format == "float-nchw" else "NHWC", int(lo[0]), int(hi[0]))
        num_classes = int(tuple(engine.get_tensor_shape(self._out))[-1])
        super().__init__(info, spec, num_classes=num_classes, device=device, check_finite=check_finite,
                         max_batch=max_batch)
        self.path, self.sidecar, self.cuda_graph = path, sidecar, cuda_graph
        self._dev = dev
        self._engine = engine
        self._context = context
        self._stream = torch.cuda.Stream(self._dev)
        self._in_buf = torch.empty(tuple(int(d) for d in hi), dtype=getattr(torch, in_dtype), device=self._dev)
        self._out_buf = torch.empty((int(hi[0]), num_classes), dtype=getattr(torch, out_dtype), device=self._dev)
        self._graphs: dict[int, Any] = {}
        self._events: tuple[Any, Any] | None = None  # CUDA events around the engine's run, see time_compute
        log.debug("TensorRT engine %s: %s, batch %d..%d", path.name, spec.describe(), spec.min_batch, hi[0])

    def time_compute(self, on: bool = True) -> None:
        """Record CUDA events on the runner's own stream around each engine run (the enqueue or graph replay, no
        copies): ``last_compute_ms`` then gives the device compute time of the last engine run (of the last chunk
        when ``infer`` splits a batch above the engine's maximum)."""
        import torch

        self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) if on else None

    @property
    def last_compute_ms(self) -> float | None:
        if self._events is None:
            return None
        start, stop = self._events
        return float(start.elapsed_time(stop))  # both recorded before infer synchronized the stream

    @classmethod
    def from_engine(cls, path: str | Path, sidecar: Sidecar, *, device: str | None = None, **options) -> TrtRunner:
        """The loader's entry point for a plan with its sidecar (the load guard verifies its hash)."""
        return cls(path, sidecar, device=device, **options)

    def _run(self, x: Any) -> Any:
        import torch

        n = x.shape[0]
        host = isinstance(x, np.ndarray)
        caller = torch.cuda.current_stream(self._dev)
        in_place = (not host and not self.cuda_graph and x.device == self._dev and x.data_ptr() % ALIGNMENT == 0)
        # the output is allocated on the caller's stream, which owns it after we return
        y = None if host else torch.empty((n, self.num_classes), dtype=self._out_buf.dtype, device=self._dev)
        self._stream.wait_stream(caller)  # x (and y's allocation) are ordered before our work
        with torch.cuda.stream(self._stream):
            if not in_place:
                self._in_buf[:n].copy_(torch.from_numpy(x) if host else x)  # H2D, D2D from elsewhere or unaligned
            if not self._context.set_input_shape(self._in, tuple(x.shape)):
                raise RtresnetError(f"TensorRT refused input shape {tuple(x.shape)} for {self.path.name}; the "
                                    f"engine takes {self.input_spec.describe()}")
            if self._events:
                self._events[0].record(self._stream)
            if self.cuda_graph:
                self._replay(n)
            else:
                self._bind(x.data_ptr() if in_place else self._in_buf.data_ptr())
                self._execute()
            if self._events:
                self._events[1].record(self._stream)
            if host:
                out = self._out_buf[:n].cpu()  # synchronous device-to-host copy on our stream
            else:
                y.copy_(self._out_buf[:n])
        self._stream.synchronize()
        return out.numpy() if host else y

    def _bind(self, input_ptr: int) -> None:
        """Point the context at the input and the output buffer; TensorRT answers False for a bad address."""
        for name, ptr in ((self._in, input_ptr), (self._out, self._out_buf.data_ptr())):
            if not self._context.set_tensor_address(name, ptr):
                raise RtresnetError(f"TensorRT refused the device address of tensor {name!r} of {self.path.name} "
                                    f"(it needs a {ALIGNMENT}-byte aligned pointer on {self._dev}); see its log "
                                    f"(`rtresnet --debug ...`) and pass a contiguous batch")

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise RtresnetError(f"TensorRT failed to run {self.path.name} (see its log); check the input batch "
                                f"against {self.input_spec.describe()}")

    def _replay(self, n: int) -> None:
        """Replay the graph captured for batch ``n``, capturing it first; plain enqueue if the capture fails."""
        graph = self._graphs.get(n) or self._capture(n)
        if graph is None:
            self._execute()  # addresses are bound; the failed capture ran nothing
        else:
            graph.replay()

    def _capture(self, n: int) -> Any:
        """Capture a graph for batch ``n`` (warm-up run, sync, capture, as trtexec does), or None on failure, after
        which this runner stops using CUDA graphs."""
        import torch

        self._bind(self._in_buf.data_ptr())
        self._execute()  # the first enqueue does lazy initialisation that must not be captured
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            # thread-local capture, as trtexec does, so other threads' CUDA calls do not break it
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                self._execute()
            finally:
                graph.capture_end()  # always leave capture mode, or the stream stays unusable
        except Exception as e:  # noqa: BLE001 - TensorRT or CUDA refusing the capture: fall back, do not fail
            self.cuda_graph = False
            log.warning("CUDA graph capture failed for %s at batch %d (%s); running it without CUDA graphs",
                        self.path.name, n, str(e).splitlines()[0] if str(e) else type(e).__name__)
            return None
        self._graphs[n] = graph
        log.debug("captured a CUDA graph for batch %d", n)
        return graph

    def _release(self) -> None:
        self._graphs.clear()
        self._events = None
        self._context = None
        self._engine = None
        self._in_buf = self._out_buf = None
