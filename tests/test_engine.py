"""Build stage on the CPU: onnxruntime engines, sidecars, the engine cache, option checks and atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtresnet.cli import main
from rtresnet.engine import build_engine
from rtresnet.engine.request import resolve_batches
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.precision import CalibrationSettings
from rtresnet.sidecar import read_sidecar, sidecar_path
from rtresnet.spec import read_model_info

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ort_engine(onnx_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("build_engine") / "r18_cpu.onnx"
    return build_engine(onnx_model, backend="onnxruntime", max_batch=8, output=out)


@pytest.fixture()
def logs(caplog, monkeypatch):
    """The library's log records, even after a CLI test routed the "rtresnet" logger to rich only."""
    import logging

    monkeypatch.setattr(logging.getLogger("rtresnet"), "propagate", True)
    caplog.set_level("INFO", logger="rtresnet")
    return caplog


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """This machine as the tests see it, whatever is installed: no TensorRT, no GPU."""
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: None)
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda: None)


def test_ort_engine_loads_and_matches_source(ort_engine, onnx_model):
    import onnxruntime as ort

    assert not ort_engine.cache_hit and ort_engine.path.is_file()
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    engine = ort.InferenceSession(str(ort_engine.path), providers=["CPUExecutionProvider"])
    out = engine.run(None, {"input": x})[0]
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # the saved graph is onnxruntime's optimized one (fused kernels), not a copy of the source
    import onnx

    domains = {n.domain for n in onnx.load(str(ort_engine.path)).graph.node}
    assert "com.microsoft" in domains  # fused CPU kernels (FusedConv): the optimizer ran
    assert "com.microsoft.nchwc" not in domains  # no CPU-specific blocked layout: portable across CPUs
    from rtresnet.runtime import load  # the runtime reads engine + sidecar the same way

    with load(ort_engine.path) as runner:
        assert runner.backend == "onnxruntime" and runner.input_spec.max_batch == 8
        np.testing.assert_allclose(runner.infer(x), ref, rtol=1e-4, atol=1e-5)


def test_sidecar_describes_the_engine(ort_engine, onnx_model):
    from rtresnet.fileutil import sha256_file

    s = read_sidecar(ort_engine.path)
    assert s == ort_engine.sidecar
    assert s.backend == "onnxruntime" and s.precision == "fp32"
    assert s.profile == {"min_batch": 1, "opt_batch": 8, "max_batch": 8}
    assert s.onnx_sha256 == sha256_file(onnx_model) and s.engine_sha256 == sha256_file(ort_engine.path)
    assert s.onnxruntime_version and s.execution_providers == ("CPUExecutionProvider",)
    assert s.cpu["model"] and isinstance(s.cpu["isa"], list) and s.gpu is None and s.tensorrt_version is None
    assert s.model == read_model_info(onnx_model)
    assert [t.name for t in s.inputs] == ["input"] and s.inputs[0].shape == ("batch", 3, 32, 32)
    assert [t.name for t in s.outputs] == ["logits"] and s.outputs[0].dtype == "float32"
    assert s.flags == {"graph_optimization_level": "ORT_ENABLE_EXTENDED"}
    assert "--max-batch 8" in s.extra["build_command"] and str(ort_engine.path) in s.extra["build_command"]
    raw = json.loads(sidecar_path(ort_engine.path).read_text())
    assert raw["schema"] == "rtresnet.engine-sidecar" and raw["rtresnet_version"]


def test_tampered_engine_is_refused(ort_engine, tmp_path):
    engine = tmp_path / ort_engine.path.name
    engine.write_bytes(ort_engine.path.read_bytes() + b"\0")
    sidecar_path(engine).write_text(sidecar_path(ort_engine.path).read_text())
    with pytest.raises(RtresnetError, match="sha256"):
        read_sidecar(engine)
    sidecar_path(engine).write_text('{"schema": "something-else"}')
    with pytest.raises(RtresnetError, match="not an rtresnet engine sidecar"):
        read_sidecar(engine)


