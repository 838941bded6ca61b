"""The README's quick-start block runs as written, so the documented commands cannot drift."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_block() -> str:
    match = re.search(r"```sh quickstart\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md has no ```sh quickstart block"
    return match.group(1)


def test_readme_starts_with_the_two_setup_commands():
    head = README.read_text().splitlines()[:8]
    assert any(line.startswith("make demo") for line in head) and any(line.startswith("make test") for line in head)


def test_quickstart_runs(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", quickstart_block()], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # predict printed a top-3 for each of the 4 digit images, and the INT8 engine sits beside its sidecar
    assert len(list((tmp_path / "digit_pngs").glob("*.png"))) == 4
    assert (tmp_path / "digits_int8.onnx.json").is_file()
    assert "onnxruntime" in result.stdout


def test_digits_figure_of_this_machine_lies_in_the_range_the_readme_states():
    """README item: a fresh training's top-1 varies by CPU; the README gives the range and this machine's
    checkpoint (trained once per test session) must fall in it."""
    from click.testing import CliRunner

    from rtresnet.cli import main
    from rtresnet.data.digits import checkpoint_top1, digits_checkpoint

    match = re.search(r"fresh trainings score between ([\d.]+) and ([\d.]+) %", " ".join(README.read_text().split()))
    assert match, "README.md does not say how much the digits top-1 varies between machines"
    low, high = float(match.group(1)), float(match.group(2))
    recorded = checkpoint_top1(digits_checkpoint())
    assert recorded is not None, "the digits checkpoint records no held-out top-1"
    top1 = 100 * recorded
    assert low <= top1 <= high, f"this machine's digits checkpoint scores {top1:.2f} %, outside {low}..{high} %"
    result = CliRunner().invoke(main, ["digits"])  # prints the checkpoint and its own figure
    assert result.exit_code == 0 and result.stdout.strip() == str(digits_checkpoint())
    assert f"held-out top-1 {top1:.2f} %" in result.stderr
