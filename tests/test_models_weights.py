"""Checkpoints: safe reading, strict loading with a readable report, head/input adaptation, named downloads."""

from __future__ import annotations

import io
import logging
import os
import pickle
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import sha256_file
from rtresnet.models import create_model, get_arch, inspect_state_dict, list_models, pretrained
from rtresnet.models.checkpoint import CheckpointMismatchError, adapt_input_conv, load_state_dict, save_state_dict
from rtresnet.models.factory import load_model
from rtresnet.models.imagenet import imagenet_classes
from rtresnet.models.pretrained import NamedWeights, download_weights

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A resnet18 with a 10-class head, saved both ways."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10)
    folder = tmp_path_factory.mktemp("tiny")
    pth, st = save_state_dict(model, folder / "tiny.pth"), save_state_dict(model, folder / "tiny.safetensors")
    return model, pth, st


def logits(model, x=X):
    with torch.inference_mode():
        return model(x)


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_round_trip(tiny, kind):
    model, pth, st = tiny
    path = pth if kind == "pth" else st
    loaded = load_model("resnet18", weights=str(path))
    assert (loaded.arch, loaded.num_classes, loaded.in_channels, loaded.weights) == ("resnet18", 10, 3, path.name)
    assert loaded.weights_sha256 == sha256_file(path)
    assert loaded.preprocessing is None and loaded.labels == ()
    assert not loaded.model.training
    assert torch.equal(logits(loaded.model), logits(model))
    assert torch.equal(logits(create_model("resnet18", weights=path)), logits(model))


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_full_checkpoint_with_module_prefix(tiny, tmp_path, wrapper, caplog):
    model, _, _ = tiny
    wrapped = {wrapper: {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 7}
    torch.save(wrapped, tmp_path / "ddp.pth")
    with caplog.at_level(logging.INFO, logger="rtresnet"):
        loaded = load_model("resnet18", weights=tmp_path / "ddp.pth")
    assert torch.equal(logits(loaded.model), logits(model))
    assert "module." in caplog.text
    assert not any(k.startswith("module.") for k in load_state_dict(tmp_path / "ddp.pth"))


@pytest.mark.parametrize("prefix", ["model.", "net.backbone."])
def test_lightning_style_prefix_is_stripped(tiny, tmp_path, prefix):
    model, _, _ = tiny
    torch.save({"state_dict": {prefix + k: v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "lightning.ckpt")
    loaded = load_model("resnet18", weights=tmp_path / "lightning.ckpt")
    assert torch.equal(logits(loaded.model), logits(model))


def test_deep_stem_checkpoint_is_named_not_none(tmp_path):
    state = {k: v for k, v in create_model("resnet50").state_dict().items() if not k.startswith(("conv1.", "bn1."))}
    state |= {"conv1.0.weight": torch.zeros(32, 3, 3, 3), "conv1.1.weight": torch.ones(32),
              "conv1.3.weight": torch.zeros(32, 32, 3, 3), "conv1.6.weight": torch.zeros(64, 32, 3, 3)}
    with pytest.raises(CheckpointMismatchError) as err:
        load_model("resnet50", weights=save_state_dict(state, tmp_path / "resnet50d.safetensors"))
    msg = str(err.value)
    assert "deep stem" in msg and "timm's resnet*d" in msg and "None" not in msg and "pass --arch" not in msg


def test_checkpoint_of_another_arch_gives_a_readable_report(tiny):
    _, pth, _ = tiny
    with pytest.raises(CheckpointMismatchError) as err:
        load_model("resnet34", weights=pth)
    msg = str(err.value)
    assert "\n" not in msg  # the CLI shows the first line only
    assert "does not fit resnet34" in msg and "96 missing" in msg and "layer1.2.conv1.weight" in msg
    assert "looks like resnet18" in msg and "--arch resnet18" in msg
    with pytest.raises(CheckpointMismatchError) as err:
        load_model("resnet50", weights=pth)
    msg = str(err.value)
    assert "shape-mismatched" in msg and "checkpoint (64, 64, 3, 3) vs model (64, 64, 1, 1)" in msg
    assert "  missing: layer1.0.conv3.weight" in err.value.report  # the full list, one key per line


@pytest.mark.parametrize("arch", list_models())
def test_arch_is_inferred_from_shapes(arch):
    with torch.device("meta"):
        sd = get_arch(arch).build(7, 1).state_dict()
    shape = inspect_state_dict(sd)
    assert (shape.arch, shape.num_classes, shape.in_channels) == (arch, 7, 1)


def test_non_resnet_state_dict(tmp_path):
    torch.save({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, tmp_path / "linear.pth")
    with pytest.raises(RtresnetError, match="does not look like a ResNet"):
        load_model("resnet18", weights=tmp_path / "linear.pth")


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_without_running(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))  # the payload is real: an unsafe load runs it
    assert probe.exists()
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}, protocol=2))
    framed = tmp_path / "framed.pth"  # protocol 5 frames: refused by the opcode filter before any global
    framed.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}, protocol=5))
    with pytest.raises(RtresnetError, match="not a PyTorch checkpoint the safe"):
        load_model("resnet18", weights=framed)
    torch.save({"conv1.weight": torch.zeros(1), "fc.weight": _Payload(marker)}, tmp_path / "zip.pth")
    for path in (raw, tmp_path / "zip.pth"):
        with pytest.raises(RtresnetError, match="refused because unpickling"):
            load_model("resnet18", weights=path)
    assert not marker.exists()


