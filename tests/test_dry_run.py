"""--dry_run: the resolved config and the plan, with nothing loaded and nothing written.

The model folder given is a config.json and weights that are not a model: loading it would fail, so a
dry run that succeeds did not load it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import run
from core.config import RunConfig, parse_args

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "geoqa_sample"
SAVED = REPO / "tests" / "data" / "run_41b6ae0"


@pytest.fixture
def fake_model(tmp_path) -> Path:
    model = tmp_path / "Qwen2-VL-7B-Instruct"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    (model / "model.safetensors").write_bytes(b"not weights")
    return model


def cli(script: str, *argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, env=env)


def test_the_seed_s_command_shows_the_original_protocol_and_loads_nothing(fake_model, tmp_path):
    proc = cli("run.py", "--base_model", str(fake_model), "--geoqa_dir", str(SAMPLE), "--total_iters", "3",
               "--batch_size", "4", "--dry_run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert ("sample_instruction: 'Answer the question with Chain-of-Thought as short as possible without losing "
            "accuracy. Finally answer with option from choices with prefix \"Answer: \".'") in out
    assert "max_new_tokens: 200" in out and "batch_size: 4" in out
    assert "run folder: outputs/r3v-geoqa_sample-Qwen2-VL-7B-Instruct (new)" in out
    assert f"data: geoqa in {SAMPLE}: 30 train / 10 test questions" in out
    assert "steps: 21 to run, 0 done" in out and "[todo] iter3/greedy_test" in out
    assert "[todo] iter3/sample_train" in out  # the last iteration's train set too, as the original (sample_last_train)
    assert list(tmp_path.iterdir()) == [fake_model]  # nothing written


def test_a_dry_run_without_geoqa_dir_is_refused_too(fake_model, tmp_path):
    proc = cli("run.py", "--base_model", str(fake_model), "--dry_run", cwd=tmp_path)
    assert proc.returncode != 0 and "--geoqa_dir" in proc.stderr.strip().splitlines()[-1]


def test_the_plan_of_a_killed_run_shows_what_is_done_and_changes_nothing(saved_run):
    folder, argv = saved_run
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    text = run.plan(parse_args(RunConfig, argv).config)
    assert f"run folder: {folder} (exists; the config matches: a run resumes it)" in text
    assert "steps: 2 to run, 6 done" in text
    assert "[done] iter1/train" in text and "[todo] iter1/select_test" in text and "[todo] iter1/greedy_test" in text
    assert "data: geosynth in" in text and "16 train / 8 test questions" in text
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    other = run.plan(parse_args(RunConfig, [*argv, "sample.temperature=0.5"]).config)
    assert "a run would refuse it, changed keys: sample.temperature: 0.9 -> 0.5" in other


def test_the_scaling_plan_lists_its_files(saved_run, tmp_path):
    folder, _ = saved_run
    ckpt = str(folder / "iter_1" / "model")
    proc = cli("self_select_scaling.py", "--ckpt_dir", ckpt, "train_select_mix=false", "--dry_run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert f"self-training run: {folder}" in out and f"output folder: {folder / 'scaling_iter_1'} (new)" in out
    assert "data: 8 test questions" in out and "[todo] test_samples.jsonl" in out and "[todo] select_n6_s2.jsonl" in out
    assert "files: 17 to write, 0 done" in out  # samples, greedy, 3 subsets for each N = 2..6
    assert not (folder / "scaling_iter_1").exists()


def test_the_default_scaling_workflow_names_the_missing_train_samples_and_the_command(saved_run, tmp_path):
    """This run was made with sample_last_train=false: iteration 1's train set was never sampled."""
    folder, _ = saved_run
    proc = cli("self_select_scaling.py", "--ckpt_dir", str(folder / "iter_1" / "model"), "--dry_run", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"output folder: {folder / 'scaling_select_mix'} (new)" in proc.stdout
    assert "[todo] select_mix/train_done.json" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: the select-mix model trains on the train samples of iterations 0..1 of {folder}, but "
        f"{folder / 'iter_1' / 'train_samples.jsonl'} is missing (run.py samples the last iteration's train set only "
        f"with sample_last_train=true). Make them with: python run.py --config {folder / 'config.yaml'} "
        f"sample_last_train=true (it resumes the run and samples only what is missing), or pass "
        f"train_select_mix=false to evaluate the checkpoint as it is.")
    # The command named makes them: it resumes the run (a folder of 41b6ae0, read in today's keys) and
    # samples iteration 1's train set with the other steps left.
    made = cli("run.py", "--config", str(folder / "config.yaml"), "sample_last_train=true", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "*** iter1/sample_train ***" in made.stderr and "[skip] iter1/train" in made.stderr
    proc = cli("self_select_scaling.py", "--ckpt_dir", str(folder / "iter_1" / "model"), "--dry_run", cwd=tmp_path)
    assert proc.returncode == 0 and "every input passed" in proc.stdout, proc.stderr[-2000:]


def test_the_embedded_default_is_the_gpu_recipe_on_a_gpu_and_the_cpu_one_else(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run.embedded_default([]) == REPO / "configs" / "geosynth_gpu.yaml"
    assert run.embedded_default(["total_iters=1"]) == REPO / "configs" / "geosynth_gpu.yaml"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run.embedded_default([]) == REPO / "configs" / "geosynth_small.yaml"
    for named in (["--config", "x.yaml"], ["--base_model", "m"], ["data.dataset=geoqa"], ["--help"]):
        assert run.embedded_default(named) is None
    gpu = parse_args(RunConfig, ["--config", str(REPO / "configs" / "geosynth_gpu.yaml")]).config
    assert gpu.model.base_model == RunConfig().model.base_model  # the shipped model, from any working folder
    assert gpu.data.geosynth_train == 4000 and gpu.total_iters == 3


def test_the_cpu_default_ends_with_what_it_shows_and_the_command_that_shows_the_gain(tmp_path):
    proc = cli("run.py", "total_iters=0", "data.geosynth_train=8", "data.geosynth_test=4", "sample.max_new_tokens=16",
               f"output_dir={tmp_path}", cwd=tmp_path, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.endswith(run.CPU_DEFAULT_NOTE + "\n")
