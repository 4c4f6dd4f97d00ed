"""core/rundir.py: the run folder's names, records joined to a split by id, and reopening a folder."""

import dataclasses

import pytest

from core.config import ConfigError, ScalingConfig
from core.rundir import in_order, is_run_dir, iter_dir, iteration_of, open_folder


def recs(*ids):
    return [{"id": i, "x": n} for n, i in enumerate(ids)]


def test_in_order_joins_by_id_in_the_split_order():
    assert [r["id"] for r in in_order(recs("b", "c", "a"), ["a", "b", "c"], "f.jsonl")] == ["a", "b", "c"]


@pytest.mark.parametrize("ids, why", [(("a", "b"), r"missing: \['c'\]"), (("a", "b", "c", "d"), r"not in the split: \['d'\]"),
                                      (("a", "b", "b", "c"), "4 records do not match the 3 questions")],
                         ids=["missing", "extra", "repeated"])
def test_in_order_refuses_a_file_of_other_data_and_names_it(ids, why):
    with pytest.raises(ValueError, match=f"iter_1/test_samples.jsonl: .*{why}"):
        in_order(recs(*ids), ["a", "b", "c"], "iter_1/test_samples.jsonl")


def test_layout_names(tmp_path):
    assert iter_dir(tmp_path, 3) == tmp_path / "iter_3"
    assert [iteration_of(n) for n in ("iter_12", "iter_x", "scaling_iter_1", "iter_1b")] == [12, None, None, None]
    assert not is_run_dir(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "iter_0").mkdir()
    assert is_run_dir(tmp_path)


def test_open_folder_saves_then_accepts_result_neutral_changes_only(tmp_path):
    """A scaling rerun on other hardware (accelerate config, nodes, attention kernels) reuses its files;
    a changed sampling setting is refused with the key named."""
    from self_select_scaling import RESUMABLE_CHANGES, effective_config

    def open_with(cfg):
        return open_folder(tmp_path / "out", "scaling_config.yaml", effective_config(cfg),
                           defaults=effective_config(ScalingConfig()), allowed=RESUMABLE_CHANGES,
                           fix="use another out=", log_file="scaling.log")

    cfg = ScalingConfig()
    assert open_with(cfg) is False and (tmp_path / "out" / "scaling.log").is_file()
    moved = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, accelerate_config="configs/accelerate/x.yaml",
                                                                num_machines=2, node_wait_s=60),
                                model=dataclasses.replace(cfg.model, sdpa_backends="math"))
    assert open_with(moved) is True
    other = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, temperature=0.5))
    with pytest.raises(ConfigError, match=r"(?s)holds results of another config; changed keys:.*sample.temperature.*use another out="):
        open_with(other)
