"""Terminal output shared by the commands: rich logging on stderr, tables and progress bars."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

stderr = Console(stderr=True)
stdout = Console()


def setup_logging(level: int) -> None:
    """Route the library's `logging` records (logger "rtresnet") to stderr through rich."""
    logger = logging.getLogger("rtresnet")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
