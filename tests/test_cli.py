"""The seed's two commands, run as a user runs them (subprocesses), on a GeoQA-format folder.

The folder mimics the processed GeoQA download: one JSON array per split, integer answers,
images under images/ (converted from GeoSynth so no download is needed).
"""

import json
import os
import subprocess
import sys
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


def test_seed_commands_run_on_a_geoqa_folder(warm_tiny_model_dir, geoqa_dir, tmp_path):
    # python run.py --base_model P --geoqa_dir D --total_iters 3 --batch_size 4 (1 iteration here, short runs)
    proc = run_cli([str(REPO / "run.py"), "--base_model", str(warm_tiny_model_dir), "--geoqa_dir", str(geoqa_dir),
                    "--total_iters", "1", "--batch_size", "4", "sample.max_new_tokens=48", "train.max_steps=2",
                    "train.global_batch_size=4", "train.per_device_batch_size=4"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "outputs" / f"r3v-{geoqa_dir.name}-{warm_tiny_model_dir.name}"
    assert (run_dir / "metrics.md").is_file() and (run_dir / "iter_1" / "model" / "adapter_config.json").is_file()
    assert read_json(run_dir / "iter_1" / "metrics.json")["num_test"] == 4
    samples = read_jsonl(run_dir / "iter_0" / "train_samples.jsonl")
    assert [r["id"] for r in samples] == [f"train-{i}" for i in range(12)]  # joined by id, in file order

    # python self_select_scaling.py --base_model P --geoqa_dir D --batch_size 8 --ckpt_dir C --max_select_num 6
    ckpt = run_dir / "iter_1" / "model"
    proc = run_cli([str(REPO / "self_select_scaling.py"), "--base_model", str(warm_tiny_model_dir),
                    "--geoqa_dir", str(geoqa_dir), "--batch_size", "8", "--ckpt_dir", str(ckpt),
                    "--max_select_num", "6", "sample.max_new_tokens=48", "num_subsets=1"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scaling = read_json(run_dir / "scaling_iter_1" / "scaling.json")
    assert [r["N"] for r in scaling["rows"]] == [1, 2, 3, 4, 5, 6]
    assert "| 6 |" in (run_dir / "scaling_iter_1" / "scaling.md").read_text()


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
