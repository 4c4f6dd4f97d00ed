"""GPU checks (`make test-gpu`, marker gpu): run on a machine with GPUs to check an install.

- run.py with the tiny model on every visible GPU: sampling through `accelerate launch` (one rank per
  GPU), LLaMA-Factory training through torchrun on all of them; then iteration 0 again on one GPU:
  the merged samples must be the same records, byte for byte.
- the sampler benchmark's data-parallel path on 1 and all GPUs (same samples).
Skipped without CUDA (conftest.py). Nothing here is mocked.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.gpu


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def run_py(model_dir: Path, out: Path, name: str, iters: int, gpus: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "run.py", "--base_model", str(model_dir), "data.dataset=geosynth", f"output_dir={out}",
            f"run_name={name}", *extra,
            "data.geosynth_train=48", "data.geosynth_test=16", f"total_iters={iters}", "sample.max_new_tokens=48",
            "sample.batch_size=8", "train.max_steps=4", "train.per_device_batch_size=2",
            "train.global_batch_size=8", "train.learning_rate=1e-3"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus)
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_run_on_all_gpus_matches_one_gpu(warm_tiny_model_dir, tmp_path):
    n = gpu_count()
    every = ",".join(str(i) for i in range(n))
    run_py(warm_tiny_model_dir, tmp_path, "all", 1, every)
    run_dir = tmp_path / "all"
    sft_log = (run_dir / "iter_1" / "train.log").read_text()
    if n > 1:
        # LLaMA-Factory's launcher and argument parser name the process count
        assert f"Initializing {n} distributed tasks" in sft_log or f"world size: {n}" in sft_log, sft_log[-2000:]
        assert (run_dir / "iter_0" / "train_samples.log").is_file()  # written by accelerate launch
    assert (run_dir / "iter_1" / "metrics.json").is_file()
    run_py(warm_tiny_model_dir, tmp_path, "one", 0, "0", "sample_last_train=true")  # iteration 0 only, train set too
    for name in ("train_samples.jsonl", "test_samples.jsonl", "test_greedy.jsonl"):
        many = (run_dir / "iter_0" / name).read_bytes()
        one = (tmp_path / "one" / "iter_0" / name).read_bytes()
        assert many == one, f"iter_0/{name} differs between {n} GPU(s) and 1"
    stats = (run_dir / "iter_0" / "train_samples.stats.json")
    assert stats.is_file()


def test_data_parallel_sampler_benchmark(tmp_path):
    from bench import sampler_gpus

    n = gpu_count()
    counts = "1" if n == 1 else f"1,{n}"
    result = sampler_gpus.main(["--build", "tiny", "--model", str(tmp_path / "tiny"), "--questions", "32",
                                "--batch", "4", "--new_tokens", "16", "--gpus", counts, "--work", str(tmp_path / "w")])
    for p, run in result["runs"].items():
        assert run["tokens"] == 32 * 3 * 16, (p, run)
        assert run["identical_to_baseline"] is (None if p == "1" else True), (p, run)
