"""onnxruntime's worker-thread spinning: a runner option whose mode reaches the session's own config (read back from
the session), the default that keeps several runners in one process off each other's cores, one-line errors."""

from __future__ import annotations

import pytest

from rtresnet.errors import RtresnetError
from rtresnet.runtime import load
from rtresnet.runtime.ort_runner import SPIN_MODES


def session_config(runner) -> dict[str, str]:
    """What the live InferenceSession was created with (not what the runner meant to ask)."""
    options = runner._session.get_session_options()
    keys = SPIN_MODES["always"]
    return {key: options.get_session_config_entry(key) for key in keys}


@pytest.mark.parametrize("asked, mode, allow, stop", [
    (None, "during-run", "1", "1"), (False, "never", "0", "0"), (True, "always", "1", "0")],
    ids=["default", "off", "on"])
def test_spinning_reaches_the_session(onnx_model, asked, mode, allow, stop):
    options = {} if asked is None else {"spinning": asked}
    with load(onnx_model, threads=1, **options) as r:
        assert r.spinning == mode
        assert session_config(r) == {"session.intra_op.allow_spinning": allow,
                                     "session.inter_op.allow_spinning": allow, "session.force_spinning_stop": stop}


def test_default_holds_with_several_runners_alive(onnx_model):
    # the default does not depend on what else lives in the process: the first runner stops spinning too
    with load(onnx_model, threads=1) as first, load(onnx_model, threads=1) as second:
        assert first.spinning == second.spinning == "during-run"
        assert session_config(first)["session.force_spinning_stop"] == "1"


def test_engines_take_the_option_through_the_loader(onnx_model, tmp_path):
    from rtresnet.engine import build_engine

    engine = build_engine(onnx_model, backend="onnxruntime", max_batch=2, output=tmp_path / "e.onnx").path
    with load(engine, spinning=False) as r:
        assert r.spinning == "never"
        assert session_config(r)["session.intra_op.allow_spinning"] == "0"


@pytest.mark.parametrize("bad", ["yes", 1, 0.5, "never"])
def test_bad_values_are_one_line_errors(onnx_model, bad):
    with pytest.raises(RtresnetError, match="spinning takes True") as err:
        load(onnx_model, spinning=bad)
    assert "\n" not in str(err.value)


def test_other_runners_refuse_the_option_by_name():
    with pytest.raises(RtresnetError, match="no option spinning"):
        load("resnet18", num_classes=10, spinning=False)