def test_cache_hit_miss_and_force(onnx_model, tmp_path, logs):
    out = tmp_path / "e.onnx"
    first = build_engine(onnx_model, backend="onnxruntime", max_batch=4, output=out)
    built_at = out.stat().st_mtime_ns
    again = build_engine(onnx_model, backend="onnxruntime", max_batch=4, output=out)
    assert again.cache_hit and again.sidecar == first.sidecar and out.stat().st_mtime_ns == built_at
    other = build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out)  # another profile: miss
    assert not other.cache_hit and other.sidecar.profile["max_batch"] == 2
    forced = build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out, force=True)
    assert not forced.cache_hit and forced.sidecar.built_at >= other.sidecar.built_at
    out.write_bytes(b"not the engine")  # a replaced file no longer matches its sidecar: rebuilt, not trusted
    rebuilt = build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out)
    assert not rebuilt.cache_hit and read_sidecar(out).engine_sha256 == rebuilt.sidecar.engine_sha256


def test_cache_miss_when_the_onnx_changes(onnx_model, tmp_path):
    import onnx

    changed = tmp_path / "changed.onnx"
    model = onnx.load(str(onnx_model))
    model.producer_name = "edited"
    onnx.save(model, str(changed))
    out = tmp_path / "e.onnx"
    build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out)
    art = build_engine(changed, backend="onnxruntime", max_batch=2, output=out)
    assert not art.cache_hit and art.sidecar.extra["onnx_path"] == str(changed)


def test_default_name_describes_the_engine(onnx_model, tmp_path, monkeypatch, no_tensorrt, logs):
    monkeypatch.chdir(tmp_path)
    logs.set_level("DEBUG", logger="rtresnet")
    art = build_engine(onnx_model, max_batch=4, opt_batch=2)  # auto -> the CPU backends, said at debug level
    from rtresnet.environment import package_version

    ort, ov = (".".join(package_version(d).split(".")[:2]) for d in ("onnxruntime", "openvino"))
    names = {"onnxruntime": f"r18_fp32_b1-4_opt2_ort{ort}_cpu.onnx", "openvino": f"r18_fp32_b1-4_opt2_ov{ov}_cpu.blob"}
    assert art.path == Path("engines") / names[art.sidecar.backend]  # named after the ONNX file and the winner
    assert art.sidecar.selection["chosen"]["backend"] == art.sidecar.backend
    assert (tmp_path / art.path).is_file() and sidecar_path(tmp_path / art.path).is_file()
    assert [r.levelname for r in logs.records if "TensorRT is not installed" in r.message] == ["DEBUG"]
    assert "rtresnet[gpu]" in logs.text


def test_two_models_of_one_arch_get_two_default_engines(onnx_model, tmp_path, monkeypatch, no_tensorrt):
    import onnx

    monkeypatch.chdir(tmp_path)
    other = tmp_path / "r18_other.onnx"  # another resnet18 model (other bytes, same metadata arch)
    model = onnx.load(str(onnx_model))
    model.producer_name = "edited"
    onnx.save(model, str(other))
    first = build_engine(onnx_model, max_batch=2)
    second = build_engine(other, max_batch=2)
    assert first.path != second.path and first.path.is_file() and second.path.is_file()
    assert build_engine(onnx_model, max_batch=2).cache_hit  # the first engine was not replaced


def test_arch_build_never_exports_over_its_output(tmp_path):
    out = tmp_path / "resnet18.onnx"  # where `--arch resnet18` would export the ONNX model
    out.write_bytes(b"an engine the user keeps")
    with pytest.raises(RtresnetError, match="is where --arch exports the ONNX model"):
        build_engine(arch="resnet18", backend="onnxruntime", output=out)
    assert out.read_bytes() == b"an engine the user keeps" and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_tensorrt_backend_names_what_is_missing(onnx_model, tmp_path, no_tensorrt):
    with pytest.raises(RtresnetError) as e:
        build_engine(onnx_model, backend="tensorrt", output=tmp_path / "e.engine")
    msg = str(e.value)
    assert "TensorRT is not installed" in msg and "no CUDA GPU" in msg and "pip install 'rtresnet[gpu]'" in msg
    assert "\n" not in msg and not list(tmp_path.iterdir())


