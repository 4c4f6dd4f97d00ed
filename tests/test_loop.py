"""The self-training loop end to end on CPU: real sampling, real LLaMA-Factory training, resume.

Uses the warm tiny model (conftest.py) so samples carry answers and the mix has every kind.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

import run
from core.checks import InputError
from core.config import ConfigError, RunConfig, parse_args
from core.io import read_json, read_jsonl
from core.proc import CommandError
from data_gen.geoqa import DataError
from data_gen.sources import load_problems
from eval.evaluate import iteration_metrics
from infer.model import ModelError

REPO = Path(__file__).resolve().parent.parent


def loop_args(model_dir: Path, out: Path, iters: int = 2, *extra: str) -> list[str]:
    return ["--base_model", str(model_dir), "data.dataset=geosynth", f"output_dir={out}", "run_name=loop",
            "data.geosynth_train=24",
            "data.geosynth_test=8", f"total_iters={iters}", "sample.max_new_tokens=64", "sample.batch_size=8",
            "train.max_steps=2", "train.per_device_batch_size=4", "train.global_batch_size=4",
            "sample_last_train=false", *extra]


def config(argv: list[str]) -> RunConfig:
    return parse_args(RunConfig, argv).config


@pytest.fixture(scope="module")
def finished_run(warm_tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loop")
    run.main(config(loop_args(warm_tiny_model_dir, out)))
    return out / "loop"


def test_two_iterations_write_every_artifact(finished_run):
    d = finished_run
    assert (d / "config.yaml").is_file() and (d / "run.log").is_file()
    steps = read_json(d / "state.json")["steps"]
    assert {"iter0/sample_train", "iter0/sample_test", "iter0/greedy_test", "iter1/mix", "iter1/train",
            "iter1/sample_train", "iter1/select_test", "iter2/train", "iter2/select_test"} <= set(steps)
    assert "iter2/sample_train" not in steps  # sample_last_train=false: the last iteration's train set is not sampled

    train_samples = read_jsonl(d / "iter_0" / "train_samples.jsonl")
    assert len(train_samples) == 24 and all(len(r["predictions"]) == 3 for r in train_samples)
    assert sum(a is not None for r in train_samples for a in r["answers"]) > 0
    for k in (1, 2):
        it = d / f"iter_{k}"
        stats = read_json(it / "sft_data" / "mix_stats.json")
        data = json.loads((it / "sft_data" / f"r3v_iter{k}.json").read_text())
        assert len(data) == stats["total"] == sum(stats["kinds"].values())
        assert stats["kinds"]["qa"] == 24 and stats["kinds"]["cot"] > 0
        assert stats["kinds"]["refine"] + stats["kinds"]["select"] > 0
        info = read_json(it / "sft_data" / "dataset_info.json")
        assert list(info) == [f"r3v_iter{k}"] and info[f"r3v_iter{k}"]["file_name"] == f"r3v_iter{k}.json"
        assert all(r["messages"][0]["content"].count("<image>") == len(r["images"]) == 1 for r in data)
        assert (it / "model" / "adapter_model.safetensors").is_file()
        assert (it / "model" / "adapter_config.json").is_file()
        assert read_json(it / "train_done.json")["global_step"] == 2
        assert len(read_jsonl(it / "test_select.jsonl")) == 8
    # Iteration 2 pools the train samples of iterations 0 and 1.
    s2 = read_json(d / "iter_2" / "sft_data" / "mix_stats.json")["candidates"]
    s1 = read_json(d / "iter_1" / "sft_data" / "mix_stats.json")["candidates"]
    assert sum(s2.values()) == 2 * sum(s1.values()) == 2 * 24 * 3

    # Metrics are recomputable from the saved files, and the table and plot exist.
    problems = load_problems(config(["data.geosynth_test=8", "data.geosynth_train=24"]).data, "test", d, 42)
    for k in (0, 1, 2):
        saved = read_json(d / f"iter_{k}" / "metrics.json")
        again = iteration_metrics(d / f"iter_{k}", problems)
        for key in ("Test@1", "MV@3", "pass@3", "sample_acc", "no_answer_rate") + (("SS@3", "select_no_answer_rate")
                                                                                   if k else ()):
            assert saved[key] == again[key]
        # a plain run computes R3V's metrics only; diagnostics come from plugins, when a run lists them
        assert not any(key.startswith(("select_outside", "letter_", "arith_", "value_")) for key in saved)
    rows = (d / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("iteration,Test@1,MV@3,SS@3,pass@3")
    assert "| 2 |" in (d / "metrics.md").read_text()
    with Image.open(d / "metrics.png") as img:
        assert img.size[0] > 300


def test_rerun_redoes_nothing_and_changed_config_is_refused(finished_run, warm_tiny_model_dir):
    out = finished_run.parent
    before = read_json(finished_run / "state.json")
    mtime = (finished_run / "iter_1" / "model" / "adapter_model.safetensors").stat().st_mtime
    run.main(config(loop_args(warm_tiny_model_dir, out)))
    assert read_json(finished_run / "state.json") == before
    assert (finished_run / "iter_1" / "model" / "adapter_model.safetensors").stat().st_mtime == mtime
    with pytest.raises(ConfigError, match=r"changed keys:\n  sample.temperature: 0.9 -> 0.5"):
        run.main(config(loop_args(warm_tiny_model_dir, out) + ["sample.temperature=0.5"]))
    # a run folder saved before an option existed resumes (the option counts as its default) ...
    saved = yaml.safe_load((finished_run / "config.yaml").read_text())
    del saved["mix"]["cot_per_question"]
    (finished_run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    run.main(config(loop_args(warm_tiny_model_dir, out)))
    assert read_json(finished_run / "state.json") == before
    # ... and a mix option that cannot build a mix is refused before anything runs
    with pytest.raises(ConfigError, match="mix.cot_per_question=0"):
        run.main(config(loop_args(warm_tiny_model_dir, out) + ["mix.cot_per_question=0"]))


def _wait_for(predicate, proc, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def test_kill_during_sampling_and_training_then_resume(finished_run, warm_tiny_model_dir, tmp_path):
    """SIGKILL run.py mid-sampling, then mid-training; the rerun's results equal the uninterrupted run's."""
    argv = loop_args(warm_tiny_model_dir, tmp_path, 1)
    cmd = [sys.executable, "run.py", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    d = tmp_path / "loop"

    def start():
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # 1. Kill while iteration 0 samples the train set (after at least one flushed batch).
    shard = d / "iter_0" / "train_samples.rank0.jsonl"
    proc = start()
    assert _wait_for(lambda: shard.is_file() and shard.read_text().count("\n") >= 1, proc), "never sampled"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (d / "iter_0" / "train_samples.jsonl").exists()
    partial = shard.read_text().count("\n")

    # 2. Kill while iteration 1 trains.
    train_log = d / "iter_1" / "train.log"
    proc = start()
    assert _wait_for(lambda: train_log.is_file() and train_log.stat().st_size > 2000, proc), "never trained"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # llamafactory-cli dies with run.py (core/proc.py); give it a moment, then check nothing trains on.
    time.sleep(2)
    alive = subprocess.run(["pgrep", "-f", f"{d}/iter_1/sft.yaml"], capture_output=True, text=True).stdout
    assert not alive.strip(), f"training outlived the killed run.py: {alive}"
    assert not (d / "iter_1" / "train_done.json").exists()
    state = read_json(d / "state.json")["steps"]
    finished_before = {k: v["finished"] for k, v in state.items()}
    assert "iter0/sample_train" in finished_before and "iter1/train" not in finished_before

    # 3. Rerun to the end: nothing finished is redone, and the results equal the uninterrupted run.
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = read_json(d / "state.json")["steps"]
    for name, finished in finished_before.items():
        assert state[name]["finished"] == finished, f"{name} was redone"
    assert partial >= 1
    ref = finished_run
    for rel in ("iter_0/train_samples.jsonl", "iter_0/test_samples.jsonl", "iter_0/test_greedy.jsonl",
                "iter_1/sft_data/r3v_iter1.json", "iter_1/test_samples.jsonl", "iter_1/test_select.jsonl",
                "iter_1/test_greedy.jsonl"):
        # Image paths name each run's own data folder; everything else must be identical.
        assert (d / rel).read_text().replace(str(d), "RUN") == (ref / rel).read_text().replace(str(ref), "RUN"), rel


# --------------------------------------------------------------------------- bad inputs


def test_missing_base_model(tmp_path):
    with pytest.raises(ModelError, match="no such folder"):
        run.main(config(["--base_model", str(tmp_path / "nope"), f"output_dir={tmp_path}"]))


def test_empty_train_set(tiny_model_dir, tmp_path):
    data = tmp_path / "geo"
    (data / "images").mkdir(parents=True)
    (data / "train.jsonl").write_text("")
    (data / "test.jsonl").write_text("")
    with pytest.raises(InputError, match=r"train.jsonl: the file is empty"):  # and test.jsonl, in one report
        run.main(config(["--base_model", str(tiny_model_dir), "--geoqa_dir", str(data), f"output_dir={tmp_path}"]))


def test_geoqa_folder_with_missing_image(tiny_model_dir, tmp_path):
    data = tmp_path / "geo"
    (data / "images").mkdir(parents=True)
    item = {"id": "train-0", "question": "q ()", "choices": ["1", "2", "3", "4"], "answer": 1}
    (data / "train.jsonl").write_text(json.dumps([item]))
    with pytest.raises(InputError, match=r"item 1 \(id train-0\): image for id 'train-0' not found"):
        run.main(config(["--base_model", str(tiny_model_dir), "--geoqa_dir", str(data), f"output_dir={tmp_path}"]))


def test_failed_training_stops_the_loop(warm_tiny_model_dir, tmp_path):
    argv = loop_args(warm_tiny_model_dir, tmp_path, 1) + ["train.overrides={not_an_llamafactory_arg: 1}",
                                                          "data.geosynth_train=8", "data.geosynth_test=4"]
    with pytest.raises(CommandError) as err:
        run.main(config(argv))
    message = str(err.value)
    assert "not_an_llamafactory_arg" in message and "full log:" in message
    assert not (tmp_path / "loop" / "iter_1" / "train_done.json").exists()
    assert not (tmp_path / "loop" / "iter_1" / "test_samples.jsonl").exists()  # the loop stopped


def test_warmup_sft_before_iteration_0(warm_tiny_model_dir, tmp_path):
    """warmup.enabled: gold rationales train an adapter first, and iteration 0 samples with it."""
    argv = loop_args(warm_tiny_model_dir, tmp_path, 0) + ["warmup.enabled=true", "warmup.num_items=8",
                                                          "data.geosynth_train=8", "data.geosynth_test=4"]
    run.main(config(argv))
    d = tmp_path / "loop"
    assert read_json(d / "warmup" / "train_done.json")["global_step"] == 2
    assert (d / "warmup" / "model" / "adapter_config.json").is_file()
    warm_data = json.loads((d / "warmup" / "sft_data" / "r3v_warmup.json").read_text())
    assert len(warm_data) == 8 and all(r["messages"][1]["content"].rstrip().endswith(("A", "B", "C", "D"))
                                       for r in warm_data)
    assert "adapter" in (d / "run.log").read_text().split("iter0/sample_test")[1].split("\n")[1]
    assert len(read_jsonl(d / "iter_0" / "test_greedy.jsonl")) == 4


def test_validation_split_is_held_out_of_train_and_evaluated(warm_tiny_model_dir, tmp_path):
    """data.val_questions: a seeded draw from train is never sampled for training data, and each
    iteration evaluates it like the test split (files, metrics with val_ keys, table columns)."""
    argv = loop_args(warm_tiny_model_dir, tmp_path, 1) + ["data.geosynth_train=12", "data.geosynth_test=4",
                                                          "data.val_questions=4"]
    cfg = config(argv)
    run.main(cfg)
    d = tmp_path / "loop"
    train = load_problems(cfg.data, "train", d, cfg.seed)
    val = load_problems(cfg.data, "val", d, cfg.seed)
    assert len(train) == 8 and len(val) == 4 and not {p.id for p in train} & {p.id for p in val}
    assert val == load_problems(cfg.data, "val", d, cfg.seed)  # the same draw every time
    assert {r["id"] for r in read_jsonl(d / "iter_0" / "train_samples.jsonl")} == {p.id for p in train}
    for k in (0, 1):
        it = d / f"iter_{k}"
        assert {r["id"] for r in read_jsonl(it / "val_greedy.jsonl")} == {p.id for p in val}
        assert len(read_jsonl(it / "val_samples.jsonl")) == 4
        saved = read_json(it / "metrics.json")
        assert saved["num_val"] == 4 and saved["num_test"] == 4
        assert saved["val_Test@1"] == iteration_metrics(it, val, "val")["Test@1"]
        assert saved["Test@1"] == iteration_metrics(it, load_problems(cfg.data, "test", d, cfg.seed))["Test@1"]
    assert len(read_jsonl(d / "iter_1" / "val_select.jsonl")) == 4
    assert "val_SS@3" in read_json(d / "iter_1" / "metrics.json")
    data = json.loads((d / "iter_1" / "sft_data" / "r3v_iter1.json").read_text())
    val_questions = {p.question for p in val} - {p.question for p in train}
    assert not any(q in r["messages"][0]["content"] for r in data for q in val_questions)
    assert (d / "metrics.csv").read_text().splitlines()[0].startswith(
        "iteration,Test@1,MV@3,SS@3,pass@3,val_Test@1,val_MV@3,val_SS@3")


def test_validation_split_larger_than_train_is_refused(tiny_model_dir, tmp_path):
    argv = loop_args(tiny_model_dir, tmp_path, 0) + ["data.geosynth_train=4", "data.val_questions=4"]
    with pytest.raises(DataError, match=r"data.val_questions=4 would hold out all 4 train problems"):
        run.main(config(argv))
