"""A third engine backend for tests/test_backends.py: its "engine" is the ONNX file copied, run by onnxruntime.

It exists to show that a backend is added with one vocabulary entry, a builder module and a runner class.
"""

from __future__ import annotations

import shutil

from rtresnet.engine.request import Target
from rtresnet.runtime.ort_runner import OrtRunner


def target() -> Target:
    return Target(backend="copy")


def flags(request) -> dict:
    return {"copied": True}


def name_parts(request) -> tuple[list[str], str]:
    return ["copy"], ".onnx"


def describe(sidecar) -> str:
    return "a copy of the ONNX"


def build(request, engine_path) -> None:
    shutil.copyfile(request.onnx_path, engine_path)


class CopyRunner(OrtRunner):
    backend = "copy"