@pytest.mark.parametrize("options, message", [
    ({"dla_core": 0}, "--dla-core only apply to TensorRT"),
    ({"version_compat": True, "hardware_compat": "ampere+"}, "--hardware-compat, --version-compat"),
    ({"gpu_fallback": True}, "--gpu-fallback only applies with --dla-core"),
    ({"opt_level": 7}, "--opt-level must be 0-5"),
    ({"precision": "int4"}, "unknown precision"),
    ({"min_batch": 4, "max_batch": 2}, "smaller than --min-batch"),
    ({"opt_batch": 64}, "must lie between"),
    ({"calibration": CalibrationSettings("digits")}, "only apply with --int8"),
    ({"precision": "int8"}, "needs calibration data"),
])
def test_bad_options_are_refused(onnx_model, tmp_path, options, message):
    with pytest.raises(RtresnetError, match=message.replace("+", r"\+")):
        build_engine(onnx_model, backend="onnxruntime", output=tmp_path / "e.onnx", **options)
    assert not (tmp_path / "e.onnx").exists()


def test_batch_profile_resolution():
    assert resolve_batches("batch", None, None, None) == (1, 32, 32)
    assert resolve_batches("batch", 2, 4, 16) == (2, 4, 16)
    assert resolve_batches(8, None, None, None) == (8, 8, 8)
    with pytest.raises(RtresnetError, match="fixed batch of 8"):
        resolve_batches(8, 1, None, 32)
    with pytest.raises(RtresnetError, match=r"--min-batch 0 is out of range; give a value in 1\.\.4096"):
        resolve_batches(8, 0, None, None)  # 0 is a value, not "unset"
    with pytest.raises(RtresnetError, match=r"--max-batch 0 is out of range"):
        resolve_batches("batch", None, None, 0)
    with pytest.raises(RtresnetError, match=r"--max-batch must be an integer in 1\.\.4096, got 2\.5"):
        resolve_batches("batch", None, None, 2.5)


def test_already_quantized_onnx_is_built_as_is(onnx_model, tmp_path):
    import onnx

    from rtresnet.spec import write_model_info

    model = onnx.load(str(onnx_model))
    write_model_info(model, read_model_info(onnx_model).with_precision("fp16"))  # metadata says FP16
    marked = tmp_path / "marked.onnx"
    onnx.save(model, str(marked))
    art = build_engine(marked, backend="onnxruntime", max_batch=2, output=tmp_path / "e.onnx")
    assert art.sidecar.precision == "fp16" and art.onnx_path == marked
    with pytest.raises(RtresnetError, match="already fp16"):
        build_engine(marked, precision="int8", backend="onnxruntime", calibration=CalibrationSettings("synthetic"),
                     output=tmp_path / "f.onnx")


