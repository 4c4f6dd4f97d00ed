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
    """train, val or test. val (data.val_questions > 0) is a seeded draw from the train split, which
    then leaves it out; both keep the file's order. Without val_questions, val is empty."""
    folder = data_folder(cfg, run_dir, seed)
    loader = generic.load_split if cfg.dataset == "generic" else geoqa.load_split
    if split == "test":
        return loader(folder, "test", skip_bad=cfg.skip_bad, limit=cfg.test_limit)
    if split not in ("train", "val"):
        raise ValueError(f"split must be train, val or test, not {split!r}")
    if split == "val" and cfg.val_questions <= 0:
        return []
    train = loader(folder, "train", skip_bad=cfg.skip_bad, limit=cfg.train_limit)
    if cfg.val_questions <= 0:
        return train
    held = validation_indices(len(train), cfg.val_questions, seed, folder)
    return [p for i, p in enumerate(train) if (i in held) == (split == "val")]


def validation_indices(num_train: int, num_val: int, seed: int, folder: Path) -> set[int]:
    """The train positions held out as validation: a draw fixed by the seed and the two counts."""
    if num_val >= num_train:
        raise DataError(f"data.val_questions={num_val} would hold out all {num_train} train problems of "
                        f"{folder}; use fewer (or more train problems).")
    return set(random.Random(f"val/{seed}/{num_train}").sample(range(num_train), num_val))
