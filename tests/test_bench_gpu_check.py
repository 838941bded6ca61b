"""benchmarks/gpu_check.sh, the one-call GPU check: valid bash, a clean refusal on a machine without a GPU, and the
exit status that says "TensorRT not importable" after the other steps ran."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


def run_check(tmp_path: Path, python: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "GPU_CHECK_OUT": str(tmp_path / "results"), "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=timeout)


def test_the_script_is_valid_bash():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


@CPU_ONLY
def test_without_a_gpu_it_refuses_at_once_and_writes_nothing(tmp_path):
    start = time.monotonic()
    r = run_check(tmp_path, sys.executable, timeout=60)
    assert time.monotonic() - start < 30
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: no CUDA GPU visible to PyTorch {torch.__version__} ({sys.executable}); benchmarks/gpu_check.sh "
        f"needs a GPU machine with PyTorch CUDA"]
    assert not (tmp_path / "results").exists()
    r = run_check(tmp_path, str(tmp_path / "no-python"), timeout=10)
    assert r.returncode == 2 and "no Python interpreter" in r.stderr


@CPU_ONLY
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_with_a_gpu_but_no_tensorrt_every_step_runs_and_the_exit_says_so(tmp_path):
    """A Python that claims a GPU to the probe only: the steps then run (and skip their GPU work) as on a GPU
    machine without TensorRT or onnxruntime's CUDA EP."""
    python = tmp_path / "python"
    python.write_text("#!/usr/bin/env bash\n"
                      'if [[ "$1" == -c && "$2" == *get_device_name* ]]; then echo "Fake GPU 9000"; exit 0; fi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    r = run_check(tmp_path, str(python), timeout=120)
    assert r.returncode == 3, r.stdout[-3000:]
    (log,) = (tmp_path / "results").glob("gpu_check_*_fake-gpu-9000.log")  # dated, named after the GPU
    assert log.read_text() == r.stdout
    for line in ("== PyTorch CUDA baseline: ok", "== GPU and TensorRT tests: ok", "== onnxruntime CUDA: not present",
                 "== TensorRT not importable (", "gpu_check: incomplete: TensorRT not importable"):
        assert line in r.stdout
    assert r.stdout.index("PyTorch CUDA baseline") < r.stdout.index("TensorRT not importable")
