"""Hostile-input battery (issue 16), class: non-finite numbers anywhere. NaN/inf in weights, in calibration arrays,
in inputs to ``infer``, in logits after export or conversion, and in the logits bench computes accuracy on: each is
refused with one line naming where and how many, never compared as garbage against garbage, and nothing is left
half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from hostile import assert_clean_failure, assert_one_line_error, files_under, invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from rtresnet.bench.accuracy import evaluate
from rtresnet.compare import SATURATION, compare_logits
from rtresnet.errors import RtresnetError
from rtresnet.export import export_onnx
from rtresnet.models.checkpoint import check_finite_weights, save_state_dict
from rtresnet.models.factory import create_model, load_model
from rtresnet.precision import convert_fp16, quantize_int8
from rtresnet.runtime import load
from rtresnet.runtime.base import Runner

FAST = settings(max_examples=10, deadline=None, derandomize=True)
SIZE, CLASSES = 32, 10
BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
WORD = {"nan": "NaN", "inf": "infinite", "-inf": "infinite"}


def _spoiled(state: dict, key: str, value: float, count: int) -> dict:
    """``state`` with the first ``count`` values of ``key`` set to ``value``."""
    state = dict(state)
    t = state[key].clone()
    t.view(-1)[:count] = value
    state[key] = t
    return state


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A 10-class resnet18 state dict, its 32x32 FP32 export, one whose FP32 logits reach ~2e5 (finite in FP32, inf
    in FP16) and one whose FP32 logits overflow to inf, and calibration arrays: about four seconds, once."""
    d = tmp_path_factory.mktemp("nonfinite")
    torch.manual_seed(0)
    state = create_model("resnet18", num_classes=CLASSES).state_dict()
    files = {"dir": d, "state": state}
    for name, scale in (("good", 1.0), ("fp16_overflow", 1e5)):
        sd = {**state, "fc.weight": state["fc.weight"] * scale, "fc.bias": state["fc.bias"] * scale}
        files[name] = save_state_dict(sd, d / f"{name}.safetensors")
    huge = torch.full_like(state["fc.weight"], 3e38)  # finite, but 512 features times it overflow float32
    files["fp32_overflow"] = save_state_dict({**state, "fc.weight": huge}, d / "fp32_overflow.safetensors")
    files["good_onnx"] = export_onnx("resnet18", d / "good.onnx", weights=files["good"], input_size=SIZE).path
    files["big_onnx"] = export_onnx("resnet18", d / "big.onnx", weights=files["fp16_overflow"], input_size=SIZE).path
    x = np.random.default_rng(0).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    np.save(d / "calib.npy", x)
    for kind, value in BAD.items():
        bad = x.copy()
        bad[3, 1, 2, :2] = value  # two values in sample 3
        np.save(d / f"calib_{kind}.npy", bad)
    return files


@pytest.fixture(scope="module")
def runners(made):
    """The torch baseline and the onnxruntime runner of the same weights."""
    torch_runner = load("resnet18", weights=made["good"], input_size=SIZE)
    ort_runner = load(made["good_onnx"], threads=1)
    yield {"torch": torch_runner, "onnxruntime": ort_runner}
    torch_runner.close()
    ort_runner.close()


def _batch(n: int = 4) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


# -- weights -----------------------------------------------------------------------------------------------------------
WEIGHT_CASES = [  # (tensor, value, count, suffix)
    ("layer1.0.conv1.weight", "nan", 3, ".safetensors"),
    ("conv1.weight", "inf", 1, ".pt"),
    ("bn1.running_var", "nan", 2, ".safetensors"),
    ("layer2.0.bn1.running_mean", "-inf", 4, ".pt"),
    ("layer4.1.bn2.weight", "inf", 5, ".safetensors"),
    ("fc.weight", "nan", 7, ".pt"),
    ("fc.bias", "-inf", 1, ".safetensors"),
]


