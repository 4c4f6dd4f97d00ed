"""A run folder saved by the code before the re-layout (tests/data/run_41b6ae0, made at commit 41b6ae0)
resumes with today's code: finished steps are skipped and left as they were, the killed step goes on from
its shard, and the prompts it sends are byte-identical to the ones the old code sent.

Real parts: the shipped small model, the saved LoRA adapter, the real sampler on CPU (a few seconds).
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

import run
from core.config import REPO_ROOT, RunConfig, parse_args
from core.io import read_json, read_jsonl
from data_gen.sources import load_problems
from eval.answers import extract_answer, is_correct
from data_gen import prompts
from eval.evaluate import iteration_metrics

SAVED = Path(__file__).resolve().parent / "data" / "run_41b6ae0"
MODEL = REPO_ROOT / "models" / "geosynth-small"
# The final files of finished steps (metrics.json is not a step's: every run recomputes it).
FINISHED = ["iter_0/train_samples.jsonl", "iter_0/test_samples.jsonl", "iter_0/test_greedy.jsonl",
            "iter_1/sft_data/r3v_iter1.json", "iter_1/sft_data/mix_stats.json",
            "iter_1/train_done.json", "iter_1/test_samples.jsonl", "iter_1/model/adapter_model.safetensors"]


def argv(out: Path) -> list[str]:
    """The command that made the folder, with this machine's model and output folder."""
    return ["--config", str(REPO_ROOT / "configs" / "geosynth_small.yaml"), "--base_model", str(MODEL),
            f"output_dir={out}", "run_name=r41", "total_iters=1", "data.geosynth_train=16", "data.geosynth_test=8",
            "sample.max_new_tokens=48", "sample.batch_size=8", "train.max_steps=2", "train.per_device_batch_size=4",
            "train.global_batch_size=4", "train.lora_rank=4", "train.lora_alpha=8"]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("saved")
    folder = out / "r41"
    shutil.copytree(SAVED / "r41", folder)
    saved_cfg = yaml.safe_load((folder / "config.yaml").read_text())
    saved_cfg["model"]["base_model"], saved_cfg["output_dir"] = str(MODEL), str(out)  # the folder moved here
    (folder / "config.yaml").write_text(yaml.safe_dump(saved_cfg, sort_keys=False))
    before = read_json(folder / "state.json")["steps"]
    run.main(parse_args(RunConfig, argv(out)).config)
    return folder, before


def test_finished_steps_are_skipped_and_left_as_they_were(resumed):
    folder, before = resumed
    for name in FINISHED:
        assert (folder / name).read_bytes() == (SAVED / "r41" / name).read_bytes(), name
    steps = read_json(folder / "state.json")["steps"]
    assert {k: steps[k] for k in before} == before  # no finished step ran again
    assert {"iter1/select_test", "iter1/greedy_test"} <= set(steps)
    assert (folder / "metrics.md").is_file() and (folder / "iter_1" / "metrics.json").is_file()
    assert not list(folder.glob("iter_1/*.rank*.jsonl"))  # the shard was merged


def test_the_killed_select_step_goes_on_with_the_same_prompts(resumed):
    folder, _ = resumed
    old = read_jsonl(SAVED / "expected" / "test_select.jsonl")
    new = read_jsonl(folder / "iter_1" / "test_select.jsonl")
    assert [r["id"] for r in new] == [r["id"] for r in old]
    assert new[:4] == old[:4]  # the records of the old shard, judged again to the same answers
    assert [r["prompt"] for r in new] == [r["prompt"] for r in old]  # byte-identical select prompts
    samples = {r["id"]: r for r in read_jsonl(folder / "iter_1" / "test_samples.jsonl")}
    cfg = parse_args(RunConfig, argv(folder.parent)).config
    problem = {p.id: p for p in load_problems(cfg.data, "test", folder, cfg.seed)}
    for r in new[4:]:  # sampled by today's code: they record the shown order, which rebuilds the prompt
        listed = [samples[r["id"]]["predictions"][i] for i in r["shown"]]
        assert r["prompt"] == prompts.select_prompt(problem[r["id"]], listed, cfg.prompt)
    greedy_old = read_jsonl(SAVED / "expected" / "test_greedy.jsonl")
    greedy_new = read_jsonl(folder / "iter_1" / "test_greedy.jsonl")
    assert [(r["id"], r["prompt"]) for r in greedy_new] == [(r["id"], r["prompt"]) for r in greedy_old]


def test_saved_metrics_are_recomputed_from_the_old_files(resumed):
    folder, _ = resumed
    cfg = parse_args(RunConfig, argv(folder.parent)).config
    test = load_problems(cfg.data, "test", folder, cfg.seed)
    added_by_the_loop = ("iteration", "seconds", "mix", "train")
    saved = {k: v for k, v in json.loads((SAVED / "r41" / "iter_0" / "metrics.json").read_text()).items()
             if k not in added_by_the_loop}
    r3v = iteration_metrics(folder / "iter_0", test)  # R3V's metrics; the old file also held diagnostics
    assert r3v == {k: saved[k] for k in r3v} and {"Test@1", "MV@3", "pass@3"} <= set(r3v)
    for r in read_jsonl(folder / "iter_1" / "test_select.jsonl"):
        p = next(p for p in test if p.id == r["id"])
        assert r["answers"] == [extract_answer(t, p.choices) for t in r["predictions"]]
        assert r["correct"] == [is_correct(t, p.answer, p.choices) for t in r["predictions"]]
    old = json.loads((SAVED / "expected" / "metrics.json").read_text())
    new = read_json(folder / "iter_1" / "metrics.json")
    assert {"Test@1", "MV@3", "SS@3", "pass@3"} <= set(new) < set(old)  # today a plain run lists no diagnostics
