"""Pick the data source named in the config and load a split from it.

GeoSynth data is generated once into the run folder (deterministic from the run seed), so the
default run needs no download and no data folder.
"""

from __future__ import annotations

import random
from pathlib import Path

from core.config import ConfigError, DataConfig
from core.log import get_logger
from data_gen import generic, geoqa
from data_gen.geoqa import DataError
from data_gen.problem import Problem

SOURCES = ("geoqa", "geosynth", "generic")

log = get_logger("data")


def warn_shared_ids(train: list[Problem], test: list[Problem]) -> list[str]:
    """Warn when ids are in both train and test (the same item in both, or ids reused across files):
    the splits' files are joined by id, so such a question's records could be mistaken for each other's
    in hand-made analyses, and a test question trained on inflates test accuracy. Returns the ids."""
    test_ids = {p.id for p in test}
    shared = [p.id for p in train if p.id in test_ids]
    if shared:
        log.warning("%d id(s) are in both train and test, e.g. %s: if they are the same questions, test accuracy "
                    "counts questions the model was trained on; give the splits distinct ids", len(shared),
                    ", ".join(shared[:5]))
    return shared


def generated_in_run(cfg: DataConfig) -> bool:
    """Whether the data is GeoSynth generated into the run folder (else it is read from data.geoqa_dir)."""
    return cfg.dataset == "geosynth" and not cfg.geoqa_dir


def data_folder(cfg: DataConfig, run_dir: Path, seed: int) -> Path:
    """The folder a split is read from; GeoSynth is generated there first if missing."""
    if cfg.dataset not in SOURCES:
        raise DataError(f"data.dataset={cfg.dataset!r} is unknown; use one of {', '.join(SOURCES)}.")
    if generated_in_run(cfg):
        from data_gen import geosynth

        out = run_dir / "data"
        if not (out / "meta.json").is_file():  # meta.json is written last
            geosynth.generate(out, cfg.geosynth_train, cfg.geosynth_test, seed=seed,
                              difficulty=cfg.geosynth_difficulty)
        return out
    if not cfg.geoqa_dir:
        raise DataError(f"data.dataset={cfg.dataset} needs a folder: pass --geoqa_dir PATH "
                        f"(or data.geoqa_dir=PATH).")
    return Path(cfg.geoqa_dir).expanduser().resolve()


# Keys that name the data a run uses.
DATA_KEYS = {"data.geoqa_dir", "data.dataset"}


def check_data_named(given: set[str] | frozenset[str], example: str) -> None:
    """With --base_model given, the data must be named too: without --geoqa_dir (or data.dataset) the run
    would quietly use the embedded GeoSynth data. `given`: the dotted keys the command line and --config
    files set; `example`: the seed's command of the calling script."""
    if "model.base_model" in given and not given & DATA_KEYS:
        raise ConfigError(f"--base_model is given but not --geoqa_dir: name the data, e.g. {example} "
                          f"(data.dataset=generic data.geoqa_dir=DIR for your own format, or data.dataset=geosynth "
                          f"for the synthetic set on purpose).")


def load_problems(cfg: DataConfig, split: str, run_dir: Path, seed: int) -> list[Problem]:
    """train, val or test. val (data.val_questions > 0) is drawn from the whole train file, the same
    draw whatever the run seed and train_limit (a larger val_questions extends a smaller one's draw),
    by problem (validation_indices): train is the rest less the repeats of validation problems, then
    cut to train_limit. Both keep the file's order. Without val_questions, val is empty."""
    folder = data_folder(cfg, run_dir, seed)
    loader = generic.load_split if cfg.dataset == "generic" else geoqa.load_split
    if split == "test":
        return loader(folder, "test", skip_bad=cfg.skip_bad, limit=cfg.test_limit)
    if split not in ("train", "val"):
        raise ValueError(f"split must be train, val or test, not {split!r}")
    if cfg.val_questions < 0:
        raise DataError(f"data.val_questions={cfg.val_questions}: give 0 (no validation split) or more.")
    if cfg.val_questions == 0:
        return [] if split == "val" else loader(folder, "train", skip_bad=cfg.skip_bad, limit=cfg.train_limit)
    train = loader(folder, "train", skip_bad=cfg.skip_bad)
    held, dropped = validation_indices(train, cfg.val_questions, folder)
    if split == "val":
        return [p for i, p in enumerate(train) if i in held]
    rest = [p for i, p in enumerate(train) if i not in held and i not in dropped]
    return rest[:cfg.train_limit] if cfg.train_limit > 0 else rest


def problem_signature(problem: Problem) -> tuple[str, str]:
    """What a problem reads and answers: its question text (whitespace and case folded) and its gold
    answer text. Two train items with the same signature are the same problem for validation (GeoSynth
    repeats a problem's numbers with other distractors, letters and figure turns; datasets repeat items)."""
    return " ".join(problem.question.split()).lower(), " ".join(problem.answer_text.split()).lower()


def problem_groups(train: list[Problem]) -> list[list[int]]:
    """Train-file positions grouped into problems, in order of first appearance: two items are one
    problem if they share their signature or their `problem_key` (GeoSynth's numbers: an item that gives
    a value in the text and one that shows it only in the figure read differently and are one problem)."""
    parent = list(range(len(train)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, ...], int] = {}
    for i, problem in enumerate(train):
        marks = [("text", *problem_signature(problem))]
        if problem.problem_key:
            marks.append(("key", problem.problem_key))
        for mark in marks:
            a, b = root(i), root(first.setdefault(mark, i))
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(train)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def validation_indices(train: list[Problem], num_val: int, folder: Path) -> tuple[set[int], set[int]]:
    """(held, dropped): the train-file positions held out as validation, and those left out of train
    because they repeat a held-out problem. Items of one problem (problem_groups) form a group; the groups, in a
    fixed shuffle keyed by the file's size, are laid end to end and the first num_val positions are held
    out, so a larger num_val extends a smaller one's draw. The rest of a group cut at num_val is dropped,
    so no validation problem is also trained on."""
    num_train = len(train)
    if num_val >= num_train:
        raise DataError(f"data.val_questions={num_val} would hold out all {num_train} train problems of "
                        f"{folder}; use fewer (or more train problems).")
    order = problem_groups(train)
    random.Random(f"validation/{num_train}").shuffle(order)
    held: set[int] = set()
    dropped: set[int] = set()
    for group in order:
        if len(held) >= num_val:
            break
        take = min(len(group), num_val - len(held))
        held.update(group[:take])
        dropped.update(group[take:])
    if len(held) + len(dropped) >= num_train:
        raise DataError(f"data.val_questions={num_val} leaves no train problem in {folder} once the "
                        f"problems repeating a validation problem are set aside; use fewer.")
    return held, dropped
