"""export-triton: model repositories for the NGC tritonserver container, checked against Triton's own ModelConfig
schema (tritonclient's model_config_pb2) and the rules Triton applies at load; wrong configs are refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb2

from rtresnet.cli import main
from rtresnet.engine import build_engine
from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.serving import export_triton
from rtresnet.serving.model_config import (
    MODEL_INFO_PARAMETER,
    check_config,
    check_matches_engine,
    config_problems,
    parse_config,
)
from rtresnet.sidecar import read_sidecar, sidecar_path, write_sidecar
from rtresnet.spec import ModelInfo


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from rtresnet.export import export_onnx

    folder = tmp_path_factory.mktemp("triton_onnx")
    return Path(export_onnx("resnet18", folder / "r18.onnx", num_classes=10, input_size=32, verify=False,
                            labels=[f"class{i}" for i in range(10)]).path)


@pytest.fixture(scope="module")
def ort_engine(onnx_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton_engine") / "r18_cpu.onnx"
    return Path(build_engine(onnx_model, backend="onnxruntime", max_batch=16, output=out).path)


@pytest.fixture()
def trt_plan(ort_engine, tmp_path) -> Path:
    """A TensorRT engine as rtresnet writes it (plan bytes + sidecar); the bytes are never deserialized here."""
    plan = tmp_path / "r18_fp16.plan"
    plan.write_bytes(b"serialized TensorRT plan")
    sidecar = dataclasses.replace(read_sidecar(ort_engine), backend="tensorrt", precision="fp16",
                                  engine_sha256=sha256_file(plan), tensorrt_version="10.16.1.11",
                                  gpu={"name": "NVIDIA H200", "compute_capability": "9.0"},
                                  profile={"min_batch": 1, "opt_batch": 8, "max_batch": 32})
    write_sidecar(plan, sidecar)
    return plan


def read_config(model_dir: Path):
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), pb2.ModelConfig())


def test_onnxruntime_engine_repository_follows_the_sidecar(ort_engine, tmp_path):
    repo = export_triton(ort_engine, tmp_path / "models", preferred_batch_sizes=(4, 8), instances=2,
                         max_queue_size=64)
    assert repo.model_dir == tmp_path / "models" / "r18_cpu"
    config = read_config(repo.model_dir)
    assert config.name == "r18_cpu" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16  # the engine profile's maximum
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), pb2.DataType.Name(inp.data_type)) == ("input", [3, 32, 32], "TYPE_FP32")
    assert inp.format == pb2.ModelInput.FORMAT_NCHW
    assert (out.name, list(out.dims), out.label_filename) == ("logits", [10], "labels.txt")
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 64
    (group,) = config.instance_group
    assert (group.count, pb2.ModelInstanceGroup.Kind.Name(group.kind)) == (2, "KIND_CPU")
    info = ModelInfo.from_dict(json.loads(config.parameters[MODEL_INFO_PARAMETER].string_value))
    assert info.preprocessing.crop == (32, 32) and info.labels[3] == "class3"
    assert (repo.model_dir / "1" / "model.onnx").read_bytes() == ort_engine.read_bytes()
    assert (repo.model_dir / "labels.txt").read_text().splitlines() == [f"class{i}" for i in range(10)]
    assert "tritonserver --model-repository=/models" in (repo.model_dir / "README.md").read_text()
    assert "--gpus" not in repo.docker_command  # CPU instances need no GPU
    assert config_problems(config, repo.model_dir) == []
    assert not [p for p in repo.repository.iterdir() if p.name.startswith(".")]  # no staging left


def test_tensorrt_plan_repository_is_gpu_only_and_pinned_to_its_sm(trt_plan, tmp_path):
    repo = export_triton(trt_plan, tmp_path / "models", model_name="resnet18_trt")
    config = read_config(repo.model_dir)
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert config.max_batch_size == 32
    assert pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    assert dict(config.cc_model_filenames) == {"9.0": "model.plan"}
    assert (repo.model_dir / "1" / "model.plan").read_bytes() == trt_plan.read_bytes()
    assert "--gpus all" in repo.docker_command and "TensorRT 10.16.1.11" in repo.requirement
    with pytest.raises(RtresnetError, match="GPU only"):
        export_triton(trt_plan, tmp_path / "cpu", kind="cpu")


def test_plain_onnx_takes_a_kind_and_a_max_batch(onnx_model, tmp_path):
    repo = export_triton(onnx_model, tmp_path / "models", kind="gpu", max_batch=8)
    config = read_config(repo.model_dir)
    assert config.max_batch_size == 8
    assert pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"


@pytest.mark.parametrize("options, match", [
    ({"max_batch": 64}, "exceeds the engine profile's maximum 16"),
    ({"preferred_batch_sizes": (4, 32)}, r"preferred batch sizes \[32\] are outside 1..16"),
    ({"model_name": "bad name"}, "may hold only"),
    ({"instances": 0}, "at least 1"),
    ({"kind": "gpu"}, "CPU only"),
])
def test_bad_options_are_refused_before_anything_is_written(ort_engine, tmp_path, options, match):
    with pytest.raises(RtresnetError, match=match):
        export_triton(ort_engine, tmp_path / "models", **options)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def test_profile_starting_above_one_is_refused(trt_plan, tmp_path):
    sidecar = read_sidecar(trt_plan)
    write_sidecar(trt_plan, dataclasses.replace(sidecar, profile={"min_batch": 4, "opt_batch": 8, "max_batch": 32}))
    with pytest.raises(RtresnetError, match="rebuild it with --min-batch 1"):
        export_triton(trt_plan, tmp_path / "models")


def test_existing_model_is_kept_unless_forced(ort_engine, tmp_path):
    repo = export_triton(ort_engine, tmp_path / "models")
    (repo.model_dir / "marker").write_text("old")
    with pytest.raises(RtresnetError, match="--force"):
        export_triton(ort_engine, tmp_path / "models")
    assert (repo.model_dir / "marker").exists()
    export_triton(ort_engine, tmp_path / "models", force=True, max_queue_delay_us=500)
    assert not (repo.model_dir / "marker").exists()
    assert read_config(repo.model_dir).dynamic_batching.max_queue_delay_microseconds == 500


def test_a_config_that_fails_validation_leaves_the_repository_as_it_was(ort_engine, tmp_path, monkeypatch):
    repo = export_triton(ort_engine, tmp_path / "models")
    before = (repo.model_dir / "config.pbtxt").read_text()

    def refuse(config, model_dir=None, source=""):
        raise RtresnetError(f"{source} would not load in Triton: test")

    monkeypatch.setattr("rtresnet.serving.repository.check_config", refuse)
    with pytest.raises(RtresnetError, match="would not load"):
        export_triton(ort_engine, tmp_path / "models", force=True, max_queue_delay_us=7)
    assert (repo.model_dir / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["r18_cpu"]


def test_changed_engine_is_refused(ort_engine, tmp_path):
    copy = tmp_path / "r18.onnx"
    copy.write_bytes(ort_engine.read_bytes() + b"\0")
    sidecar_path(copy).write_text(sidecar_path(ort_engine).read_text())
    with pytest.raises(RtresnetError, match="sha256 differs"):
        export_triton(copy, tmp_path / "models")


# -- configs Triton would refuse ------------------------------------------------------------------------------------

@pytest.fixture()
def good(ort_engine, tmp_path):
    repo = export_triton(ort_engine, tmp_path / "models")
    return repo.model_dir, (repo.model_dir / "config.pbtxt").read_text()


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("max_batch_size: 16", "max_batch_size: 2"), "preferred_batch_size|outside"),
    (lambda t: t.replace("max_batch_size: 16", "max_batch_size: 0"), "dynamic_batching needs max_batch_size"),
    (lambda t: t.replace('name: "r18_cpu"', 'name: "other"'), "differs from its folder"),
    (lambda t: t.replace("count: 1", "count: 0"), "count 0"),
    (lambda t: t.replace('platform: "onnxruntime_onnx"', 'platform: "pytorch_libtorch"'), "platform"),
    (lambda t: t.replace("dims: 10", "dims: 10\n  dims: 0"), "each must be >= 1"),
    (lambda t: t.replace("data_type: TYPE_FP32", "data_type: TYPE_INVALID", 1), "no data_type"),
    (lambda t: t + 'output { name: "logits" data_type: TYPE_FP32 dims: 10 }\n', "duplicate output"),
])
def test_wrong_configs_are_refused(good, edit, match):
    model_dir, text = good
    text = edit(text)
    if "preferred" in match:
        text = text.replace("max_queue_delay_microseconds: 100", "preferred_batch_size: 8\n  "
                            "max_queue_delay_microseconds: 100")
    with pytest.raises(RtresnetError, match=match):
        check_config(parse_config(text), model_dir)


def test_fields_outside_triton_schema_do_not_parse(good):
    _, text = good
    with pytest.raises(RtresnetError, match="ModelConfig"):
        parse_config(text + "\nmax_batch: 4\n")
    with pytest.raises(RtresnetError, match="ModelConfig"):
        parse_config(text.replace("KIND_CPU", "KIND_TPU"))


def test_missing_files_and_wrong_label_counts_are_refused(good):
    model_dir, text = good
    config = parse_config(text)
    (model_dir / "labels.txt").write_text("a\nb\n")
    (model_dir / "1" / "model.onnx").unlink()
    problems = "; ".join(config_problems(config, model_dir))
    assert "1/model.onnx is missing" in problems and "2 labels for 10 classes" in problems


def test_config_must_match_the_engine_tensors(good, ort_engine):
    _, text = good
    sidecar = read_sidecar(ort_engine)
    check_matches_engine(parse_config(text), sidecar.inputs, sidecar.outputs)
    with_batch_axis = text.replace("dims: 3\n", "dims: 1\n  dims: 3\n", 1)
    with pytest.raises(RtresnetError, match=r"the engine has TYPE_FP32 \[3, 32, 32\]"):
        check_matches_engine(parse_config(with_batch_axis), sidecar.inputs, sidecar.outputs)


# -- the command ----------------------------------------------------------------------------------------------------

def test_cli_writes_and_prints_the_docker_command(ort_engine, tmp_path):
    result = CliRunner().invoke(main, ["export-triton", str(ort_engine), "--repository", str(tmp_path / "m"),
                                       "--preferred-batch-sizes", "4,8"])
    assert result.exit_code == 0, result.output
    assert "docker run" in result.output and (tmp_path / "m" / "r18_cpu" / "config.pbtxt").is_file()


@pytest.mark.parametrize("args, match", [
    (["--preferred-batch-sizes", "4,x"], "comma-separated integers"),
    (["--max-batch", "99"], "exceeds the engine profile's maximum"),
])
def test_cli_errors_are_one_line(ort_engine, tmp_path, args, match):
    result = CliRunner().invoke(main, ["export-triton", str(ort_engine), "-r", str(tmp_path / "m"), *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0]
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