@pytest.mark.parametrize("key, kind, count, suffix", WEIGHT_CASES, ids=[f"{c[0]}-{c[1]}" for c in WEIGHT_CASES])
def test_export_refuses_non_finite_weights_naming_the_tensor(made, tmp_path, key, kind, count, suffix):
    ckpt = save_state_dict(_spoiled(made["state"], key, BAD[kind], count), tmp_path / f"bad{suffix}")
    result = invoke("export", "--arch", "resnet18", "--weights", ckpt, "--input-size", SIZE, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, f"weights: {key} has {count} {WORD[kind]} values", ckpt.name, "earlier checkpoint")
    assert files_under(tmp_path) == {ckpt.name}  # refused before exporting: no ONNX, no temporary file


def test_a_negative_running_var_is_refused_too(made, tmp_path):
    ckpt = save_state_dict(_spoiled(made["state"], "layer3.1.bn1.running_var", -1.0, 2), tmp_path / "neg.pt")
    result = invoke("export", "--arch", "resnet18", "--weights", ckpt, "--input-size", SIZE, "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "layer3.1.bn1.running_var has 2 negative values")
    assert files_under(tmp_path) == {"neg.pt"}


def test_every_bad_tensor_is_counted_in_the_message(made, tmp_path):
    sd = _spoiled(_spoiled(made["state"], "conv1.weight", BAD["nan"], 1), "fc.weight", BAD["inf"], 2)
    ckpt = save_state_dict(_spoiled(sd, "layer1.0.bn1.weight", BAD["nan"], 1), tmp_path / "three.safetensors")
    with pytest.raises(RtresnetError, match=r"weights: conv1.weight has 1 NaN values in checkpoint three.safetensors "
                                            r"\(and 2 more tensors: ") as err:
        load_model("resnet18", weights=ckpt)
    assert "fc.weight" in str(err.value) and "layer1.0.bn1.weight" in str(err.value)


@FAST
@given(key_index=st.integers(0, 121), nan=st.integers(0, 5), inf=st.integers(0, 5))
def test_check_finite_weights_counts_exactly(made, key_index, nan, inf):
    floats = [k for k, v in made["state"].items() if v.is_floating_point()]
    key = floats[key_index % len(floats)]
    t = made["state"][key].clone().view(-1)
    n = min(nan + inf, len(t))
    t[:n] = torch.tensor([float("nan")] * min(nan, n) + [float("inf")] * (n - min(nan, n)))
    state = {**made["state"], key: t.view(made["state"][key].shape)}
    if n == 0:
        check_finite_weights(state, "ckpt")  # finite weights pass
        return
    counts = [f"{c} {w} values" for c, w in ((min(nan, n), "NaN"), (n - min(nan, n), "infinite")) if c]
    with pytest.raises(RtresnetError) as err:
        check_finite_weights(state, "ckpt")
    assert f"weights: {key} has {' and '.join(counts)} in ckpt" in str(err.value)


def test_a_bad_head_that_is_reset_does_not_matter(made, tmp_path):
    ckpt = save_state_dict(_spoiled(made["state"], "fc.weight", BAD["nan"], 3), tmp_path / "nanfc.safetensors")
    loaded = load_model("resnet18", weights=ckpt, num_classes=5, reset_head=True)  # the NaN head is dropped
    assert torch.isfinite(loaded.model.fc.weight).all()


@pytest.mark.parametrize("command", [
    ("build", "--arch", "resnet18", "--device", "cpu"),
    ("predict", "resnet18", "--weights"),
], ids=["build", "predict-torch"])
def test_other_commands_refuse_non_finite_weights(made, tmp_path, command):
    ckpt = save_state_dict(_spoiled(made["state"], "layer3.0.conv2.weight", BAD["inf"], 2), tmp_path / "b.pt")
    if command[0] == "build":
        args = [*command, "--weights", ckpt, "-o", tmp_path / "e.onnx"]
    else:
        image = tmp_path / "x.png"
        from PIL import Image

        Image.new("RGB", (40, 40)).save(image)
        args = [*command, ckpt, image]
    assert_one_line_error(invoke(*args, cwd=tmp_path), "layer3.0.conv2.weight has 2 infinite values")
    assert files_under(tmp_path) - {"x.png"} == {"b.pt"}


# -- preprocessing that makes every input non-finite -------------------------------------------------------------------
@pytest.mark.parametrize("option, values, words", [
    ("--mean", ("nan,0.5,0.5",), ("--mean", "finite", "nan")),
    ("--std", ("0.2,inf,0.2",), ("--std", "finite", "inf")),
    ("--std", ("1e-30", "0.2", "0.2"), ("--std", "at least 1e-06", "1e-30")),
], ids=["mean-nan", "std-inf", "std-tiny"])
def test_export_refuses_preprocessing_that_makes_inputs_non_finite(tmp_path, option, values, words):
    result = invoke("export", "--arch", "resnet18", "--num-classes", CLASSES, "--input-size", SIZE, option, *values,
                    "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, *words)
    assert files_under(tmp_path) == set()


# -- calibration arrays ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, method", [("nan", "minmax"), ("inf", "entropy"), ("-inf", "percentile")])
def test_quantize_refuses_non_finite_calibration_data(made, tmp_path, kind, method):
    calib = made["dir"] / f"calib_{kind}.npy"
    result = invoke("quantize", made["good_onnx"], "--int8", "--calib-data", calib, "--calib-method", method,
                    "--cache-dir", tmp_path / "cache", "-o", tmp_path / "q.onnx")
    assert_one_line_error(result, calib.name, "in 1 of 8 samples", "NaN" if kind == "nan" else "inf")
    assert files_under(tmp_path) <= {"cache"}  # refused before calibrating: no ranges cached, no model


def test_build_int8_refuses_non_finite_calibration_data(made, tmp_path):
    calib = made["dir"] / "calib_nan.npy"
    result = invoke("build", made["good_onnx"], "--int8", "--device", "cpu", "--calib-data", calib,
                    "-o", tmp_path / "e.onnx")
    assert_one_line_error(result, calib.name, "in 1 of 8 samples", "NaN")
    assert files_under(tmp_path) == set()


def test_quantize_int8_refuses_non_finite_samples_before_calibrating(made, tmp_path, monkeypatch):
    """Whatever the source (an image folder through a NaN mean in hand-edited metadata), the samples drawn are
    checked before a calibrator sees them."""
    from rtresnet.data import datasets
    from rtresnet.precision import int8

    real = datasets.load_dataset

    def nan_samples(*args, **kwargs):
        data = real(made["dir"] / "calib.npy", *args[1:], **kwargs)
        inputs = data.inputs.copy()
        inputs[[0, 5], 0, 0, 0] = np.nan
        return datasets._dataset(inputs, None, "images", synthetic=False)

    def never(*args, **kwargs):
        raise AssertionError("calibrated on NaN samples")

    monkeypatch.setattr(datasets, "load_dataset", nan_samples)
    monkeypatch.setattr(int8, "calibrate", never)
    with pytest.raises(RtresnetError, match=r"calibration data photos holds 2 NaN and 0 infinite values in 2 of 8 "
                                            r"samples; refused before calibrating"):
        quantize_int8(made["good_onnx"], tmp_path / "q.onnx", calib_data="photos", method="minmax",
                      cache_dir=tmp_path / "cache")
    assert files_under(tmp_path) <= {"cache"}


@pytest.fixture(scope="module")
def nan_onnx(made) -> Path:
    """The good export with 3 NaN values in its fc.weight initializer: an ONNX edited or written elsewhere."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(made["good_onnx"]))
    init = next(i for i in model.graph.initializer if i.name == "fc.weight")
    values = numpy_helper.to_array(init).copy()
    values.flat[:3] = np.nan
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    path = made["dir"] / "nan_fc.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("precision", [("--fp16",), ("--int8", "--calib-data", "synthetic", "--cache-dir", "cache")],
                         ids=["fp16", "int8"])
def test_quantize_refuses_an_onnx_with_non_finite_weights(nan_onnx, tmp_path, precision):
    result = invoke("quantize", nan_onnx, *precision, "-o", tmp_path / "q.onnx", cwd=tmp_path)
    assert_one_line_error(result, "nan_fc.onnx: weights: fc.weight has 3 NaN and 0 infinite values", "export it again")
    assert files_under(tmp_path) <= {"cache"}  # before converting or calibrating


@pytest.mark.parametrize("args, words", [
    (("quantize", "{onnx}", "--int8", "--calib-data", "synthetic", "--calib-method", "percentile", "--percentile",
      "nan"), ("percentile", "nan")),
    (("quantize", "{onnx}", "--fp16", "--min-cosine", "nan"), ("--min-cosine", "[0, 1]", "nan")),
    (("quantize", "{onnx}", "--fp16", "--min-agreement", "inf"), ("--min-agreement", "[0, 1]", "inf")),
    (("build", "{onnx}", "--fp16", "--device", "cpu", "--min-cosine", "-inf"), ("--min-cosine", "-inf")),
    (("bench", "--arch", "resnet18", "--min-top1", "nan"), ("--min-top1", "nan")),
    (("bench", "--arch", "resnet18", "--max-top1-drop", "inf"), ("--max-top1-drop", "inf")),
], ids=["percentile", "min-cosine", "min-agreement", "build-min-cosine", "min-top1", "max-top1-drop"])
def test_non_finite_thresholds_are_refused(made, tmp_path, args, words):
    output = () if args[0] == "bench" else ("-o", tmp_path / "o.onnx")
    result = invoke(*(a.format(onnx=made["good_onnx"]) for a in args), *output, cwd=tmp_path)
    assert_one_line_error(result, *words)
    assert files_under(tmp_path) == set()


# -- inputs to infer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("kind", list(BAD))
def test_infer_check_finite_refuses_non_finite_inputs(runners, backend, kind):
    runner = runners[backend]
    x = _batch(4)
    x[2, 0, 5, 5:8] = BAD[kind]
    nan, inf = (3, 0) if kind == "nan" else (0, 3)
    with pytest.raises(RtresnetError, match=rf"input contains NaN or inf values \({nan} NaN and {inf} infinite "
                                            rf"values in sample 2 of 4\); check the preprocessing"):
        runner.infer(x, check_finite=True)
    assert runner.infer(_batch(2), check_finite=True).shape == (2, CLASSES)  # still usable


def test_infer_check_finite_takes_torch_tensors(runners):
    t = torch.from_numpy(_batch(3))
    t[0, 1, 0, 0] = float("nan")
    t[2, 1, 0, 0] = float("inf")
    with pytest.raises(RtresnetError, match=r"1 NaN and 1 infinite values in samples 0, 2 of 3"):
        runners["torch"].infer(t, check_finite=True)


def test_check_finite_as_a_load_option_and_overridden_per_call(made):
    x = _batch(2)
    x[1, 0, 0, 0] = np.nan
    with load(made["good_onnx"], threads=1, check_finite=True) as runner:
        with pytest.raises(RtresnetError, match="NaN or inf"):
            runner.infer(x)
        assert np.isnan(runner.infer(x, check_finite=False)).any()  # the caller's explicit choice


@FAST
@given(positions=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3 * SIZE * SIZE - 1),
                                    st.sampled_from(list(BAD))), min_size=1, max_size=6))
def test_infer_reports_the_exact_counts_and_samples(runners, positions):
    x = _batch(6)
    flat = x.reshape(6, -1)
    for sample, index, kind in positions:
        flat[sample, index] = BAD[kind]
    nan, bad = int(np.isnan(x).sum()), int((~np.isfinite(x)).sum())
    rows = sorted({s for s, _, _ in positions})
    with pytest.raises(RtresnetError) as err:
        runners["onnxruntime"].infer(x, check_finite=True)
    assert f"{nan} NaN and {bad - nan} infinite values in sample{'s' if len(rows) > 1 else ''} " \
           f"{', '.join(map(str, rows))} of 6" in str(err.value)


def test_infer_check_finite_refuses_non_finite_logits(made):
    """Finite weights, finite input, logits overflowing float32: refused after the run, not returned."""
    with load("resnet18", weights=made["fp32_overflow"], input_size=SIZE) as runner:
        with pytest.raises(RtresnetError, match=r"the torch runner returned non-finite logits for a finite input: "
                                                r"0 NaN and \d+ infinite values in samples 0, 1 of 2"):
            runner.infer(_batch(2), check_finite=True)


@pytest.mark.parametrize("model", ["torch", "onnx"])
def test_predict_refuses_non_finite_logits_instead_of_nan_probabilities(made, tmp_path, model):
    """Before: exit 0, 'nan%' rows and NaN in --json (not valid JSON)."""
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / name)
    if model == "onnx":
        onnx_path = export_onnx("resnet18", tmp_path / "ovf.onnx", weights=made["fp32_overflow"], input_size=SIZE,
                                verify=False).path
        args = [onnx_path, "--json"]
    else:
        args = ["resnet18", "--weights", made["fp32_overflow"]]
    result = invoke("predict", *args, tmp_path / "a.png", tmp_path / "b.png")
    assert_one_line_error(result, "non-finite logits (0 NaN and 20 infinite values in samples 0, 1 of 2)",
                          "no probabilities")
    assert "nan" not in result.stdout.lower()


def test_check_finite_is_documented_with_its_cost():
    assert "check_finite" in Runner.infer.__doc__
    assert "check_finite" in Runner.__doc__ and "us per ResNet-18 224x224 image" in Runner.__doc__


# -- logits after export -----------------------------------------------------------------------------------------------
def test_export_fails_when_pytorch_logits_overflow(made, tmp_path):
    result = invoke("export", "--arch", "resnet18", "--weights", made["fp32_overflow"], "--input-size", SIZE,
                    "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "the PyTorch logits hold 0 NaN and", "infinite values in 4 of 4 samples",
                          "nothing to compare")
    assert files_under(tmp_path) == set()


class _NanSession:
    """onnxruntime's session, returning NaN in one logit of every sample."""

    def __init__(self, *args, **kwargs):
        self._session = _REAL_SESSION(*args, **kwargs)

    def run(self, names, feeds):
        out = self._session.run(names, feeds)
        out[0][:, 0] = np.nan
        return out


_REAL_SESSION = onnxruntime.InferenceSession


def test_export_fails_when_the_onnx_logits_are_not_finite(made, tmp_path, monkeypatch):
    monkeypatch.setattr(onnxruntime, "InferenceSession", _NanSession)
    with pytest.raises(RtresnetError, match=r"exported ONNX \(in onnxruntime\) does not match PyTorch: 4 non-finite "
                                            r"outputs \(NaN or inf logits\).*nothing was written"):
        export_onnx("resnet18", tmp_path / "m.onnx", weights=made["good"], input_size=SIZE)
    assert files_under(tmp_path) == set()


# -- logits after FP16 / INT8 conversion -------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [(), ("--accept-mismatch",)], ids=["default", "accept-mismatch"])
def test_fp16_fails_when_its_logits_would_overflow(made, tmp_path, extra):
    """FP32 logits of ~2e5 are inf in an FP16 engine; onnxruntime's CPU computes the FP16 Gemm in FP32 and would
    have passed them. --accept-mismatch does not write such a model either."""
    result = invoke("quantize", made["big_onnx"], "--fp16", "-o", tmp_path / "h.onnx", *extra)
    assert_one_line_error(result, "FP16 model fails verification", f"logits at or beyond +-{SATURATION:g}",
                          "--keep-fp32 Gemm")
    assert files_under(tmp_path) == set()


def test_fp16_with_the_classifier_kept_in_fp32_passes_with_float32_logits(made, tmp_path):
    result = convert_fp16(made["big_onnx"], tmp_path / "h.onnx", keep_fp32=["Gemm"])
    assert result.comparison and result.comparison.nonfinite == 0
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].type == "tensor(float)"  # the converter had made them float16 (inf >65504)


def test_build_fp16_fails_when_its_logits_would_overflow(made, tmp_path):
    result = invoke("build", made["big_onnx"], "--fp16", "--device", "cpu", "-o", tmp_path / "e.onnx")
    assert_one_line_error(result, "FP16 model fails verification", "logits at or beyond")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("side", ["reference", "candidate"])
def test_precision_verification_fails_when_either_side_is_not_finite(made, tmp_path, monkeypatch, side):
    from rtresnet.precision import report

    real = report.run_logits

    def spoiled(path, inputs, batch=32, *, exact=False):
        out = real(path, inputs, batch, exact=exact)
        if (Path(path) == Path(made["good_onnx"])) == (side == "reference"):
            out[:3, 1] = np.inf
        return out

    monkeypatch.setattr(report, "run_logits", spoiled)
    message = (r"the FP32 model good.onnx logits hold 0 NaN and 3 infinite values in 3 of 16 samples"
               if side == "reference" else r"FP16 model fails verification .*3 non-finite outputs \(NaN or inf")
    with pytest.raises(RtresnetError, match=message):
        convert_fp16(made["good_onnx"], tmp_path / "h.onnx", accept_mismatch=True)
    assert files_under(tmp_path) == set()


def test_int8_verification_fails_on_nan_logits_even_with_accept_mismatch(made, tmp_path, monkeypatch):
    from rtresnet.precision import report

    real = report.run_logits

    def nan_candidate(path, inputs, batch=32, *, exact=False):
        out = real(path, inputs, batch, exact=exact)
        if Path(path) != Path(made["good_onnx"]):
            out[0, :] = np.nan
        return out

    monkeypatch.setattr(report, "run_logits", nan_candidate)
    with pytest.raises(RtresnetError, match=r"INT8 model fails verification .*10 non-finite outputs .*does not write a "
                                            r"model with NaN or inf logits"):
        quantize_int8(made["good_onnx"], tmp_path / "q.onnx", calib_data=made["dir"] / "calib.npy", method="minmax",
                      accept_mismatch=True, cache_dir=tmp_path / "cache")
    assert "q.onnx" not in files_under(tmp_path)


@FAST
@given(cells=st.sets(st.tuples(st.integers(0, 7), st.integers(0, CLASSES - 1)), min_size=1, max_size=12),
       kind=st.sampled_from(list(BAD)), side=st.sampled_from(["reference", "candidate"]))
def test_compare_logits_never_passes_non_finite_logits(cells, kind, side):
    ref = np.random.default_rng(2).standard_normal((8, CLASSES))
    spoiled = ref.copy()
    for row, col in cells:
        spoiled[row, col] = BAD[kind]
    if side == "reference":
        with pytest.raises(RtresnetError, match=rf"the FP32 logits hold .*in {len({r for r, _ in cells})} of 8"):
            compare_logits(spoiled, ref, reference_name="FP32")
        return
    c = compare_logits(ref, spoiled)
    assert not c and c.nonfinite == len(cells)
    assert f"{len(cells)} non-finite outputs (NaN or inf logits)" in c.failures()
    assert np.isfinite([c.cosine_mean, c.max_abs_error]).all()  # figures stay numbers


def test_an_fp16_logit_bound_counts_every_logit_beyond_it():
    from rtresnet.compare import FP16_TOLERANCE

    ref = np.full((2, 3), 1e5)  # legitimately large FP32 logits
    c = compare_logits(ref, ref.copy(), FP16_TOLERANCE)
    assert c  # FP32 vs FP32: fine
    bounded = compare_logits(ref, ref.copy(), FP16_TOLERANCE.__class__(**{**FP16_TOLERANCE.__dict__,
                                                                          "max_abs_logit": SATURATION}))
    assert not bounded and bounded.saturated == 6


# -- bench accuracy ----------------------------------------------------------------------------------------------------
def test_evaluate_refuses_non_finite_logits():
    def infer(x):
        out = np.zeros((len(x), CLASSES), np.float32)
        out[-1, 3] = np.nan
        return out

    with pytest.raises(RtresnetError, match=r"the logits hold 3 NaN and 0 infinite values in 3 of 5 samples; no "
                                            r"accuracy is computed"):
        evaluate(infer, _batch(5), batch_size=2)  # the last row of each batch (samples 1, 3, 4)


def test_evaluate_says_when_the_inputs_were_the_cause():
    x = _batch(3)
    x[1, 0, 0, 0] = np.inf
    with pytest.raises(RtresnetError, match=r"the inputs hold 0 NaN and 1 infinite values in 1 of 3 samples: fix the "
                                            r"data"):
        evaluate(lambda b: b.reshape(len(b), -1)[:, :CLASSES] * 1.0, x, batch_size=3)


def test_bench_refuses_a_model_whose_logits_overflow(made, tmp_path):
    result = invoke("bench", "--arch", "resnet18", "--weights", made["fp32_overflow"], "--input-size", SIZE,
                    "--backends", "torch", "--batch-sizes", "4", "--data", "synthetic", "--samples", "8",
                    "--threads", "1", cwd=tmp_path)
    assert_clean_failure(result, "the logits hold 0 NaN and 80 infinite values in 8 of 8 samples",
                         "no accuracy is computed")
