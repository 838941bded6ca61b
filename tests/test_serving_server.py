"""`rtresnet serve` as users run it: a real Triton (PyTriton's tritonserver) in a subprocess on free loopback ports,
driven over HTTP and gRPC with tritonclient, then stopped with SIGTERM and checked gone (no process, no shared
memory). Load tests run against it with `rtresnet.serving.loadtest`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import rtresnet
from rtresnet.engine import build_engine
from rtresnet.serving import loadtest
from rtresnet.serving.model_config import MODEL_INFO_PARAMETER
from rtresnet.sidecar import read_sidecar
from rtresnet.spec import ModelInfo

pytestmark = [pytest.mark.serving, pytest.mark.slow]

START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Path:
    from rtresnet.export import export_onnx

    folder = tmp_path_factory.mktemp("serve")
    onnx = export_onnx("resnet18", folder / "r18.onnx", num_classes=10, input_size=32, verify=False,
                       labels=[f"class{i}" for i in range(10)]).path
    return Path(build_engine(onnx, backend="onnxruntime", max_batch=8, output=folder / "r18_cpu.onnx").path)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Server:
    process: subprocess.Popen
    http: str
    grpc: str
    model: str
    log: Path
    shm_before: set[str]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> tuple[int, set[int]]:
        """Signal the server; return its exit code and the processes it had started that are still alive."""
        below = descendants(self.process.pid)
        self.process.send_signal(sig)
        code = self.process.wait(timeout_s)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in below):
            time.sleep(0.2)
        return code, {p for p in below if alive(p)}


def start(engine: Path, tmp_path: Path, *args: str) -> Server:
    shm_before = set(os.listdir("/dev/shm"))
    log = tmp_path / f"serve-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}  # the command applies its own fix
    process = subprocess.Popen([sys.executable, "-m", "rtresnet", "serve", str(engine), "--http-port", "0",
                                "--grpc-port", "0", "--metrics-port", "0", "--threads", "1", *args],
                               stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    if not lines or not lines[0].startswith("READY"):
        process.kill()
        pytest.fail(f"serve printed no READY line: {lines} / {log.read_text()[-2000:]}")
    fields = dict(part.split("=", 1) for part in lines[0].split()[1:])
    return Server(process, fields["http"].removeprefix("http://"), fields["grpc"].removeprefix("grpc://"),
                  fields["model"], log, shm_before)


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    srv = start(engine, tmp_path_factory.mktemp("serve_log"), "--max-queue-delay-us", "20000", "--topk", "3")
    yield srv
    if srv.process.poll() is None:
        code, left = srv.stop()
        assert code == 0 and not left, f"exit {code}, still running: {left}"


@pytest.fixture(scope="module")
def runner(engine):
    with rtresnet.load(engine, threads=1) as r:
        yield r


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def http_infer(server: Server, x: np.ndarray, outputs=("logits",), model: str | None = None, **kw):
    client = httpclient.InferenceServerClient(server.http, network_timeout=60)
    inp = httpclient.InferInput("input", list(x.shape), {"float32": "FP32", "float64": "FP64",
                                                         "float16": "FP16"}[x.dtype.name])
    inp.set_data_from_numpy(x)
    wanted = [httpclient.InferRequestedOutput(o, **kw) for o in outputs]
    return client.infer(model or server.model, [inp], outputs=wanted)


def test_http_and_grpc_replies_equal_runner_infer_bitwise(server, runner):
    for n, seed in ((1, 1), (3, 2), (8, 3)):
        x = batch(n, seed)
        expected = runner.infer(x)
        assert np.array_equal(http_infer(server, x).as_numpy("logits"), expected)
        client = grpcclient.InferenceServerClient(server.grpc)
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        reply = client.infer(server.model, [inp], outputs=[grpcclient.InferRequestedOutput("logits")])
        assert np.array_equal(reply.as_numpy("logits"), expected)


def test_topk_outputs_and_classification_extension_match_predict(server, runner):
    x = batch(4, 5)
    expected = runner.predict(x, topk=3)
    reply = http_infer(server, x, outputs=("topk_labels", "topk_probabilities", "topk_indices"))
    labels, probs, idx = (reply.as_numpy(n) for n in ("topk_labels", "topk_probabilities", "topk_indices"))
    for row, want in enumerate(expected):
        assert [b.decode() for b in labels[row]] == [p.label for p in want]
        assert list(idx[row]) == [p.index for p in want]
        np.testing.assert_allclose(probs[row], [p.probability for p in want], rtol=1e-6)
    classes = http_infer(server, x, class_count=3).as_numpy("logits")  # Triton's own "value:index" strings
    assert [[int(c.decode().split(":")[1]) for c in row] for row in classes] == [[p.index for p in w] for w in expected]


def test_model_config_exposes_batching_and_preprocessing(server, runner):
    config = httpclient.InferenceServerClient(server.http).get_model_config(server.model)
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 20000
    info = ModelInfo.from_dict(json.loads(config["parameters"][MODEL_INFO_PARAMETER]["string_value"]))
    assert info == runner.info


@pytest.mark.parametrize("x, model, match", [
    (np.zeros((1, 3, 16, 16), np.float32), None, "unexpected shape"),
    (np.zeros((1, 3, 32, 32), np.float64), None, "data-type|datatype"),
    (np.zeros((9, 3, 32, 32), np.float32), None, "batch-size must be <= 8"),
    (np.full((1, 3, 32, 32), np.nan, np.float32), None, "NaN or inf"),
    (np.zeros((1, 3, 32, 32), np.float32), "no_such_model", "unknown model|not found"),
])
def test_bad_requests_get_error_replies_and_the_server_keeps_answering(server, runner, x, model, match):
    with pytest.raises(InferenceServerException, match=match):
        http_infer(server, x, model=model)
    good = batch(2, 9)
    assert np.array_equal(http_infer(server, good).as_numpy("logits"), runner.infer(good))


def test_bounded_concurrent_load_is_batched_without_failures(server):
    result = loadtest(f"http://{server.http}", server.model, concurrency=4, requests=100, timeout_s=120)
    assert result.requests_sent == 100 and result.requests_failed == 0, result.errors
    assert result.server is not None
    assert result.server.inferences == 100
    assert result.server.executions < 100  # Triton merged concurrent requests into batches
    assert max(result.server.batch_sizes) > 1
    grpc = loadtest(f"grpc://{server.grpc}", server.model, concurrency=4, requests=25, timeout_s=120)
    assert grpc.requests_failed == 0 and grpc.requests_sent == 25


def test_a_killed_client_loses_nothing_for_others(server, runner):
    script = (f"import numpy as np, tritonclient.http as h\n"
              f"c = h.InferenceServerClient('{server.http}')\n"
              f"x = np.ones((8, 3, 32, 32), np.float32)\n"
              f"i = h.InferInput('input', list(x.shape), 'FP32'); i.set_data_from_numpy(x)\n"
              f"print('go', flush=True)\n"
              f"while True: c.infer('{server.model}', [i])\n")
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline().strip() == "go"
    result_box = []
    others = threading.Thread(target=lambda: result_box.append(
        loadtest(f"http://{server.http}", server.model, concurrency=2, requests=40, timeout_s=120)))
    others.start()
    time.sleep(0.3)
    victim.kill()
    victim.wait()
    others.join(180)
    assert result_box and result_box[0].requests_failed == 0, result_box and result_box[0].errors
    x = batch(1, 11)
    assert np.array_equal(http_infer(server, x).as_numpy("logits"), runner.infer(x))


def test_loadtest_command_reports_and_fails_on_a_wrong_model(server):
    ok = subprocess.run([sys.executable, "-m", "rtresnet", "loadtest", f"http://{server.http}", "-m", server.model,
                         "-c", "2", "-n", "10"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "10 requests, 0 failed" in ok.stdout and "Triton ran" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "rtresnet", "loadtest", f"http://{server.http}", "-m", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "cannot reach model 'nope'" in bad.stderr


def test_full_queue_rejects_at_once_and_sigterm_leaves_nothing(engine, tmp_path):
    srv = start(engine, tmp_path, "--max-queue-size", "1", "--max-queue-delay-us", "500000", "--max-batch", "8",
                "--preferred-batch-sizes", "8")
    try:
        t0 = time.monotonic()
        result = loadtest(f"http://{srv.http}", srv.model, concurrency=6, requests=12, timeout_s=60)
        assert time.monotonic() - t0 < 30  # rejected, not held
        assert result.requests_failed > 0
        assert any("queue" in e.lower() for e in result.errors), result.errors
        assert result.requests_failed < result.requests_sent  # the queued ones were answered
        x = batch(1, 4)
        http_infer(srv, x)  # still answering
    finally:
        code, left = srv.stop(signal.SIGTERM)
    assert code == 0, srv.log.read_text()[-2000:]
    assert not left, f"processes left after SIGTERM: {left}"
    leaked = set(os.listdir("/dev/shm")) - srv.shm_before
    assert not leaked, f"shared memory left after SIGTERM: {leaked}"


def test_sigint_stops_as_cleanly(engine, tmp_path):
    srv = start(engine, tmp_path)
    code, left = srv.stop(signal.SIGINT)
    assert code == 0 and not left
    assert not set(os.listdir("/dev/shm")) - srv.shm_before


def test_a_port_in_use_is_a_one_line_error_and_nothing_keeps_running(engine):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "rtresnet", "serve", str(engine), "--http-port", str(port),
                              "--grpc-port", "0", "--metrics-port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (HTTP); pass another --http-port (0 " \
                                 f"picks a free one)"
    assert run.stdout == ""


def test_classify_preprocesses_with_the_served_model_info(server, runner, tmp_path):
    from PIL import Image

    from rtresnet.serving import classify, remote_model_info

    rng = np.random.default_rng(3)
    paths = []
    for i, size in enumerate(((40, 50), (64, 36))):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(paths[-1])
    assert remote_model_info(f"grpc://{server.grpc}", server.model) == runner.info
    got = classify(f"http://{server.http}", server.model, paths)
    want = runner.predict(paths, topk=3)
    assert [[p.index for p in row] for row in got] == [[p.index for p in row] for row in want]
    assert [[p.label for p in row] for row in got] == [[p.label for p in row] for row in want]


def test_an_openvino_engine_is_served_like_the_others(engine, tmp_path):
    """A compiled OpenVINO blob behind Triton (PyTriton's Python backend runs rtresnet's runner): replies equal the
    runner's, and the server stops clean."""
    source = Path(read_sidecar(engine).source["path"])
    blob = build_engine(source, backend="openvino", max_batch=8, output=tmp_path / "r18.blob").path
    srv = start(blob, tmp_path, "--model-name", "r18_ov")
    try:
        x = batch(3, seed=9)
        with rtresnet.load(blob, threads=1) as r:
            want = r.infer(x)
        got = http_infer(srv, x).as_numpy("logits")
        np.testing.assert_array_equal(got, want)
    finally:
        code, left = srv.stop()
    assert code == 0 and not left
