"""The run folder: its layout, the pool of train samples, records matched to a split, and reopening.

A self-training run owns `<output_dir>/<run_name>/`: `config.yaml` (the resolved config), `state.json`
(finished steps) and one `iter_<k>/` folder per iteration (docs/pipeline.md). run.py, the scaling
script and eval.evaluate read the same layout through these names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from core.config import save_or_check
from core.io import read_jsonl
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
