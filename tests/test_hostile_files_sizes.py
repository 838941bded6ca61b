"""Hostile-input battery (issue 16), two classes: valid files that are not what a command expects, and sizes out of
range. Every file case goes to every command that reads such a file; every case must end in one `error:` line that
names the file (or option) and what to do, a non-zero exit, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile import assert_clean_failure, assert_one_line_error, files_under, invoke
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.spec import LIMITS, check_range, describe_range, read_labels

FAST = settings(max_examples=8, deadline=None, derandomize=True)
SERVE_PORTS = ("--http-port", "0", "--grpc-port", "0", "--metrics-port", "0")


# -- the files ---------------------------------------------------------------------------------------------------
def _edit_metadata(src: Path, dst: Path, drop: tuple[str, ...] = (), **values: str) -> Path:
    """A copy of ``src`` whose rtresnet.* metadata entries were edited by hand (values are raw JSON text)."""
    model = onnx.load(str(src))
    kept = [(p.key, values.get(p.key[len("rtresnet."):], p.value)) for p in model.metadata_props
            if p.key[len("rtresnet."):] not in drop]
    del model.metadata_props[:]
    for k, v in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """An rtresnet FP32 ONNX (resnet18, 10 classes, 32x32), its onnxruntime engine, an engine of another model
    (5 classes), and the hostile files built from them: about five seconds, once."""
    import torch
    from PIL import Image

    from rtresnet.engine import build_engine
    from rtresnet.export import export_onnx

    d = tmp_path_factory.mktemp("hostile_files")
    r18 = Path(export_onnx("resnet18", d / "r18.onnx", num_classes=10, input_size=32, verify=False).path)
    engine = build_engine(r18, backend="onnxruntime", max_batch=2, output=d / "engine.onnx").path
    other = Path(export_onnx("resnet18", d / "r18_5.onnx", num_classes=5, input_size=32, verify=False).path)
    other_engine = build_engine(other, backend="onnxruntime", max_batch=2, output=d / "other_engine.onnx").path
    files = {"r18": r18, "engine": Path(engine), "other_engine": Path(other_engine)}

    add = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add",
                            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in "ab"],
                            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 3])])
    onnx.save(helper.make_model(add, opset_imports=[helper.make_opsetid("", 17)]), d / "unrelated.onnx")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 5)).eval()
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(d / "foreign.onnx"), input_names=["x"],
                      output_names=["y"], dynamo=False)
    files["unrelated"], files["foreign"] = d / "unrelated.onnx", d / "foreign.onnx"

    prep = json.loads(next(p.value for p in onnx.load(str(r18)).metadata_props
                           if p.key == "rtresnet.preprocessing"))
    edits = {
        "meta_invalid_json": {"num_classes": "{not json"},
        "meta_wrong_type": {"num_classes": '"ten"'},
        "meta_float_classes": {"num_classes": "10.5"},
        "meta_classes_vs_graph": {"num_classes": "7"},
        "meta_size_vs_graph": {"input_size": "[64, 64]", "preprocessing": json.dumps({**prep, "crop": [64, 64],
                                                                                      "resize": 73})},
        "meta_huge_size": {"input_size": "[1000000000, 1000000000]",
                           "preprocessing": json.dumps({**prep, "crop": [10**9, 10**9], "resize": 10**9})},
        "meta_negative_classes": {"num_classes": "-3"},
        "meta_nan_classes": {"num_classes": "NaN"},
        "meta_labels_count": {"labels": '["cat", "dog"]'},
    }
    for name, values in edits.items():
        files[name] = _edit_metadata(r18, d / f"{name}.onnx", **values)
    files["meta_missing_key"] = _edit_metadata(r18, d / "meta_missing_key.onnx", drop=("preprocessing",))
    for name, suffix in (("random_onnx", ".onnx"), ("random_engine", ".engine"), ("random_pt", ".pt")):
        files[name] = d / f"random{suffix}"
        files[name].write_bytes(np.random.default_rng(16).bytes(4096))
    files["empty_onnx"] = d / "empty.onnx"
    files["empty_onnx"].write_bytes(b"")
    files["image"] = d / "cat.png"
    Image.new("RGB", (40, 40), (120, 60, 30)).save(files["image"])
    files["labels_binary"] = d / "labels.bin.txt"
    files["labels_binary"].write_bytes(bytes(range(256)) * 4)
    files["labels_3"] = d / "labels3.txt"
    files["labels_3"].write_text("cat\ndog\neel\n")
    return files


# -- ONNX models that are not rtresnet's: every command that reads an ONNX model ------------------------------------
def _readers(model: Path, out: Path, image: Path) -> dict[str, list]:
    return {
        "quantize": ["quantize", model, "--fp16", "-o", out / "q.onnx"],
        "build": ["build", model, "--backend", "onnxruntime", "-o", out / "e.onnx"],
        "predict": ["predict", model, image],
        "bench": ["bench", "--models", model, "--iters", "1", "--warmup", "0", "--samples", "2"],
        "export-triton": ["export-triton", model, "-r", out / "repo"],
        "serve": ["serve", model, *SERVE_PORTS],
    }


READERS = ("quantize", "build", "predict", "bench", "export-triton", "serve")
# file -> words the error must hold (besides the file's name) and the remedy
ONNX_CASES = {
    "unrelated": ("no rtresnet metadata", "rtresnet export"),
    "foreign": ("no rtresnet metadata", "rtresnet export"),
    "meta_invalid_json": ("malformed rtresnet metadata", "re-export"),
    "meta_wrong_type": ("num classes 'ten'", "re-export"),
    "meta_float_classes": ("num classes 10.5", "re-export"),
    "meta_classes_vs_graph": ("says 7 classes", "re-export"),
    "meta_size_vs_graph": ("64, 64", "re-export"),
    "meta_huge_size": ("input size 1000000000", "32..4096"),
    "meta_negative_classes": ("num classes -3", "re-export"),
    "meta_nan_classes": ("num classes nan", "re-export"),
    "meta_labels_count": ("2 labels for 10 classes", "re-export"),
    "meta_missing_key": ("missing key 'preprocessing'", "re-export"),
    "random_onnx": ("not a readable ONNX model", "rtresnet export"),
    "empty_onnx": ("is empty", "rtresnet export"),
}


# quantize and serve read the model through the same read_model_info as the others: a few cases each suffice
_SOME = ("foreign", "meta_classes_vs_graph", "meta_huge_size", "meta_missing_key", "random_onnx", "empty_onnx")
ONNX_MATRIX = [(case, command) for case in ONNX_CASES for command in READERS
               if command not in ("quantize", "serve") or case in _SOME]


@pytest.mark.parametrize("case, command", ONNX_MATRIX)
def test_onnx_that_is_not_an_rtresnet_model(made, tmp_path, case, command):
    result = invoke(*_readers(made[case], tmp_path, made["image"])[command])
    assert_one_line_error(result, made[case].name, *ONNX_CASES[case])
    assert files_under(tmp_path) == set()


def test_inspect_describes_a_foreign_onnx_and_says_why_its_metadata_is_not_used(made):
    # inspect is the one command meant for any ONNX: it reports, and names what is wrong with the metadata
    for case, words in (("foreign", "no rtresnet metadata"), ("meta_classes_vs_graph", "says 7 classes")):
        result = invoke("inspect", made[case])
        assert result.exit_code == 0, result.stderr
        text = " ".join(result.output.split())  # the note wraps at the terminal's width
        assert "metadata not used" in text and words in text


@pytest.mark.parametrize("case", ["random_onnx", "empty_onnx", "random_engine"])
def test_inspect_refuses_files_that_are_not_models(made, case):
    assert_one_line_error(invoke("inspect", made[case]), made[case].name, "rtresnet")


# -- engines and sidecars that do not belong together ---------------------------------------------------------------
def _engine_with_sidecar(made, folder: Path, edit=None, text: str | None = None, engine: str = "engine") -> Path:
    """A copy of the onnxruntime engine beside a sidecar edited by ``edit`` (a dict mutator) or replaced by
    ``text``."""
    path = folder / "engine.onnx"
    shutil.copy(made[engine], path)
    if text is None:
        d = json.loads(Path(f"{made['engine']}.json").read_text())
        edit(d)
        text = json.dumps(d)
    Path(f"{path}.json").write_text(text)
    return path


def _other_models_sidecar(made):
    """The 5-class engine's sidecar with its hash made to match: the sha256 check alone cannot catch it."""
    d = json.loads(Path(f"{made['other_engine']}.json").read_text())
    d["engine_sha256"] = sha256_file(made["engine"])
    return json.dumps(d)