def test_cli_build_prints_engine_sidecar_and_cache(onnx_model, tmp_path):
    out = tmp_path / "cli.onnx"
    args = ["build", str(onnx_model), "--backend", "onnxruntime", "--max-batch", "2", "-o", str(out)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"engine:  {out}" in first.output and "sidecar:" in first.output and "cache:   miss" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "cache:   hit" in second.output
    third = CliRunner().invoke(main, [*args, "--force"])
    assert third.exit_code == 0 and "cache:   miss" in third.output


def test_cli_errors_are_one_line(onnx_model, tmp_path, no_tensorrt):
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--backend", "tensorrt", "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and r.output.startswith("error: --backend tensorrt needs TensorRT")
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--workspace", "lots"])
    assert r.exit_code == 1 and "cannot read size 'lots'" in r.output
    for args, message in (([str(tmp_path)], f"error: {tmp_path} is a folder; give an ONNX model file"),
                          ([str(onnx_model), "-o", str(tmp_path)], f"error: output path {tmp_path} is a directory")):
        r = CliRunner().invoke(main, ["build", *args, "--backend", "onnxruntime"])
        assert r.exit_code == 1 and r.output.startswith(message) and r.output.count("\n") == 1, r.output
    r = CliRunner().invoke(main, ["build", "--help"])
    assert r.exit_code == 0 and "rtresnet build --arch resnet50" in r.output


def test_parse_size():
    from rtresnet.cli.build_cmd import parse_size

    assert parse_size("4GiB") == 4 << 30 and parse_size("512MiB") == 512 << 20 and parse_size("1048576") == 1 << 20
    assert parse_size("1.5GB") == 1_500_000_000
    for bad in ("0GiB", "1000", "2TiB", "9" * 400):  # below 1 MiB, above 1 TiB, a float that would overflow
        with pytest.raises(RtresnetError, match=r"1 MiB\.\.1 TiB"):
            parse_size(bad)


KILLED_BUILD = """
import sys, time
import rtresnet.engine.build as build
import rtresnet.engine.ort as ob

def slowed(real):
    def step(*args):
        real(*args)
        print("BUILDING", flush=True)
        time.sleep(120)
    return step

if sys.argv[3] == "engine":   # the engine bytes exist, still under the temporary name
    ob.build = slowed(ob.build)
else:                         # the engine is in place, its sidecar not yet written
    build.write_sidecar = slowed(lambda *a: None)
build.build_engine(sys.argv[1], backend="onnxruntime", max_batch=2, output=sys.argv[2], force=True)
"""


def _kill_mid_build(onnx_model: Path, out: Path, step: str = "engine") -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(onnx_model), str(out), step],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        line = ""
        while "BUILDING" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "BUILDING" in line, "the build subprocess never reached the slow step"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def test_killed_build_leaves_no_engine_and_no_stale_sidecar(onnx_model, tmp_path):
    out = tmp_path / "e.onnx"
    _kill_mid_build(onnx_model, out)
    assert not out.exists() and not sidecar_path(out).exists()
    leftovers = [p.name for p in tmp_path.iterdir()]  # at most the killed build's unclaimed temporary file
    assert all(n.startswith(".e.onnx.") and n.endswith(".tmp") for n in leftovers), leftovers
    # Rebuilding an existing engine: a kill mid-way keeps the old engine and its (still matching) sidecar.
    old = build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out)
    old_bytes = out.read_bytes()
    _kill_mid_build(onnx_model, out)
    assert out.read_bytes() == old_bytes and read_sidecar(out) == old.sidecar
    assert build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out).cache_hit
    # Killed after the new engine is in place: the old sidecar is gone, nothing claims the new file.
    _kill_mid_build(onnx_model, out, step="sidecar")
    assert out.is_file() and not sidecar_path(out).exists()
    with pytest.raises(RtresnetError, match="no sidecar"):
        read_sidecar(out)
    assert not build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=out).cache_hit


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_stage_runs_before_the_build(onnx_model, tmp_path, precision):
    calib = CalibrationSettings("synthetic", calib_size=16, calib_batch=8) if precision == "int8" else None
    art = build_engine(onnx_model, precision=precision, backend="onnxruntime", max_batch=2,
                       output=tmp_path / f"{precision}.onnx", calibration=calib)
    s = art.sidecar
    assert s.precision == precision and s.model.precision == precision and art.onnx_path != onnx_model
    assert read_model_info(art.onnx_path).precision == precision
    # the converted ONNX lies beside the engine, named after it, and is listed
    name = "int8.qdq.onnx" if precision == "int8" else "fp16.fp16.onnx"
    assert art.intermediates == (tmp_path / name,) == (art.onnx_path,)
    assert s.source["path"] == str(onnx_model) and s.verification["samples"] > 0
    if precision == "int8":  # onnxruntime engines get the CPU layout of the Q/DQ graph
        assert s.calibration["target"] == "cpu" and s.calibration["method"] == "entropy"
    else:
        assert s.calibration is None
    x = np.zeros((2, 3, 32, 32), np.float32)
    from rtresnet.runtime import load

    with load(art.path) as runner:
        assert runner.infer(x).shape == (2, 10)


