"""Shared checks of the hostile-input battery (tests/test_hostile_*.py): every case must fail the way a user can act
on (one `error:` line naming what is wrong, a non-zero exit) and never through the CLI's generic path for bugs."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from rtresnet.cli import main

GENERIC = "unexpected error"


def invoke(*args: str | os.PathLike, cwd: Path | None = None):
    """`rtresnet ARGS` in-process at 100 columns (optionally in ``cwd``); returns click's Result."""
    runner = CliRunner(env={"COLUMNS": "100"})
    if cwd is None:
        return runner.invoke(main, [str(a) for a in args])
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def assert_clean_failure(result, *words: str, exit_codes: tuple[int, ...] = (1, 2)) -> str:
    """A refused input: exit status in ``exit_codes``, no traceback, not the generic path, and the stderr's error
    line(s) mention every word of ``words`` (case-insensitive). Returns the error text."""
    assert result.exit_code in exit_codes, f"exit {result.exit_code}: {result.output[-2000:]}"
    err = result.stderr
    assert "Traceback" not in err and GENERIC not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors, f"no `error:` line in stderr: {err[-2000:]}"
    text = "\n".join(errors)
    for w in words:
        assert w.lower() in text.lower(), f"{w!r} not in {text!r}"
    return text


def assert_one_line_error(result, *words: str, exit_codes: tuple[int, ...] = (1, 2)) -> str:
    """As ``assert_clean_failure``, and the whole stderr is that one line."""
    text = assert_clean_failure(result, *words, exit_codes=exit_codes)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return text


def files_under(folder: Path) -> set[str]:
    """Every path under ``folder`` (relative), to check that nothing was left half-written."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