SIDECAR_CASES = {
    "future schema": (lambda d: d.update(schema_version=2), None, ("schema version 2", "upgrade rtresnet")),
    "invalid json": (None, lambda made: '{"schema": "rtresnet.engine-sidecar", ', ("not valid JSON",
                                                                                   "rtresnet build")),
    "missing fields": (lambda d: [d.pop(k) for k in ("profile", "inputs")], None, ("missing inputs, profile",
                                                                                  "rtresnet build")),
    "profile not an object": (lambda d: d.update(profile="1-32"), None, ("profile must be an object",
                                                                         "rtresnet build")),
    "model not an object": (lambda d: d.update(model=[1]), None, ("malformed field", "rtresnet build")),
    "hash of another engine": (lambda d: d.update(engine_sha256="0" * 64), None, ("sha256", "rtresnet build")),
    "sidecar of another model": (None, _other_models_sidecar, ("belongs to another engine", "rtresnet build")),
    "huge max batch": (lambda d: d["profile"].update(max_batch=10**9), None, ("max batch 1000000000", "1..4096")),
    "huge input size": (lambda d: d["model"].update(input_size=[10**6, 10**6]), None, ("input size 1000000",
                                                                                        "32..4096")),
    "classes out of range": (lambda d: d["model"].update(num_classes=10**7), None, ("num classes 10000000",
                                                                                    "1..100000")),
}
SIDECAR_READERS = ("predict", "bench", "inspect", "export-triton", "serve")