def test_unreadable_files(tmp_path, tiny):
    _, pth, st = tiny
    with pytest.raises(RtresnetError, match="weights file not found"):
        load_state_dict(tmp_path / "missing.pth")
    for good, name in ((pth, "cut.pth"), (st, "cut.safetensors")):
        (tmp_path / name).write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        with pytest.raises(RtresnetError, match="truncated"):
            load_state_dict(tmp_path / name)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(RtresnetError, match="not a PyTorch checkpoint the safe"):
        load_state_dict(tmp_path / "text.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(RtresnetError, match="holds list, not a state dict"):
        load_state_dict(tmp_path / "list.pth")
    torch.save({"conv1.weight": torch.zeros(1), "step": 3}, tmp_path / "mixed.pth")
    with pytest.raises(RtresnetError, match="'step' is a int"):
        load_state_dict(tmp_path / "mixed.pth")
    with pytest.raises(RtresnetError, match="use a .safetensors, .pth or .pt"):
        save_state_dict({}, tmp_path / "weights.onnx")


def test_num_classes_mismatch_needs_reset_head(tiny, caplog):
    model, pth, _ = tiny
    with pytest.raises(RtresnetError, match="10-class head but num_classes=5 .*--reset-head"):
        load_model("resnet18", weights=pth, num_classes=5)
    with caplog.at_level(logging.WARNING, logger="rtresnet"):
        loaded = load_model("resnet18", weights=pth, num_classes=5, reset_head=True)
    assert "re-initializing the classifier head" in caplog.text
    assert loaded.num_classes == 5 and loaded.model.fc.out_features == 5
    assert torch.equal(loaded.model.layer4[1].conv2.weight, model.layer4[1].conv2.weight)
    assert load_model("resnet18", weights=pth, num_classes=10).num_classes == 10  # same head: no reset needed


def test_backbone_without_head(tiny, tmp_path):
    model, _, _ = tiny
    backbone = save_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")},
                               tmp_path / "backbone.safetensors")
    with pytest.raises(RtresnetError, match="no classifier head .*--reset-head"):
        load_model("resnet18", weights=backbone)
    loaded = load_model("resnet18", weights=backbone, num_classes=3, reset_head=True)
    assert loaded.num_classes == 3 and torch.equal(loaded.model.conv1.weight, model.conv1.weight)


