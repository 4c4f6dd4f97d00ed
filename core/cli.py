"""The entry points' outer shell: how a command ends when it cannot finish.

- bad input (a config value, a model or data file, a run-folder file), a failed subprocess, a timeout:
  one `error:` line naming the file and the fix, exit code 1;
- Ctrl-C or SIGTERM: one line saying what was interrupted, what is kept and the command that resumes,
  exit code 130 / 143 (subprocesses are stopped by core.proc);
- anything else (a bug): one `error:` line, with the traceback written to the run's log file;
  R3V_DEBUG=1 prints the traceback instead.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from core.checks import InputError
from core.log import traceback_to_file
from core.proc import CommandError

DEBUG_ENV = "R3V_DEBUG"
_interrupted_in: list[str] = []  # what was in progress when an exception left it (innermost first)
_folder: list[str] = []  # the results folder of the command, once known


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup (locks, subprocesses) runs as for Ctrl-C."""


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Name the work in progress (a step, a file being sampled) for the line an interruption prints."""
    try:
        yield
    except BaseException:
        if not _interrupted_in:  # the innermost: it sees the exception first
            _interrupted_in.append(what)
        raise


def working_in(folder: Any) -> None:
    """Name the command's results folder for the line an interruption prints."""
    _folder[:] = [str(folder)]


def resume_command(argv: list[str] | None = None) -> str:
    """The command that was run, less --restart (which would delete what is kept)."""
    argv = list(sys.argv if argv is None else argv)
    return shlex.join(["python", argv[0], *[a for a in argv[1:] if a != "--restart"]])


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def run_command(work: Callable[[], Any], kept: str) -> None:
    """Run an entry point's work and end as the module docstring says. `kept`: what an interrupted run
    keeps (e.g. "the finished steps and sampled batches in outputs/<run>")."""
    _interrupted_in.clear()
    _folder.clear()
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        work()
    except KeyboardInterrupt as e:
        how, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("Ctrl-C", 130)
        where = _interrupted_in[0] if _interrupted_in else "the checks and data loading (before any step)"
        folder = f" in {_folder[0]}" if _folder else ""
        print(f"interrupted ({how}) during {where}{folder}: kept {kept}; resume with: {resume_command()}", file=sys.stderr)
        sys.exit(code)
    except (InputError, FileNotFoundError, CommandError, TimeoutError) as e:
        sys.exit(f"error: {e}")
    except Exception as e:
        if os.environ.get(DEBUG_ENV):
            raise
        where = traceback_to_file(e)
        sys.exit(f"error: {type(e).__name__}: {e} (an unexpected failure, please report it; the traceback is "
                 + (f"in {where}" if where else f"printed with {DEBUG_ENV}=1") + ")")
    finally:
        signal.signal(signal.SIGTERM, previous)