@pytest.mark.parametrize("command", SIDECAR_READERS)
@pytest.mark.parametrize("case", list(SIDECAR_CASES))
def test_engine_with_a_sidecar_that_does_not_fit(made, tmp_path, case, command):
    edit, text, words = SIDECAR_CASES[case]
    folder = tmp_path / "in"
    folder.mkdir()
    engine = _engine_with_sidecar(made, folder, edit, text(made) if text else None)
    out = tmp_path / "out"
    out.mkdir()
    args = {**_readers(engine, out, made["image"]), "inspect": ["inspect", engine]}[command]
    result = invoke(*args)
    if command == "bench" and case == "sidecar of another model":  # found at load: a failed row, then one error
        assert_clean_failure(result, "none of the model files ran", engine.name, *words)
    else:
        assert_one_line_error(result, engine.name, *words)
    assert files_under(out) == set()


@pytest.mark.parametrize("command", ["predict", "inspect", "export-triton", "serve"])
def test_random_bytes_named_engine_without_a_sidecar(made, tmp_path, command):
    args = {**_readers(made["random_engine"], tmp_path, made["image"]),
            "inspect": ["inspect", made["random_engine"]]}[command]
    assert_one_line_error(invoke(*args), "random.engine", "no sidecar", "rtresnet build")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("command", ["quantize", "build", "bench"])
def test_an_engine_given_where_an_onnx_model_belongs(made, tmp_path, command):
    result = invoke(*_readers(made["random_engine"], tmp_path, made["image"])[command])
    assert_one_line_error(result, "random.engine", "not a readable ONNX model", "the ONNX model it was built from")


def test_random_bytes_named_pt_as_weights(made, tmp_path):
    result = invoke("export", "--arch", "resnet18", "--weights", made["random_pt"], "-o", tmp_path / "m.onnx")
    assert_one_line_error(result, "random.pt", "checkpoint")
    assert files_under(tmp_path) == set()


