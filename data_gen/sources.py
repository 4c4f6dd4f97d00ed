"""Pick the data source named in the config and load a split from it.

GeoSynth data is generated once into the run folder (deterministic from the run seed), so the
default run needs no download and no data folder.
"""

from __future__ import annotations

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
    folder = data_folder(cfg, run_dir, seed)
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    loader = generic.load_split if cfg.dataset == "generic" else geoqa.load_split
    problems = loader(folder, split, skip_bad=cfg.skip_bad, limit=limit)
    return problems
