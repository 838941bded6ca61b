"""The zoo: torchvision-identical layouts, parameter and MAC counts, options, the registry and `rtresnet models`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from rtresnet.cli import main
from rtresnet.errors import RtresnetError
from rtresnet.models import (
    BasicBlock,
    Bottleneck,
    ResNet,
    count_arch,
    count_macs,
    count_params,
    create_model,
    get_arch,
    list_models,
    named_weights,
    summarize_models,
)
from rtresnet.models.pretrained import find_named_weights, looks_like_weight_name

# torchvision 0.29 `num_params`, which its own test suite checks against the models.
PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "wide_resnet50_2": 68_883_240, "wide_resnet101_2": 126_886_696,
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336, "resnext101_64x4d": 83_455_272,
}
# torchvision's `_ops` column (GFLOPS, meaning GMACs of convs and linears) at 224x224.
GMACS = {"resnet18": 1.814, "resnet34": 3.664, "resnet50": 4.089, "resnet101": 7.801, "resnet152": 11.514}
# sha256[:16] over "key:shape" lines of torchvision 0.29's state_dict (order included), computed by building
# torchvision.models.resnet.<arch>() on the meta device: same names, shapes and order means its checkpoints
# load with strict=True and ONNX node names match.
TORCHVISION_LAYOUT = {
    "resnet18": "3e58b0798c806a0c", "resnet34": "97e365907d64da74", "resnet50": "781bb16f43b8f96f",
    "resnet101": "708e8813e2eb3461", "resnet152": "9e3321003337a848", "resnext50_32x4d": "7140c3dbddac5382",
    "resnext101_32x8d": "d8d4f6f347fc1097", "resnext101_64x4d": "b1642e95df84809d",
    "wide_resnet50_2": "31ec3ad967f7b3b9", "wide_resnet101_2": "b36705398a51e311",
}



def meta_model(arch: str, num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    with torch.device("meta"):  # shapes only: building all ten archs costs no memory
        return get_arch(arch).build(num_classes, in_channels)


def test_zoo_has_the_ten_archs():
    assert list_models() == list(PARAMS)[:5] + ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
                                                 "wide_resnet50_2", "wide_resnet101_2"]


@pytest.mark.parametrize("arch", list(PARAMS))
def test_param_count_and_layout_match_torchvision(arch):
    model = meta_model(arch)
    assert count_params(model) == PARAMS[arch]
    layout = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items())
    assert hashlib.sha256(layout.encode()).hexdigest()[:16] == TORCHVISION_LAYOUT[arch]


@pytest.mark.parametrize("arch", list(GMACS))
def test_mac_count_matches_torchvision(arch):
    assert round(count_macs(meta_model(arch)) / 1e9, 3) == GMACS[arch]


@pytest.mark.parametrize("arch", list(PARAMS))
def test_layer_arithmetic_equals_counting_the_built_model(arch):
    # count_arch (what `rtresnet models` shows) must agree with hooks on the real modules, also off the defaults.
    for size, classes, channels in (((224, 224), 1000, 3), ((97, 33), 7, 1)):
        model = meta_model(arch, classes, channels)
        assert count_arch(arch, size, classes, channels) == (count_params(model), count_macs(model, size))


def test_block_expansion_matches_the_block_classes():
    for arch in list_models():
        spec = get_arch(arch)
        assert spec.expansion == {"BasicBlock": BasicBlock, "Bottleneck": Bottleneck}[spec.block].expansion


def test_listing_the_zoo_does_not_import_torch():
    code = ("import sys; from rtresnet.models import summarize_models, list_models; "
            "assert len(summarize_models()) == len(list_models()) == 10; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_mac_counter_on_cpu_equals_meta():
    model = create_model("resnet18", num_classes=10)
    assert count_macs(model, (64, 64)) == count_macs(meta_model("resnet18", 10), (64, 64))


def test_options_num_classes_and_in_channels():
    model = create_model("resnet18", num_classes=10, in_channels=1)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10)
    assert model.conv1.weight.shape == (64, 1, 7, 7)


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = create_model("resnet18", num_classes=10, zero_init_residual=True)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for layer in (model.layer1, model.layer4)
               for b in layer)
    x = torch.rand(1, 64, 8, 8)  # non-negative, like the ReLU output that feeds a block
    with torch.inference_mode():
        assert torch.equal(model.layer1[1](x), x)
    bottleneck = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, zero_init_residual=True)
    assert float(bottleneck.layer2[0].bn3.weight.detach().abs().sum()) == 0
    default = create_model("resnet18", num_classes=10)
    assert float(default.layer1[0].bn2.weight.detach().sum()) == 64  # batch norm weights start at 1 otherwise


@pytest.mark.parametrize("name, suggestion", [("resnet5", "resnet50"), ("resnt18", "resnet18"),
                                              ("wide_resnet50", "wide_resnet50_2")])
def test_unknown_arch_lists_close_matches(name, suggestion):
    with pytest.raises(RtresnetError, match=f"did you mean .*{suggestion}"):
        get_arch(name)
    with pytest.raises(RtresnetError, match="unknown architecture"):
        create_model(name)


def test_named_weights_catalog():
    assert [w.name for w in named_weights("resnet18")] == ["IMAGENET1K_V1"]
    v2 = find_named_weights("resnet50", "IMAGENET1K_V2")
    assert v2.url == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    assert v2.sha256_prefix == "11ad3fa6" and (v2.top1_pct, v2.top5_pct) == (80.858, 95.434)
    assert (v2.preprocessing.resize, v2.preprocessing.crop, v2.preprocessing.interpolation) == (232, (224, 224),
                                                                                                "bilinear")
    assert find_named_weights("resnet50", "IMAGENET1K_V1").preprocessing.resize == 256
    assert find_named_weights("resnet50", "DEFAULT") == v2
    assert find_named_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V2") == v2
    for arch in list_models():
        ws = named_weights(arch)
        assert ws and all(w.file_name.startswith(arch + "-") and len(w.sha256_prefix) == 8 for w in ws)
    with pytest.raises(RtresnetError, match="did you mean IMAGENET1K_V1"):
        find_named_weights("resnet18", "IMAGENET1K_V2")
    assert looks_like_weight_name("IMAGENET1K_V1") and not looks_like_weight_name("ckpt/resnet50.pth")


def test_models_command_table_and_json():
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    assert "25,557,032" in result.output and "4.089" in result.output and "80.858" in result.output
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["arch"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(PARAMS)
    assert rows["resnet152"]["params"] == PARAMS["resnet152"] and rows["resnet152"]["gmacs"] == 11.514
    assert [w["name"] for w in rows["resnet50"]["weights"]] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    assert summarize_models((64, 64))[0].macs == count_macs(meta_model("resnet18"), (64, 64))


def test_models_command_help_has_an_example():
    result = CliRunner().invoke(main, ["models", "--help"])
    assert result.exit_code == 0 and "rtresnet models --json" in result.output