def test_in_channels_adaptation(tiny, caplog):
    model, pth, _ = tiny
    with caplog.at_level(logging.WARNING, logger="rtresnet"):
        gray = load_model("resnet18", weights=pth, in_channels=1)
    assert "adapted conv1 from 3 to 1" in caplog.text
    g = X[:, :1]
    # Summing conv1 over RGB makes a 1-channel image give what its 3-channel replica gave before.
    torch.testing.assert_close(logits(gray.model, g), logits(model, g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    four = load_model("resnet18", weights=pth, in_channels=4)
    w = model.conv1.weight.detach()
    assert four.in_channels == 4
    torch.testing.assert_close(four.model.conv1.weight.detach(), torch.cat([w, w[:, :1]], 1) * 3 / 4)
    assert adapt_input_conv(w, 3) is w


# --------------------------------------------------------------------------------------------- named weights


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


@pytest.fixture(scope="session")
def imagenet_file(tmp_path_factory):
    """A 1000-class resnet18 checkpoint and a catalog entry whose sha256 prefix matches it."""
    torch.manual_seed(1)
    path = save_state_dict(create_model("resnet18"), tmp_path_factory.mktemp("published") / "r18.pth")
    data = path.read_bytes()
    entry = NamedWeights("resnet18", "IMAGENET1K_V1", f"resnet18-{sha256_file(path)[:8]}.pth", 69.758, 89.078, 256)
    return data, entry


@pytest.fixture
def fake_net(monkeypatch, imagenet_file):
    data, entry = imagenet_file
    calls: list[str] = []
    state = {"body": data, "error": None}

    def urlopen(url, timeout=None):
        calls.append(url)
        if state["error"]:
            raise state["error"]
        return FakeResponse(state["body"])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(pretrained, "_CATALOG", (entry,))
    return entry, calls, state


def test_named_weights_download_and_cache(fake_net, tmp_path, monkeypatch):
    entry, calls, _ = fake_net
    monkeypatch.setenv("RTRESNET_HOME", str(tmp_path))
    loaded = load_model("resnet18", weights="IMAGENET1K_V1")
    assert calls == [entry.url]
    cached = tmp_path / "weights" / entry.file_name
    assert cached.is_file() and loaded.weights_sha256 == sha256_file(cached)
    assert loaded.weights == "IMAGENET1K_V1" and loaded.num_classes == 1000
    assert loaded.preprocessing.resize == 256 and loaded.preprocessing.crop == (224, 224)
    assert loaded.labels == imagenet_classes() and loaded.labels[0] == "tench"
    load_model("resnet18", weights="DEFAULT")
    assert len(calls) == 1  # the cached file is used
    assert load_model("resnet18", weights="IMAGENET1K_V1", num_classes=10, reset_head=True).labels == ()
    assert load_model("resnet18", weights="IMAGENET1K_V1", in_channels=1).preprocessing is None


def test_bad_hash_discards_the_download(fake_net, tmp_path):
    entry, _, state = fake_net
    state["body"] = b"corrupted" * 1000
    with pytest.raises(RtresnetError, match=f"expected prefix {entry.sha256_prefix}; the file was discarded"):
        download_weights(entry, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one is left


def test_corrupt_cached_file_is_downloaded_again(fake_net, tmp_path, imagenet_file):
    entry, calls, _ = fake_net
    (tmp_path / entry.file_name).write_bytes(b"half a file")
    assert download_weights(entry, cache_dir=tmp_path).read_bytes() == imagenet_file[0]
    assert calls == [entry.url]


def test_offline_error_names_url_and_manual_path(fake_net, tmp_path):
    entry, _, state = fake_net
    state["error"] = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    with pytest.raises(RtresnetError) as err:
        download_weights(entry, cache_dir=tmp_path)
    msg = str(err.value)
    assert entry.url in msg and f"--weights /path/to/{entry.file_name}" in msg and "name resolution" in msg


def test_unknown_weight_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RtresnetError, match="resnet18 has no named weights 'IMAGENET1K_V2'"):
        load_model("resnet18", weights="IMAGENET1K_V2")
    with pytest.raises(RtresnetError, match="weights file not found: nothing_here.pth"):
        load_model("resnet18", weights="nothing_here.pth")


def test_imagenet_classes():
    names = imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[1], names[999]) == ("tench", "goldfish", "toilet tissue")
