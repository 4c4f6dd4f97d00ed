"""The run folder: its layout, the pool of train samples, records matched to a split, and reopening.

A self-training run owns `<output_dir>/<run_name>/`: `config.yaml` (the resolved config), `state.json`
(finished steps) and one `iter_<k>/` folder per iteration (docs/pipeline.md). run.py, the scaling
script and eval.evaluate read the same layout through these names. One process works in a folder at a
time: `lock_folder` (a file lock, `.lock`, with its holder in `.lock.json`).
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from core.config import ConfigError, save_or_check
from core.io import FileError, atomic_write_json, read_json, read_jsonl
from core.log import add_file_log, get_logger

log = get_logger("rundir")

RUN_CONFIG_FILE = "config.yaml"
TRAIN_SAMPLES = "train_samples.jsonl"
_ITER = re.compile(r"iter_(\d+)")


def iter_dir(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / f"iter_{k}"


def iteration_of(name: str) -> int | None:
    """k for a folder named iter_<k>, else None."""
    match = _ITER.fullmatch(name)
    return int(match.group(1)) if match else None


def is_run_dir(path: Path) -> bool:
    """A self-training run folder: its config and at least iteration 0."""
    return (Path(path) / RUN_CONFIG_FILE).is_file() and iter_dir(path, 0).is_dir()


def train_pool(run_dir: Path, upto: int | None = None, *, strict: bool = True) -> list[tuple[int, list[dict]]]:
    """[(k, records)] of iter_<k>/train_samples.jsonl for k < upto (every iteration found when None), by k.

    strict: every iteration 0..upto-1 must have its file (the loop's mix at iteration `upto`).
    Otherwise the files that exist are used and gaps are logged (a run samples its last iteration's
    train set only with sample_last_train=true); none at all is an error."""
    run_dir = Path(run_dir)
    if strict:
        if upto is None:
            raise ValueError("train_pool(strict=True) needs the iteration the pool is for (upto)")
        out = []
        for j in range(upto):
            path = iter_dir(run_dir, j) / TRAIN_SAMPLES
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: iteration {upto} needs the train samples of "
                                        f"iterations 0..{upto - 1}. Rerun the same command to produce it.")
            out.append((j, read_jsonl(path)))
        return out
    found = sorted((k, path) for path in run_dir.glob(f"iter_*/{TRAIN_SAMPLES}")
                   if (k := iteration_of(path.parent.name)) is not None and (upto is None or k < upto))
    if not found:
        below = f" below iter_{upto}" if upto is not None else ""
        raise FileNotFoundError(f"{run_dir}: no iter_*/{TRAIN_SAMPLES}{below} to build the mix from.")
    ks = [k for k, _ in found]
    missing = sorted(set(range(ks[-1] + 1 if upto is None else upto)) - set(ks))
    if missing:
        log.warning("%s: no train samples for iteration(s) %s (a run samples its last iteration's train "
                    "set only with sample_last_train=true); using iterations %s", run_dir, missing, ks)
    return [(k, read_jsonl(path)) for k, path in found]


def in_order(records: Sequence[dict], ids: Sequence[str], where: str | Path) -> list[dict]:
    """The records in the order of `ids` (a split's questions), joined by id, never by position.

    Refuses a file whose ids are not exactly those questions (missing, extra or repeated): it belongs
    to other data."""
    by_id = {r["id"]: r for r in records}
    missing = [i for i in ids if i not in by_id]
    if missing or len(records) != len(ids) or len(by_id) != len(ids):
        extra = [i for i in by_id if i not in set(ids)]
        raise ValueError(f"{where}: its {len(records)} records do not match the {len(ids)} questions of its "
                         f"split by id (missing: {missing[:5]}, not in the split: {extra[:5]}); the file "
                         f"belongs to other data. Delete it to redo that step, or use another output folder.")
    return [by_id[i] for i in ids]


def open_folder(folder: Path, config_file: str, config: dict, *, defaults: dict, allowed: Sequence[str],
                fix: str, log_file: str) -> bool:
    """Create or reopen a results folder: attach its log file, then save its config or refuse to reuse
    it when keys other than `allowed` changed (core.config.save_or_check). True on a resume."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    add_file_log(folder / log_file)
    resumed = save_or_check(folder / config_file, config, tuple(allowed), str(folder), fix, defaults=defaults)
    if resumed:
        log.info("resuming %s", folder)
    return resumed


LOCK_FILE = ".lock"          # held (flock) while a process works in the folder
HOLDER_FILE = ".lock.json"   # who holds it: pid, host, command, since


@dataclass
class FolderLock:
    """This process's hold on a folder. took_over: the holder before it, whose process had died."""

    folder: Path
    lock: FileLock
    took_over: str | None = None

    def release(self) -> None:
        """Let the folder go (the holder file first: a holder file means a live or a killed holder)."""
        (self.folder / HOLDER_FILE).unlink(missing_ok=True)
        self.lock.release()


def check_writable(folder: Path, key: str) -> None:
    """Refuse a results folder that cannot be made or written (a file in its path, a read-only file system,
    no permission), before anything is written. `key`: the option that names it (output_dir, out)."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    fix = f"pass {key}= a folder you can write to"
    if not existing.is_dir():
        raise FileError(f"{key}: {existing} is a file, not a folder, so {folder} cannot be made; {fix}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only_fs(existing) else "no write permission"
        raise FileError(f"{key}: cannot write in {existing} ({why}), so {folder} cannot be made; {fix}.")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def lock_folder(folder: Path) -> FolderLock:
    """Hold the folder for this process, or refuse at once when another process holds it.

    The OS drops the lock when its holder dies, however it dies, so a killed run leaves no lock behind;
    the holder file it leaves says whose lock is taken over. On several nodes only node 0 locks (all
    nodes run the same command on one shared folder; docs/scaling.md)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # check_writable catches most of these before; this is a race or an odd mount
        raise FileError(f"{folder}: cannot make the folder ({e.strerror}); use a folder you can write to.") from None
    lock = FileLock(str(folder / LOCK_FILE))
    holder_path = folder / HOLDER_FILE
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"{folder} is already in use: another run is working in it ({_read_holder(holder_path)}); "
                          f"wait for it to end, or use another folder (run_name=NEW / out=NEW).") from None
    took_over = _read_holder(holder_path) if holder_path.is_file() else None
    atomic_write_json(holder_path, {"pid": os.getpid(), "host": socket.gethostname(),
                                    "command": " ".join(sys.argv), "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    return FolderLock(folder, lock, took_over)


def _read_holder(path: Path) -> str:
    try:
        h = read_json(path)
        return f"pid {h['pid']} on host {h['host']} since {h['since']}: {h['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
