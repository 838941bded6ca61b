import json

import pytest

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.sidecar import Sidecar, read_sidecar, sidecar_path, write_sidecar
from rtresnet.spec import INPUT_NAME, OUTPUT_NAME, ModelInfo, Preprocessing, TensorSpec


def _sidecar(engine_sha="0" * 64):
    info = ModelInfo(arch="resnet18", num_classes=10, in_channels=1, input_size=(32, 32),
                     preprocessing=Preprocessing.default(1, (32, 32)), labels=tuple("0123456789"))
    return Sidecar(backend="onnxruntime", precision="int8", model=info,
                   inputs=(TensorSpec(INPUT_NAME, ("batch", 1, 32, 32), "float32"),),
                   outputs=(TensorSpec(OUTPUT_NAME, ("batch", 10), "float32"),),
                   profile={"min_batch": 1, "opt_batch": 8, "max_batch": 32}, onnx_sha256="a" * 64,
                   engine_sha256=engine_sha, build_seconds=1.5, built_at="2026-11-26T00:00:00Z",
                   flags={"opt_level": 3}, calibration={"method": "entropy", "cache_key": "k"},
                   onnxruntime_version="1.32.0", execution_providers=("CPUExecutionProvider",))


def test_round_trip_through_the_file(tmp_path):
    engine = tmp_path / "m.onnx"
    engine.write_bytes(b"engine bytes")
    original = _sidecar(sha256_file(engine))
    write_sidecar(engine, original)
    assert sidecar_path(engine).name == "m.onnx.json"
    assert read_sidecar(engine) == original


def test_changed_engine_is_refused(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine bytes")
    write_sidecar(engine, _sidecar(sha256_file(engine)))
    engine.write_bytes(b"other bytes")
    with pytest.raises(RtresnetError, match="sha256 differs"):
        read_sidecar(engine)


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(schema="other"), "not an rtresnet engine sidecar"),
    (lambda d: d.update(schema_version=99), "schema version 99"),
    (lambda d: d.pop("inputs"), "malformed field"),
    (lambda d: d.update(backend="tflite"), "unknown backend"),
])
def test_invalid_sidecars_are_refused(tmp_path, edit, match):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    d = json.loads(_sidecar(sha256_file(engine)).to_json())
    edit(d)
    sidecar_path(engine).write_text(json.dumps(d))
    with pytest.raises(RtresnetError, match=match):
        read_sidecar(engine)


def test_missing_sidecar_says_how_to_rebuild(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(RtresnetError, match="rtresnet build"):
        read_sidecar(engine)


def test_sidecars_written_before_the_source_and_verification_fields_still_read(tmp_path):
    engine = tmp_path / "m.onnx"
    engine.write_bytes(b"engine bytes")
    d = json.loads(_sidecar(sha256_file(engine)).to_json())
    assert d["source"] is None and d["verification"] is None  # new fields, written by every build
    del d["source"], d["verification"]
    sidecar_path(engine).write_text(json.dumps(d))
    old = read_sidecar(engine)
    assert old.source is None and old.verification is None and old == _sidecar(sha256_file(engine))
    d["future_field"] = {"any": 1}  # what this version does not know is ignored, as the C++ reader does
    sidecar_path(engine).write_text(json.dumps(d))
    assert read_sidecar(engine) == old
