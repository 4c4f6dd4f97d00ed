"""Subprocesses at real process boundaries (`accelerate launch`, `llamafactory-cli`).

argv lists only (no shell), an explicit environment, output teed to a log file in the run folder,
and a failure raised with the log's tail and the path of the full log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.log import get_logger

log = get_logger("proc")


class CommandError(RuntimeError):
    """A subprocess that exited non-zero; the message holds the log's tail and its path."""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when its parent dies.

    Without this, `kill -9` of run.py leaves llamafactory-cli training on, and the rerun would start a
    second training into the same folder. Elsewhere (not Linux) this is a no-op.
    """
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the child's process group, then SIGKILL after grace_s (training saves nothing on the way
    out: LLaMA-Factory resumes from its last checkpoint)."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # what the child started and left behind
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_logged(cmd: list[str], log_path: Path, env: dict | None = None) -> None:
    """Run a subprocess with its output teed to a log file; on failure raise with the log's tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("running: %s  (log: %s)", " ".join(cmd), log_path)
    with log_path.open("a", encoding="utf-8") as logf:
        # Its own process group: an interrupted run stops the child and the processes it started
        # (accelerate's workers), not only the child.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env if env is not None else dict(os.environ), bufsize=1, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                logf.write(line)
                sys.stderr.write(line)
            code = proc.wait()
        except BaseException:  # Ctrl-C, SIGTERM (core.cli), or a failure here: the child must not run on
            stop_group(proc)
            raise
    if code != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-30:])
        raise CommandError(f"command failed with exit code {code}: {' '.join(cmd)}\n"
                           f"--- last lines of {log_path} ---\n{tail}--- full log: {log_path}")


