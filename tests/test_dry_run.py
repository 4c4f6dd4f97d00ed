"""--dry_run: the resolved config and the plan, with nothing loaded and nothing written.

The model folder given is a config.json and weights that are not a model: loading it would fail, so a
dry run that succeeds did not load it."""

import json
import shutil
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


def cli(script: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


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
    assert "steps: 20 to run, 0 done" in out and "[todo] iter3/greedy_test" in out
    assert "iter3/sample_train" not in out  # the last iteration's train samples feed nothing (sample_last_train)
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


def test_the_scaling_plan_lists_its_files(tmp_path):
    import yaml

    folder = tmp_path / "r41"
    shutil.copytree(SAVED / "r41", folder)
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    saved["model"]["base_model"] = str(REPO / "models" / "geosynth-small")
    (folder / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    proc = cli("self_select_scaling.py", "--ckpt_dir", str(folder / "iter_1" / "model"), "--dry_run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert f"self-training run: {folder}" in out and f"output folder: {folder / 'scaling_iter_1'} (new)" in out
    assert "data: 8 test questions" in out and "[todo] test_samples.jsonl" in out and "[todo] select_n6_s2.jsonl" in out
    assert "files: 17 to write, 0 done" in out  # samples, greedy, 3 subsets for each N = 2..6
    assert not (folder / "scaling_iter_1").exists()
