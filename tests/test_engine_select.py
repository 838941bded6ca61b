"""`--backend auto` on a CPU: every CPU backend installed is built and timed, the fastest is kept and says what it
measured; the measurement is real (this machine), and the choice follows it (measurements replaced by fixed ones)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hostile import files_under, invoke

from rtresnet.engine import build_engine, select
from rtresnet.environment import cpu_info
from rtresnet.errors import RtresnetError
from rtresnet.precision import CalibrationSettings
from rtresnet.runtime import load
from rtresnet.sidecar import read_sidecar


@pytest.fixture()
def cpu_machine(monkeypatch):
    """This machine without TensorRT or a GPU, whatever is installed: auto means the CPU backends."""
    monkeypatch.setattr("rtresnet.environment.tensorrt_version", lambda: None)
    monkeypatch.setattr("rtresnet.environment.gpu_info", lambda: None)


def fixed_times(ms: dict[str, float]):
    """A stand-in for select.measure: each candidate's latencies fixed by backend (the runners are still loaded)."""
    def measure(runners, x, rounds=select.ROUNDS):
        for runner in runners.values():
            assert runner.infer(x).shape[0] == x.shape[0]  # every candidate was loaded and runs
        return {c: [ms[c.backend]] * 9 for c in runners}
    return measure


def test_auto_builds_times_and_keeps_the_fastest(onnx_model, tmp_path, cpu_machine):
    art = build_engine(onnx_model, max_batch=2, engine_dir=tmp_path)
    sel = art.sidecar.selection
    cores = cpu_info()["usable_cores"]
    assert sel["metric"] == "p50_ms" and sel["batch"] == 2 and sel["cpu"] == cpu_info()["model"]
    assert {(r["backend"], r["threads"]) for r in sel["candidates"]} == \
        {(b, t) for b in ("onnxruntime", "openvino") for t in select.thread_counts(cores)}
    best = min(sel["candidates"], key=lambda r: r["p50_ms"])
    assert sel["chosen"] == {"backend": best["backend"], "threads": best["threads"]} and art.sidecar.backend == \
        best["backend"]
    assert all(r["runs"] >= select.ROUNDS * select.BLOCK_RUNS and 0 < r["p50_ms"] <= r["p90_ms"]
               for r in sel["candidates"])
    assert files_under(tmp_path) == {art.path.name, art.path.name + ".json"}  # the loser and temp files are gone
    assert f"--backend {best['backend']}" in art.sidecar.extra["build_command"]
    with load(art.path) as r:
        assert r.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)


@pytest.mark.parametrize("ms, winner, suffix", [
    ({"onnxruntime": 5.0, "openvino": 4.0}, "openvino", ".blob"),
    ({"onnxruntime": 4.0, "openvino": 5.0}, "onnxruntime", ".onnx"),
], ids=["openvino-faster", "onnxruntime-faster"])
def test_the_choice_follows_the_measurement(onnx_model, tmp_path, cpu_machine, monkeypatch, ms, winner, suffix):
    monkeypatch.setattr(select, "measure", fixed_times(ms))
    art = build_engine(onnx_model, max_batch=2, engine_dir=tmp_path)
    assert art.sidecar.backend == winner and art.path.suffix == suffix
    assert select.describe(art.sidecar.selection).startswith(f"picked {winner} (")
    loser = next(b for b in ms if b != winner)
    assert f"{loser} (" in select.describe(art.sidecar.selection)


def test_a_measured_engine_is_reused_until_the_candidates_change(onnx_model, tmp_path, cpu_machine, monkeypatch):
    monkeypatch.setattr(select, "measure", fixed_times({"onnxruntime": 4.0, "openvino": 5.0}))
    first = build_engine(onnx_model, max_batch=2, engine_dir=tmp_path)

    def must_not_measure(*a, **k):
        raise AssertionError("a cache hit measured again")
    monkeypatch.setattr(select, "measure", must_not_measure)
    hit = build_engine(onnx_model, max_batch=2, engine_dir=tmp_path)
    assert hit.cache_hit and hit.path == first.path
    # one thread more per candidate (e.g. the engine was copied to a bigger machine): measured again
    monkeypatch.setattr(select, "thread_counts", lambda cores: (cores, 1))
    monkeypatch.setattr(select, "measure", fixed_times({"onnxruntime": 5.0, "openvino": 4.0}))
    again = build_engine(onnx_model, max_batch=2, engine_dir=tmp_path)
    assert not again.cache_hit and again.sidecar.backend == "openvino"
    assert {(r["backend"], r["threads"]) for r in again.sidecar.selection["candidates"]} >= {("openvino", 1)}


