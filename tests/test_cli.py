"""The command group itself: one-line errors, --debug tracebacks, version, and every command's --help."""

import re

import click
import pytest
from click.testing import CliRunner

from rtresnet import __version__
from rtresnet.cli import COMMANDS, main
from rtresnet.errors import RtresnetError


@pytest.fixture
def failing_command():
    @click.command("fail-test")
    @click.option("--kind", default="user")
    def fail(kind):
        raise RtresnetError("bad input; do this instead") if kind == "user" else KeyError("boom")

    main.add_command(fail)
    yield
    main.commands.pop("fail-test")


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_user_error_is_one_line_without_traceback(failing_command):
    result = CliRunner().invoke(main, ["fail-test"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: bad input; do this instead"


def test_unexpected_error_is_short_and_debug_shows_traceback(failing_command):
    result = CliRunner().invoke(main, ["fail-test", "--kind", "bug"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "--debug" in result.output
    debug = CliRunner().invoke(main, ["--debug", "fail-test", "--kind", "bug"])
    assert debug.exit_code != 0 and isinstance(debug.exception, KeyError)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "rtresnet " + name in result.output


@pytest.mark.parametrize("args", [["nope"], ["models", "--no-such-flag"], ["predict", "-k", "0", "m.onnx", "a.png"]])
def test_usage_errors_are_one_line_with_exit_2(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0]


def test_global_flags_after_the_command(failing_command):
    """`rtresnet export --debug` as users type it: the group's flags work after the command name too."""
    debug = CliRunner().invoke(main, ["fail-test", "--kind", "bug", "--debug"])
    assert isinstance(debug.exception, KeyError)  # the traceback, as with `rtresnet --debug fail-test`
    quiet = CliRunner().invoke(main, ["models", "-q"])
    assert quiet.exit_code == 0 and "resnet50" in quiet.stdout and quiet.stderr == ""
    after_dashdash = CliRunner().invoke(main, ["fail-test", "--", "--debug"])
    assert after_dashdash.exit_code == 2  # after `--` it is an argument, not the flag


def test_every_command_ends_with_its_time_and_steps(tmp_path):
    result = CliRunner().invoke(main, ["export", "--arch", "resnet18", "--num-classes", "10", "--input-size", "32",
                                       "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"done in \d+\.\d s: load weights \d+\.\d, export \d+\.\d, verify \d+\.\d", last), last
    total, parts = float(last.split()[2]), [float(x) for x in re.findall(r" (\d+\.\d)(?:,|$)", last)]
    assert sum(parts) <= total + 0.15  # steps are exclusive: they add up to at most the whole
    quiet = CliRunner().invoke(main, ["-q", "models"])
    assert "done in" not in quiet.stderr


def test_verbose_shows_debug_logs_and_warnings_have_one_style_once(tmp_path):
    import logging

    @click.command("warn-test")
    def warn():
        log = logging.getLogger("rtresnet.test")
        for _ in range(3):
            log.warning("calibrating on 40 samples; " + "a long explanation " * 12)
        log.debug("a debug detail")

    main.add_command(warn)
    try:
        result = CliRunner().invoke(main, ["warn-test"])
        verbose = CliRunner().invoke(main, ["warn-test", "-v"])
    finally:
        main.commands.pop("warn-test")
    lines = result.stderr.splitlines()
    warnings = [line for line in lines if "calibrating" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: calibrating")  # once, one style, one line
    assert "a debug detail" not in result.stderr and "debug: a debug detail" in verbose.stderr


def test_unknown_arch_or_backend_exits_2():
    result = CliRunner().invoke(main, ["export", "--arch", "resnet19"])
    assert result.exit_code == 2 and result.stderr.startswith("error: unknown architecture 'resnet19'")


def test_ctrl_c_exits_130_and_leaves_nothing_half_written(tmp_path):
    """SIGINT while the digits model trains (a minute): exit 130, one line, no checkpoint or temp file left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    env = dict(os.environ, RTRESNET_HOME=str(home))
    # SIGINT back to its default in the child: a shell starts background jobs (CI) with it ignored, and an
    # ignored signal stays ignored through exec
    proc = subprocess.Popen([sys.executable, "-m", "rtresnet", "digits"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (home / "digits").is_dir() and time.monotonic() < deadline:  # training has started
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    assert out == "" and list((home / "digits").iterdir()) == []


def test_piped_tables_keep_whole_lines():
    """Piped into a file or CI log (no terminal, no COLUMNS), tables are not squeezed to rich's 80 columns: each
    backend's reason and fix stay on one line, as a user greps for them."""
    import os
    import subprocess
    import sys

    from rtresnet.doctor import diagnose

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    out = subprocess.run([sys.executable, "-m", "rtresnet", "doctor"], env=env, capture_output=True, text=True,
                         timeout=120).stdout
    lines = out.splitlines()
    unusable = [b for b in diagnose().backends if not b.usable]  # (a usable one's detail has this process' threads)
    if not unusable:  # a machine with every backend (never CI: it has no GPU)
        pytest.skip("every backend is usable here: no long reason to print")
    for b in unusable:
        assert any(b.detail in line for line in lines), b.detail
        if b.fix:
            assert any(f"-> {b.fix}" in line for line in lines), b.fix
