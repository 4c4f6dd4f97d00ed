"""The diagnostics as named metrics: listed in `metrics`, they reproduce what metrics.json held when every
run computed them (tests/data/run_41b6ae0: files and metrics written by the code of commit 41b6ae0)."""

import json
import shutil
from pathlib import Path

import pytest

import experiments.variants  # noqa: F401  (registers the metrics, as plugins=[experiments.variants] does)
from core.config import ConfigError, RunConfig, parse_args
from data_gen.sources import load_problems
from eval.evaluate import check_metrics, iteration_metrics
from experiments.diagnostics import ALL

SAVED = Path(__file__).resolve().parents[2] / "tests" / "data" / "run_41b6ae0"
ADDED_BY_THE_LOOP = ("iteration", "seconds", "mix", "train")


@pytest.fixture(scope="module")
def test_split():
    cfg = parse_args(RunConfig, ["data.geosynth_train=16", "data.geosynth_test=8"]).config
    return load_problems(cfg.data, "test", SAVED / "r41", cfg.seed)


def old_metrics(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in ADDED_BY_THE_LOOP}


def test_every_diagnostic_of_an_old_run_is_reproduced(tmp_path, test_split):
    assert iteration_metrics(SAVED / "r41" / "iter_0", test_split, metrics=ALL) == old_metrics(
        SAVED / "r41" / "iter_0" / "metrics.json")
    it1 = tmp_path / "iter_1"  # iteration 1 as the old code finished it, select and greedy files included
    it1.mkdir()
    shutil.copy(SAVED / "r41" / "iter_1" / "test_samples.jsonl", it1)
    for name in ("test_select.jsonl", "test_greedy.jsonl"):
        shutil.copy(SAVED / "expected" / name, it1)
    assert iteration_metrics(it1, test_split, metrics=ALL) == old_metrics(SAVED / "expected" / "metrics.json")


def test_each_metric_adds_its_keys_only(test_split):
    plain = iteration_metrics(SAVED / "r41" / "iter_0", test_split)
    binding = iteration_metrics(SAVED / "r41" / "iter_0", test_split, metrics=["letter_binding"])
    assert set(binding) - set(plain) == {"value_is_option", "letter_mismatch_rate", "consistent_vote_acc",
                                         "value_vote_acc"}
    # select metrics need a select file: iteration 0 has none, so they add nothing there
    assert iteration_metrics(SAVED / "r41" / "iter_0", test_split, metrics=["select_vs_vote"]) == plain


def test_an_unknown_metric_is_refused_before_work_starts():
    check_metrics(ALL)
    with pytest.raises(ConfigError, match=r"metrics='no_such_metric' is not registered \(known: arithmetic, "):
        check_metrics(["no_such_metric"])
