"""The command group itself: one-line errors, --debug tracebacks, version, and every command's --help."""

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