# -- labels files ---------------------------------------------------------------------------------------------------
def _labels_commands(made, out: Path, labels: Path) -> dict[str, list]:
    return {"export": ["export", "--arch", "resnet18", "--num-classes", "10", "--input-size", "32", "--no-verify",
                       "--labels", labels, "-o", out / "m.onnx"],
            "predict": ["predict", made["r18"], made["image"], "--labels", labels]}


@pytest.mark.parametrize("command", ["export", "predict"])
def test_binary_labels_file(made, tmp_path, command):
    result = invoke(*_labels_commands(made, tmp_path, made["labels_binary"])[command])
    assert_one_line_error(result, "labels.bin.txt", "binary", "one class name per line")
    assert files_under(tmp_path) == set()


def test_labels_file_with_the_wrong_count_is_refused_by_export_naming_it(made, tmp_path):
    result = invoke(*_labels_commands(made, tmp_path, made["labels_3"])["export"])
    assert_one_line_error(result, "labels3.txt", "3 names", "10 classes")
    assert files_under(tmp_path) == set()


def test_labels_file_with_the_wrong_count_is_refused_by_predict(made, tmp_path):
    assert_one_line_error(invoke(*_labels_commands(made, tmp_path, made["labels_3"])["predict"]), "3 labels",
                          "10-class")


@pytest.mark.parametrize("command", ["export", "predict"])
def test_labels_fifo_is_refused_without_blocking(made, tmp_path, command):
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)  # nobody writes to it: opening it would block forever
    out = tmp_path / "out"
    out.mkdir()
    assert_one_line_error(invoke(*_labels_commands(made, out, fifo)[command]), "labels.fifo", "not a regular file")
    assert files_under(out) == set()


def test_read_labels_refuses_folders_empty_files_and_counts(tmp_path):
    with pytest.raises(RtresnetError, match="is a folder"):
        read_labels(tmp_path)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(RtresnetError, match="empty.txt is empty"):
        read_labels(tmp_path / "empty.txt")
    (tmp_path / "two.txt").write_text("a\nb\n")
    assert read_labels(tmp_path / "two.txt", num_classes=2) == ("a", "b")
    with pytest.raises(RtresnetError, match="has 2 names but the model has 3 classes"):
        read_labels(tmp_path / "two.txt", num_classes=3)


# -- sizes out of range: refused with the allowed range, before any work ----------------------------------------------
@pytest.fixture()
def nothing_runs(monkeypatch):
    """The library call behind each command fails the test if reached: a size must be refused before it."""
    def reached(*args, **kwargs):
        raise AssertionError("the command's library call was reached with an out-of-range size")

    for target in ("rtresnet.export.export_onnx", "rtresnet.engine.build_engine", "rtresnet.bench.run",
                   "rtresnet.serving.serve", "rtresnet.serving.export_triton", "rtresnet.precision.quantize_int8",
                   "rtresnet.precision.convert_fp16"):
        monkeypatch.setattr(target, reached)


