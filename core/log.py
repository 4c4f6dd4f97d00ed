"""Logging that only the main process prints, plus a log file in the run folder."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOGGER_NAME = "r3v"
_file_handler: logging.FileHandler | None = None
_held: list[logging.Handler] = []  # at most one: keeps records until a log file opens (held_for_file)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


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
    for keep in _held:  # what was logged before the file opened goes first
        root.removeHandler(keep)
        for record in keep.records:
            _file_handler.handle(record)
    _held.clear()


@contextmanager
def held_for_file() -> Iterator[None]:
    """Keep what is logged inside until add_file_log opens a log file, and write it there first: a run
    checks its inputs and loads its data before it takes its folder, and run.log still tells all of it.
    Records still print as usual; what is kept is dropped if no file opens before the block ends."""
    root = logging.getLogger(LOGGER_NAME)
    get_logger()  # the console handler first
    keep = _Keep()
    keep.setLevel(root.level)
    _held.append(keep)
    root.addHandler(keep)
    try:
        yield
    finally:
        root.removeHandler(keep)
        if keep in _held:
            _held.remove(keep)


def log_counts(logger: logging.Logger, what: str, counts: dict[str, int]) -> None:
    """One line of counts by reason: 'mix: kept 812 / wrong answer 301 / no answer 47'."""
    logger.info("%s: %s", what, " / ".join(f"{k} {v}" for k, v in counts.items()) or "nothing")


def traceback_to_file(error: BaseException) -> Path | None:
    """Write an exception's traceback to the run's log file only (the console gets one line); the file's
    path, or None when no log file is open."""
    if _file_handler is None:
        return None
    _file_handler.handle(logging.LogRecord(LOGGER_NAME, logging.ERROR, __file__, 0, "unexpected failure:", None,
                                           (type(error), error, error.__traceback__)))
    _file_handler.flush()
    return Path(_file_handler.baseFilename)
