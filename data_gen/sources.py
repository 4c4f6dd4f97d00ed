"""Pick the data source named in the config and load a split from it.

GeoSynth data is generated once into the run folder (deterministic from the run seed), so the
default run needs no download and no data folder.
"""

from __future__ import annotations

import random
from pathlib import Path

from core.config import DataConfig
from data_gen import generic, geoqa
from data_gen.geoqa import DataError
from data_gen.problem import Problem

SOURCES = ("geoqa", "geosynth", "generic")


def data_folder(cfg: DataConfig, run_dir: Path, seed: int) -> Path:
    """The folder a split is read from; GeoSynth is generated there first if missing."""
    if cfg.dataset not in SOURCES:
        raise DataError(f"data.dataset={cfg.dataset!r} is unknown; use one of {', '.join(SOURCES)}.")
    if cfg.dataset == "geosynth" and not cfg.geoqa_dir:
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


def load_problems(cfg: DataConfig, split: str, run_dir: Path, seed: int) -> list[Problem]:
    """train, val or test. val (data.val_questions > 0) is drawn from the whole train file, the same
    draw whatever the run seed and train_limit (a larger val_questions extends a smaller one's draw);
    train is the rest, then cut to train_limit. Both keep the file's order. Without val_questions,
    val is empty."""
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
    held = validation_indices(len(train), cfg.val_questions, folder)
    if split == "val":
        return [p for i, p in enumerate(train) if i in held]
    rest = [p for i, p in enumerate(train) if i not in held]
    return rest[:cfg.train_limit] if cfg.train_limit > 0 else rest


def validation_indices(num_train: int, num_val: int, folder: Path) -> set[int]:
    """The train-file positions held out as validation: the first num_val of a fixed shuffle of the
    file's positions (keyed by its size only)."""
    if num_val >= num_train:
        raise DataError(f"data.val_questions={num_val} would hold out all {num_train} train problems of "
                        f"{folder}; use fewer (or more train problems).")
    order = list(range(num_train))
    random.Random(f"validation/{num_train}").shuffle(order)
    return set(order[:num_val])