# (command line before the option, option, LIMITS entry, lowest allowed if it differs from the table's; "top": only
# the top is the option's to check, the calibration settings refuse values below it with their own message)
SIZE_OPTIONS = [
    (["export", "--arch", "resnet18"], "--input-size", "input size", None),
    (["export", "--arch", "resnet18"], "--crop", "input size", None),
    (["export", "--arch", "resnet18"], "--resize", "resize", None),
    (["export", "--arch", "resnet18"], "--num-classes", "num classes", None),
    (["export", "--arch", "resnet18"], "--in-channels", "in channels", None),
    (["export", "--arch", "resnet18"], "--batch", "batch", None),
    (["export", "--arch", "resnet18"], "--max-batch", "batch", None),
    (["build", "MODEL"], "--min-batch", "batch", None),
    (["build", "MODEL"], "--opt-batch", "batch", None),
    (["build", "MODEL"], "--max-batch", "batch", None),
    (["build", "MODEL", "--int8", "--calib-data", "synthetic"], "--calib-size", "calib size", "top"),
    (["build", "MODEL", "--int8", "--calib-data", "synthetic"], "--calib-batch", "calib batch", "top"),
    (["quantize", "MODEL", "--int8", "--calib-data", "synthetic"], "--calib-size", "calib size", "top"),
    (["quantize", "MODEL", "--int8", "--calib-data", "synthetic"], "--calib-batch", "calib batch", "top"),
    (["bench", "--arch", "resnet18"], "--input-size", "input size", None),
    (["bench", "--arch", "resnet18"], "--num-classes", "num classes", None),
    (["bench", "--arch", "resnet18"], "--in-channels", "in channels", None),
    (["bench", "--arch", "resnet18"], "--threads", "threads", 1),
    (["bench", "--arch", "resnet18"], "--calib-size", "calib size", None),
    (["bench", "--arch", "resnet18"], "--batch-sizes", "batch", None),
    (["serve", "MODEL", *SERVE_PORTS], "--max-batch", "batch", None),
    (["serve", "MODEL", *SERVE_PORTS], "--threads", "threads", None),
    (["export-triton", "MODEL", "-r", "REPO"], "--max-batch", "batch", None),
    (["export-triton", "MODEL", "-r", "REPO"], "--preferred-batch-sizes", "batch", None),
    (["models"], "--input-size", "input size", None),
]


def _bad_values(what: str, low: int | str | None) -> list[str]:
    lo, hi = LIMITS[what]
    lo = lo if low in (None, "top") else low
    below = [] if low == "top" else [str(lo - 1), "-7"]
    return [*below, str(hi + 1), str(10**9), "2.5", "abc"]


SIZE_CASES = [pytest.param(prefix, option, what, value, id=f"{prefix[0]} {option} {value}")
              for prefix, option, what, low in SIZE_OPTIONS for value in _bad_values(what, low)]


@pytest.mark.parametrize("prefix, option, what, value", SIZE_CASES)
def test_size_out_of_range_is_refused_naming_the_range(made, tmp_path, nothing_runs, prefix, option, what, value):
    swap = {"MODEL": str(made["r18"]), "REPO": str(tmp_path / "repo")}
    args = [swap.get(a, a) for a in prefix] + [option, value]
    if prefix[0] in ("export", "build", "quantize"):
        args += ["-o", str(tmp_path / "out.onnx")]
    lo, hi = LIMITS[what]
    low = next(low for p, o, w, low in SIZE_OPTIONS if p == prefix and o == option)
    allowed = f"{lo if low in (None, 'top') else low}..{hi}"
    assert_one_line_error(invoke(*args), option, allowed)
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("value", ["0", "512", "2TiB", "abc", "-1GiB", "9" * 400])
def test_workspace_out_of_range_is_refused_naming_the_range(made, tmp_path, nothing_runs, value):
    # parse_size runs before build_engine: `nothing_runs` would turn a late check into a test failure
    result = invoke("build", made["r18"], "--workspace", value, "-o", tmp_path / "e.onnx")
    assert_one_line_error(result, "--workspace", describe_range("workspace"))
    assert files_under(tmp_path) == set()


@FAST
@given(st.sampled_from(sorted(LIMITS)), st.one_of(st.integers(min_value=-10**12, max_value=10**12),
                                                  st.floats(allow_nan=True), st.text(max_size=4), st.none()))
def test_check_range_accepts_exactly_the_table(what, value):
    lo, hi = LIMITS[what]
    if isinstance(value, int) and lo <= value <= hi:
        assert check_range(what, value) == value
    else:
        with pytest.raises(RtresnetError, match=describe_range(what).replace(".", r"\.")):
            check_range(what, value, "--x")


@FAST
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=LIMITS["batch"][1] + 1, max_value=10**18)))
def test_build_engine_refuses_a_batch_out_of_range_before_building(made, tmp_path_factory, batch):
    from rtresnet.engine import build_engine

    out = tmp_path_factory.mktemp("api_batch")
    with pytest.raises(RtresnetError, match=r"--max-batch .*1\.\.4096"):
        build_engine(made["r18"], backend="onnxruntime", max_batch=batch, output=out / "e.onnx")
    assert files_under(out) == set()


