"""`import rtresnet` exposes every stage's entry point lazily; a renamed function must not break the public API."""

import subprocess
import sys

import rtresnet


def test_every_public_name_resolves():
    for name in rtresnet.__all__:
        assert getattr(rtresnet, name) is not None, name


def test_import_is_light():
    code = "import sys, rtresnet; print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
