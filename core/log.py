"""Logging that only the main process prints, plus a log file in the run folder."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOGGER_NAME = "r3v"
_file_handler: logging.FileHandler | None = None


def rank() -> int:
    """This process's global rank under accelerate / torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def is_main_process() -> bool:
    return rank() == 0


def get_logger(name: str = "") -> logging.Logger:
    logger = logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        # Non-main ranks only report problems.
        root.setLevel(logging.INFO if is_main_process() else logging.WARNING)
        root.propagate = False
    return logger


def add_file_log(path: str | Path) -> None:
    """Send this process's log (main process only) to a file in the run folder.

    One run file at a time: a process that runs several runs (tests, notebooks) moves the file
    handler instead of writing every later run into every earlier run's log.
    """
    global _file_handler
    if not is_main_process():
        return
    root = logging.getLogger(LOGGER_NAME)
    path = str(Path(path).resolve())
    if _file_handler is not None:
        if _file_handler.baseFilename == path:
            return
        root.removeHandler(_file_handler)
        _file_handler.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _file_handler = logging.FileHandler(path)
    _file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(_file_handler)


def log_counts(logger: logging.Logger, what: str, counts: dict[str, int]) -> None:
    """One line of counts by reason: 'mix: kept 812 / wrong answer 301 / no answer 47'."""
    logger.info("%s: %s", what, " / ".join(f"{k} {v}" for k, v in counts.items()) or "nothing")
