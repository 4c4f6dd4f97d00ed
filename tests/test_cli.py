"""The seed's two commands, run as a user runs them (subprocesses), on a GeoQA-format folder.

The folder mimics the processed GeoQA download: one JSON array per split, integer answers,
images under images/ (converted from GeoSynth so no download is needed).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def geoqa_dir(tmp_path_factory) -> Path:
    from data_gen import geosynth

    src = tmp_path_factory.mktemp("geosynth")
    geosynth.generate(src, 12, 4, seed=11)
    out = tmp_path_factory.mktemp("geoQA-data")
    (out / "images").mkdir()
    for split in ("train", "test"):
        items = []
        for line in (src / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            (out / "images" / f"{r['id']}.png").write_bytes((src / r["image"]).read_bytes())
            # The download's form: an array, answers as 0-based indices, image as a bare file name.
            items.append({"id": r["id"], "image": f"{r['id']}.png", "question": r["question"],
                          "choices": r["choices"], "answer": "ABCD".index(r["answer"])})
        (out / f"{split}.jsonl").write_text(json.dumps(items, ensure_ascii=False, indent=1))
    return out


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


# mix.min_chars=0: the tiny model's 48-token rationales are often under R3V's 50 characters, and N = 6 needs six candidates
SCALING_ARGS = ["--batch_size", "8", "--max_select_num", "6", "sample.max_new_tokens=48", "num_subsets=1", "mix.min_chars=0"]


@pytest.fixture(scope="module")
def seed_run(warm_tiny_model_dir, geoqa_dir, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The seed's two commands, run as the original workflow: the loop (2 iterations here, short runs), then
    self_select_scaling.py on its last checkpoint. Returns (the run folder, the scaling folder, its argv)."""
    cwd = tmp_path_factory.mktemp("seed")
    # python run.py --base_model P --geoqa_dir D --total_iters 3 --batch_size 4
    proc = run_cli([str(REPO / "run.py"), "--base_model", str(warm_tiny_model_dir), "--geoqa_dir", str(geoqa_dir),
                    "--total_iters", "2", "--batch_size", "4", "sample.max_new_tokens=48", "train.max_steps=2",
                    "train.global_batch_size=4", "train.per_device_batch_size=4"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = cwd / "outputs" / f"r3v-{geoqa_dir.name}-{warm_tiny_model_dir.name}"
    # python self_select_scaling.py --base_model P --geoqa_dir D --batch_size 8 --ckpt_dir C --max_select_num 6
    argv = [str(REPO / "self_select_scaling.py"), "--base_model", str(warm_tiny_model_dir), "--geoqa_dir",
            str(geoqa_dir), "--ckpt_dir", str(run_dir / "iter_2" / "model"), *SCALING_ARGS]
    proc = run_cli(argv, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, run_dir / "scaling_select_mix", argv


def test_the_seed_s_loop_runs_on_a_geoqa_folder(seed_run):
    run_dir, _, _ = seed_run
    assert (run_dir / "metrics.md").is_file() and (run_dir / "iter_2" / "model" / "adapter_config.json").is_file()
    assert read_json(run_dir / "iter_1" / "metrics.json")["num_test"] == 4
    samples = read_jsonl(run_dir / "iter_0" / "train_samples.jsonl")
    assert [r["id"] for r in samples] == [f"train-{i}" for i in range(12)]  # joined by id, in file order
    assert len(read_jsonl(run_dir / "iter_2" / "train_samples.jsonl")) == 12  # the last iteration's too, as the original


def test_the_seed_s_scaling_command_trains_the_mixed_n_select_model_and_compares_ss_with_mv(seed_run):
    run_dir, out, _ = seed_run
    # 1. the mix, from the train samples of iterations 0..2: select items of 2 to 6 candidates, at most 3 per
    # question and N (mix.select_per_n)
    data = json.loads((out / "select_mix" / "sft_data" / "r3v_select_mix.json").read_text())
    instruction = "Which prediction is correct? Give the final answer for the beginning question by selecting the correct option."
    per_question_and_n: dict[tuple[str, int], int] = {}
    for item in data:
        prompt = item["messages"][0]["content"]
        if prompt.endswith(instruction):
            n = sum(f"Model's Prediction {i}: " in prompt for i in range(1, 8))
            key = (item["images"][0], n)
            per_question_and_n[key] = per_question_and_n.get(key, 0) + 1
    assert {n for _, n in per_question_and_n} == {2, 3, 4, 5, 6}
    assert max(per_question_and_n.values()) == 3
    assert "select-mix pool: train samples of iterations [0, 1, 2]" in (out / "scaling.log").read_text()
    # 2. trained from the base model, 3. the test set sampled 10 times, 4. the table and the plot
    done = read_json(out / "select_mix" / "train_done.json")
    assert done["global_step"] == 2 and (out / "select_mix" / "model" / "adapter_model.safetensors").is_file()
    scaling = read_json(out / "scaling.json")
    assert scaling["checkpoint"] == str((out / "select_mix" / "model").resolve())
    assert scaling["num_test_samples"] == 10 and [r["N"] for r in scaling["rows"]] == [1, 2, 3, 4, 5, 6]
    assert all(len(r["predictions"]) == 10 for r in read_jsonl(out / "test_samples.jsonl"))
    assert "| 6 |" in (out / "scaling.md").read_text() and (out / "scaling.png").stat().st_size > 1000


def test_a_killed_scaling_run_resumes_to_the_same_table(seed_run, tmp_path):
    run_dir, out, argv = seed_run
    killed = tmp_path / "killed"
    # Killed after the select-mix model was trained (an interrupted training resumes: tests/test_failures.py):
    # its trained folder as the first run left it, then a real SIGKILL during the test sampling.
    shutil.copytree(out / "select_mix", killed / "select_mix")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, *argv, f"out={killed}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(killed.glob("test_samples.rank*.jsonl")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup, while the test set is sampled
    proc.wait()
    assert not (killed / "scaling.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in (killed / "select_mix").rglob("*")}
    resumed = run_cli([*argv, f"out={killed}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # not trained again
    assert read_json(killed / "scaling.json")["rows"] == read_json(out / "scaling.json")["rows"]
    assert (killed / "scaling.md").read_text() == (out / "scaling.md").read_text()


def test_cli_errors_are_one_line_with_the_fix(tmp_path):
    proc = run_cli([str(REPO / "run.py"), "--base_model", str(tmp_path / "missing"), "--geoqa_dir", str(tmp_path)],
                   cwd=tmp_path)
    assert proc.returncode != 0
    report = proc.stderr[proc.stderr.index("error: "):].splitlines()  # the model and both splits fail: one report
    assert report[0] == "error: 3 problems with the inputs; nothing was started (fix each):"
    assert report[1].startswith("  [model] model.base_model=") and report[2].startswith(f"  [data] {tmp_path}: no train")
    assert report[3].startswith(f"  [data] {tmp_path}: no test")
    assert "Traceback" not in proc.stderr
    proc = run_cli([str(REPO / "run.py"), "sample.temprature=1"], cwd=tmp_path)
    assert "unknown key 'sample.temprature'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("script", ["run.py", "self_select_scaling.py"])
def test_a_forgotten_geoqa_dir_is_an_error_not_a_geosynth_run(tmp_path, script):
    """The seed's command without --geoqa_dir would quietly use the embedded GeoSynth data."""
    proc = run_cli([str(REPO / script), "--base_model", str(tmp_path / "model")], cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    named = next(line for line in proc.stderr.splitlines() if "--base_model is given" in line)
    assert named.startswith("  [data] --base_model is given but not --geoqa_dir") and f"python {script} --base_model" in named
    assert not (tmp_path / "outputs").exists()  # nothing was started