def test_the_measured_threads_are_the_runner_default(onnx_model, tmp_path, cpu_machine, monkeypatch):
    monkeypatch.setattr(select, "thread_counts", lambda cores: (1,))
    monkeypatch.setattr(select, "measure", fixed_times({"onnxruntime": 5.0, "openvino": 4.0}))
    art = build_engine(onnx_model, max_batch=2, engine_dir=tmp_path)
    assert art.sidecar.selection["chosen"] == {"backend": "openvino", "threads": 1}
    with load(art.path) as r:
        assert r.threads == 1
    with load(art.path, threads=2) as r:  # the caller's option wins
        assert r.threads == 2


def test_an_output_suffix_limits_auto_to_the_backends_that_write_it(onnx_model, tmp_path, cpu_machine,
                                                                    monkeypatch):
    monkeypatch.setattr(select, "measure", fixed_times({"onnxruntime": 5.0, "openvino": 4.0}))
    onnx = build_engine(onnx_model, max_batch=2, output=tmp_path / "e.onnx")
    assert onnx.sidecar.backend == "onnxruntime" and onnx.sidecar.selection is None  # one candidate on 2 cores
    blob = build_engine(onnx_model, max_batch=2, output=tmp_path / "e.blob")
    assert blob.sidecar.backend == "openvino"
    with pytest.raises(RtresnetError, match="name the file e.onnx"):
        build_engine(onnx_model, max_batch=2, output=tmp_path / "e.engine")


def test_int8_auto_calibrates_once_and_names_the_qdq_onnx_after_the_kept_engine(onnx_model, tmp_path, cpu_machine,
                                                                                  monkeypatch):
    from rtresnet.engine import build as build_mod

    calls = []
    convert = build_mod._convert
    monkeypatch.setattr(build_mod, "_convert", lambda *a, **k: calls.append(a) or convert(*a, **k))
    monkeypatch.setattr(select, "measure", fixed_times({"onnxruntime": 5.0, "openvino": 4.0}))
    art = build_engine(onnx_model, precision="int8", max_batch=2, engine_dir=tmp_path,
                       calibration=CalibrationSettings("synthetic", calib_size=8, calib_batch=4))
    assert len(calls) == 1 and art.sidecar.backend == "openvino"
    qdq = art.path.with_name(art.path.stem + ".qdq.onnx")
    assert art.intermediates == (qdq,) and art.onnx_path == qdq and qdq.is_file()
    assert art.sidecar.extra["onnx_path"] == str(qdq) and art.sidecar.verification["cosine_mean"] > 0.9
    assert files_under(tmp_path) == {art.path.name, art.path.name + ".json", qdq.name}
    hit = build_engine(onnx_model, precision="int8", max_batch=2, engine_dir=tmp_path,
                       calibration=CalibrationSettings("synthetic", calib_size=8, calib_batch=4))
    assert hit.cache_hit and hit.intermediates == (qdq,) and len(calls) == 1


def test_cli_says_what_it_measured(onnx_model, tmp_path, cpu_machine):
    result = invoke("build", onnx_model, "--device", "cpu", "--max-batch", "1", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("auto:"))
    sel = read_sidecar(next(p for p in (tmp_path / "engines").iterdir() if not p.name.endswith(".json"))).selection
    chosen = next(r for r in sel["candidates"] if (r["backend"], r["threads"]) == tuple(sel["chosen"].values()))
    assert line.startswith(f"auto:    picked {chosen['backend']} (") and f"{chosen['p50_ms']:.2f} ms at batch 1" in line
    assert "measure" in result.stderr.splitlines()[-1]  # the done line counts the measurement as a step
    engine = next(p for p in (tmp_path / "engines").iterdir() if not p.name.endswith(".json"))
    shown = invoke("inspect", engine)
    assert shown.exit_code == 0 and line.split(":", 1)[1].strip() in " ".join(shown.stdout.split()), shown.output


def test_thread_candidates_and_the_median():
    assert select.thread_counts(2) == (2,) and select.thread_counts(16) == (16, 8)
    times = {select.Candidate("a", 2): [3.0, 1.0, 2.0], select.Candidate("b", 2): [1.5, 9.0, 9.0]}
    assert select.fastest(times) == select.Candidate("a", 2) and statistics.median(times[select.fastest(times)]) == 2
    assert select.runner_defaults({"chosen": {"backend": "a", "threads": 3}}) == {"threads": 3}
    assert select.runner_defaults({"chosen": "bad"}) == {} == select.runner_defaults(None)
    assert "malformed" in select.describe({"chosen": {"backend": "x"}, "candidates": [1]})
