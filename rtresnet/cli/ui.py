"""Terminal output shared by the commands: the library's log records on stderr, tables and progress bars."""

from __future__ import annotations

import logging
import os

import click
from rich.console import Console


def _console(stderr: bool = False) -> Console:
    """A terminal gets its own width; a pipe or file (CI logs, `| less`) gets whole lines instead of rich's
    80-column default, unless COLUMNS says otherwise."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=PIPE_WIDTH)
    return console


PIPE_WIDTH = 250
stderr = _console(stderr=True)
stdout = _console()

_PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ",
           logging.CRITICAL: "error: "}
_COLOR = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "red", logging.DEBUG: "bright_black"}


class _EchoHandler(logging.Handler):
    """One style for every message (`warning: ...` as the commands print their own), each text once per process,
    never wrapped: piped logs keep one record per line. click.echo finds the current stderr at every call (so
    CliRunner captures it) and drops the colour when stderr is not a terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = _PREFIX.get(record.levelno, "") + self.format(record)
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            if text in self.seen:  # the same warning from a second build or bench row says nothing new
                return
            self.seen.add(text)
        color = _COLOR.get(record.levelno)
        click.echo(click.style(text, fg=color) if color else text, err=True)


def setup_logging(level: int) -> None:
    """Route the library's `logging` records (logger "rtresnet") to stderr."""
    logger = logging.getLogger("rtresnet")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = _EchoHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