@pytest.mark.parametrize("workspace", [0, 1, 2 << 40, 1.5, True])
def test_build_engine_refuses_a_workspace_out_of_range(made, tmp_path, workspace):
    from rtresnet.engine import build_engine

    with pytest.raises(RtresnetError, match=r"--workspace must be 1 MiB\.\.1 TiB"):
        build_engine(made["r18"], backend="onnxruntime", workspace_bytes=workspace, output=tmp_path / "e.onnx")
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("kwargs, words", [
    ({"input_size": (10**6, 10**6)}, "input size 1000000"),
    ({"input_size": (16, 16)}, "input size 16"),
    ({"num_classes": 0}, "num classes 0"),
    ({"in_channels": 10**9}, "in channels 1000000000"),
])
def test_count_arch_refuses_sizes_out_of_range(kwargs, words):
    from rtresnet.models import count_arch

    with pytest.raises(RtresnetError, match=words):
        count_arch("resnet18", **kwargs)


@pytest.mark.parametrize("max_batch", [0, 10**9])
def test_export_triton_api_refuses_a_max_batch_out_of_range(made, tmp_path, max_batch):
    from rtresnet.serving import export_triton

    with pytest.raises(RtresnetError, match=r"max batch .*1\.\.4096"):
        export_triton(made["r18"], tmp_path / "repo", max_batch=max_batch)
    assert files_under(tmp_path) == set()


# -- any JSON value in any field of a sidecar or of the metadata: RtresnetError or a valid object, nothing else ----
_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                  max_size=3), max_leaves=5)


def _field_paths(value, prefix=()):
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield (*prefix, key)
        yield from _field_paths(inner, (*prefix, key))


def _replaced(document: dict, path: tuple, value) -> dict:
    copy = json.loads(json.dumps(document))
    inner = copy
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return copy


@pytest.mark.parametrize("path, value", [(("backend",), {}), (("backend",), ["x"]),
                                         (("model", "preprocessing", "crop"), [True])])
def test_sidecar_fields_found_by_fuzzing(made, path, value):
    """Each once escaped as TypeError/IndexError (the generic path): an unhashable backend, a one-number crop."""
    from rtresnet.sidecar import Sidecar

    with pytest.raises(RtresnetError):
        Sidecar.from_json(json.dumps(_replaced(json.loads(Path(f"{made['engine']}.json").read_text()), path,
                                               value)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_edit_of_a_sidecar_is_accepted_or_refused_cleanly(made, data):
    from rtresnet.sidecar import Sidecar

    document = json.loads(Path(f"{made['engine']}.json").read_text())
    path = data.draw(st.sampled_from(list(_field_paths(document))))
    try:
        Sidecar.from_json(json.dumps(_replaced(document, path, data.draw(_JSON))), source="s.json")
    except RtresnetError as e:
        assert "s.json" in str(e) and "rtresnet build" in str(e)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_edit_of_the_metadata_is_accepted_or_refused_cleanly(made, data):
    from rtresnet.spec import ModelInfo

    props = {p.key: p.value for p in onnx.load(str(made["r18"])).metadata_props}
    key = data.draw(st.sampled_from(sorted(k for k in props if k.startswith("rtresnet."))))
    try:
        ModelInfo.from_metadata({**props, key: json.dumps(data.draw(_JSON))}, source="m.onnx")
    except RtresnetError as e:
        assert "m.onnx" in str(e) and "rtresnet export" in str(e)


@pytest.mark.parametrize("command", ["inspect", "quantize", "build", "predict", "export-triton"])
def test_a_fifo_named_onnx_is_refused_without_blocking(made, tmp_path, command):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)  # nobody writes to it: reading it would block forever
    out = tmp_path / "out"
    out.mkdir()
    args = {**_readers(fifo, out, made["image"]), "inspect": ["inspect", fifo]}[command]
    assert_one_line_error(invoke(*args), "model.onnx", "not a regular file")
    assert files_under(out) == set()