def _photos(folder: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _photos(tmp_path_factory.mktemp("photos") / "photos", 6)


def test_int8_cache_hit_skips_calibration_quantization_and_verification(onnx_model, photos, tmp_path, monkeypatch):
    import shutil

    data = shutil.copytree(photos, tmp_path / "photos")
    settings = CalibrationSettings(data, calib_size=8, calib_batch=4)
    kwargs = {"precision": "int8", "backend": "onnxruntime", "max_batch": 2, "output": tmp_path / "e.onnx"}
    first = build_engine(onnx_model, calibration=settings, **kwargs)
    cal = first.sidecar.calibration  # the source of the ranges: path, count and fingerprint of the files
    assert cal["data"] == str(data) and cal["data_count"] == 6 and len(cal["data_fingerprint"]) == 16
    assert cal["samples"] == 6 and cal["calib_size"] == 8
    assert "--calib-data" in first.sidecar.extra["build_command"] and str(data) in first.sidecar.extra["build_command"]

    def no_precision_stage(*args, **kw):
        raise AssertionError("the precision stage ran on a cache hit")

    with monkeypatch.context() as m:
        m.setattr("rtresnet.precision.quantize_int8", no_precision_stage)
        m.setattr("rtresnet.data.datasets.load_dataset", no_precision_stage)
        hit = build_engine(onnx_model, calibration=settings, **kwargs)
        assert hit.cache_hit and hit.sidecar == first.sidecar and hit.intermediates == first.intermediates
        with pytest.raises(AssertionError, match="precision stage ran"):  # --force converts again
            build_engine(onnx_model, calibration=settings, force=True, **kwargs)
        # what changes the graph is in the key: other settings, or data that changed on disk
        with pytest.raises(AssertionError, match="precision stage ran"):
            build_engine(onnx_model, calibration=CalibrationSettings(data, calib_size=8, calib_batch=4, seed=1),
                         **kwargs)
        _photos(data, 1, seed=9)  # p0.png replaced by another image
        with pytest.raises(AssertionError, match="precision stage ran"):
            build_engine(onnx_model, calibration=settings, **kwargs)


@pytest.mark.parametrize("option", [{"exclude": ("Gemm",)}, {"keep_io_layers_float": True}])
def test_dropping_a_calibration_option_is_a_cache_miss(onnx_model, tmp_path, monkeypatch, option):
    """A setting the earlier build had and this one does not (--exclude, --keep-io-layers-float) changes the
    graph: the engine built with it must not come back."""
    kwargs = {"precision": "int8", "backend": "onnxruntime", "max_batch": 2, "output": tmp_path / "e.onnx"}
    base = {"calib_data": "synthetic", "calib_size": 8, "calib_batch": 4}
    build_engine(onnx_model, calibration=CalibrationSettings(**base, **option), **kwargs)
    assert not build_engine(onnx_model, calibration=CalibrationSettings(**base), **kwargs).cache_hit
    assert build_engine(onnx_model, calibration=CalibrationSettings(**base), **kwargs).cache_hit


def test_int8_without_calibration_data_is_a_one_line_error(onnx_model, tmp_path):
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--int8", "-o", str(tmp_path / "e.onnx")])
    assert r.exit_code == 1 and r.stderr.strip() == ("error: --int8 needs calibration data: pass --calib-data DIR "
                                                     "(an image folder, .npy, 'digits' or 'synthetic')")
    assert list(tmp_path.iterdir()) == []


def test_a_cache_hit_is_judged_by_the_thresholds_of_this_build(onnx_model, tmp_path):
    settings = CalibrationSettings("synthetic", calib_size=8, calib_batch=4)
    kwargs = {"precision": "int8", "backend": "onnxruntime", "max_batch": 2, "output": tmp_path / "e.onnx",
              "calibration": settings}
    first = build_engine(onnx_model, **kwargs)
    cosine = first.sidecar.verification["cosine_mean"]
    with pytest.raises(RtresnetError, match="fails verification"):  # the recorded figures fail: rebuilt, refused
        build_engine(onnx_model, min_cosine=min(1.0, cosine + 1e-6), **kwargs)
    assert build_engine(onnx_model, min_cosine=cosine - 1e-3, **kwargs).cache_hit


def test_intermediates_go_beside_the_engine_one_per_engine(onnx_model, tmp_path):
    import shutil

    source = shutil.copy(onnx_model, tmp_path / "r18.onnx")
    out = tmp_path / "out"
    # two engines that differ in the calibration method, then only in the seed: each keeps its own Q/DQ ONNX
    for seed, method, engine in ((0, "entropy", "eng.onnx"), (0, "minmax", "eng2.onnx"), (1, "minmax", "eng3.onnx")):
        art = build_engine(source, precision="int8", backend="onnxruntime", max_batch=2, output=out / engine,
                           calibration=CalibrationSettings("synthetic", method=method, calib_size=8, calib_batch=4,
                                                           seed=seed))
        assert art.intermediates == (out / engine.replace(".onnx", ".qdq.onnx"),)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r18.onnx"]  # nothing beside the input
    assert sorted(p.name for p in out.iterdir()) == ["eng.onnx", "eng.onnx.json", "eng.qdq.onnx", "eng2.onnx",
                                                     "eng2.onnx.json", "eng2.qdq.onnx", "eng3.onnx", "eng3.onnx.json",
                                                     "eng3.qdq.onnx"]
    shas = {read_sidecar(out / e).onnx_sha256 for e in ("eng.onnx", "eng2.onnx", "eng3.onnx")}
    assert len(shas) == 3
    for e in ("eng.onnx", "eng2.onnx", "eng3.onnx"):  # each sidecar's graph is still the file beside it
        assert sha256_file(out / e.replace(".onnx", ".qdq.onnx")) == read_sidecar(out / e).onnx_sha256


def test_default_int8_engine_name_has_the_calibration_method(onnx_model, tmp_path, monkeypatch, no_tensorrt):
    monkeypatch.chdir(tmp_path)
    art = build_engine(onnx_model, precision="int8", max_batch=2, backend="onnxruntime",
                       calibration=CalibrationSettings("synthetic", method="percentile", percentile=99.9,
                                                       calib_size=8, calib_batch=4))
    assert art.path.name.startswith("r18_int8-percentile99.9_b1-2_ort")
    assert art.intermediates == (art.path.with_name(art.path.stem + ".qdq.onnx"),)


def test_engine_suffix_must_say_the_format(onnx_model, tmp_path):
    with pytest.raises(RtresnetError, match=r"onnxruntime engines are ONNX models; name the file x\.onnx"):
        build_engine(onnx_model, backend="onnxruntime", output=tmp_path / "x.engine")
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--device", "cpu", "-o", str(tmp_path / "x.engine")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "name the file x.onnx" in r.output
    assert not list(tmp_path.iterdir())


def test_device_picks_the_backend(onnx_model, tmp_path, no_tensorrt):
    out = tmp_path / "e.onnx"
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--device", "cpu", "--max-batch", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert read_sidecar(out).backend == "onnxruntime"
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--device", "cpu", "--backend", "tensorrt"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--device cpu builds onnxruntime or openvino engines" \
        in r.output
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--device", "cuda", "-o", str(tmp_path / "e.engine")])
    assert r.exit_code == 1 and r.output.startswith("error: --device cuda needs TensorRT and a CUDA GPU")


def test_precision_flags_exclude_each_other_and_half_is_fp16(onnx_model, tmp_path):
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--fp16", "--int8", "-o", str(tmp_path / "e.onnx")])
    assert r.exit_code == 2 and r.output == "error: --fp16 and --int8 exclude each other; give one precision\n"
    assert not list(tmp_path.iterdir())
    args = ["build", str(onnx_model), "--half", "--device", "cpu", "--max-batch", "2", "-o", str(tmp_path / "h.onnx")]
    r = CliRunner(env={"COLUMNS": "100"}).invoke(main, args)
    assert r.exit_code == 0, r.output
    assert read_sidecar(tmp_path / "h.onnx").precision == "fp16"
    done = r.stderr.strip().splitlines()[-1]
    assert done.startswith("done in ") and "convert " in done and "verify " in done  # build: often < 0.05 s


def test_default_int8_build_prints_a_short_result(onnx_model, photos, tmp_path, monkeypatch, no_tensorrt):
    """Issue 15: a default INT8 build printed 7 stderr lines and 'max rel err'; a cache hit printed them all again."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"COLUMNS": "100"})
    args = ["build", str(onnx_model), "--int8", "--calib-data", str(photos), "--max-batch", "2"]
    miss = runner.invoke(main, args)
    assert miss.exit_code == 0, miss.output
    out = miss.stdout.splitlines()
    assert [line.split(":")[0] for line in out] == ["engine", "sidecar", "onnx", "backend", "auto", "vs FP32", "cache"]
    assert out[4].startswith("auto:    picked ") and " ms at batch 2; " in out[4]  # what was measured, and won
    out.pop(4)
    assert "cosine" in out[4] and "top-1 agreement" in out[4] and "max rel err" not in miss.output
    assert out[5] == "cache:   miss (built now)"  # no engine-only seconds posing as the build's time
    err = miss.stderr.splitlines()
    assert err[0] == (f"warning: calibrating on all 6 samples of image folder {photos} (--calib-size 512 asks for "
                      f"more)")  # one warning, no NVIDIA advice for the cpu target, no TensorRT notice
    assert len(err) == 2 and err[1].startswith("done in ")
    steps = [part.split()[0] for part in err[1].split(": ")[1].split(", ")]
    # Steps under 0.05 s are left out of the line (the ORT build of a tiny model often is): order and names only.
    assert steps[:3] == ["calibrate", "quantize", "verify"] and set(steps[3:]) <= {"build", "measure"}, steps
    hit = runner.invoke(main, ["-q", *args])
    assert hit.exit_code == 0 and hit.stderr == ""  # -q: no done line, and nothing converted to warn about
    assert hit.stdout.splitlines()[4].endswith(" (measured at build)")
    assert hit.stdout.splitlines()[5] == out[4] + " (recorded at build)"
    assert hit.stdout.splitlines()[6].startswith("cache:   hit (built ")
    assert runner.invoke(main, args).stderr.splitlines()[0].startswith("done in ")


def test_cli_refuses_calibration_options_without_int8(onnx_model, tmp_path):
    r = CliRunner().invoke(main, ["build", str(onnx_model), "--calib-method", "minmax", "-o", str(tmp_path / "e")])
    assert r.exit_code == 1 and "--calib-method only apply with --int8" in r.output


def test_an_engine_whose_converted_onnx_would_overwrite_the_source_is_refused(onnx_model, tmp_path):
    import shutil

    source = shutil.copy(onnx_model, tmp_path / "m.fp16.onnx")  # an FP32 model, oddly named
    with pytest.raises(RtresnetError, match="is where the FP16 ONNX the engine is built from goes; .* m_engine"):
        build_engine(source, precision="fp16", backend="onnxruntime", output=tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fp16.onnx"]
