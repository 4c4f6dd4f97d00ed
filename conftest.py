"""Shared test setup: offline, markers, and the tiny models built once per test run.

    .venv/bin/python -m pytest -q                  # fast suite (CPU, offline)
    RUN_SLOW=1 .venv/bin/python -m pytest -q -m slow
    .venv/bin/python -m pytest -q -m gpu           # on a CUDA machine

Markers: `slow` runs only with RUN_SLOW=1; `gpu` runs only where torch sees a CUDA device.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set at import, before any test module imports transformers / huggingface_hub (they read these
# once): nothing in the suite may reach the hub.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from subprocess tests


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long CPU checks; run with RUN_SLOW=1 (make test-slow)")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (make test-gpu on the GPU machine)")


def pytest_collection_modifyitems(config, items):
    run_slow = os.environ.get("RUN_SLOW") == "1"
    has_gpu = None  # torch is imported only when a gpu test was collected
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run"))
        if "gpu" in item.keywords:
            if has_gpu is None:
                import torch

                has_gpu = torch.cuda.is_available()
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="gpu: no CUDA device"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2-VL (~330k parameters, ~1.6 MB) with its processor, built offline once."""
    from infer.build_model import build

    return build(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl", arch="qwen2_vl", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir_25(tmp_path_factory) -> Path:
    """The same for Qwen2.5-VL (window attention in the vision tower)."""
    from infer.build_model import build

    return build(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl", arch="qwen2_5_vl", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> list[Path]:
    """Three small PNG geometry figures of different sizes (a triangle, a circle, a square)."""
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, (w, h) in enumerate([(64, 56), (80, 64), (56, 96)]):
        image = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(image)
        if i == 0:
            draw.polygon([(4, h - 4), (w // 2, 4), (w - 4, h - 4)], outline="black")
        elif i == 1:
            draw.ellipse([8, 4, w - 8, h - 4], outline="blue")
        else:
            draw.rectangle([6, 6, w - 6, h - 6], outline="red")
        draw.text((2, 2), "ABC"[i], fill="black")
        path = folder / f"figure{i}.png"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def warm_tiny_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny Qwen2-VL after a short full fine-tune on GeoSynth gold rationales (real LLaMA-Factory).

    A random model never writes "Answer: X", so its samples give no positives or negatives and the
    reflection mix would hold QA items only. After this warm-up (~1 minute on 2 cores) about 2 of 3
    samples carry an answer and some are right, so the loop's tests see every kind of mix item.
    """
    from core.config import PromptConfig, TrainConfig
    from data_gen import geosynth
    from data_gen.geoqa import load_split
    from mix.llamafactory import write_dataset
    from mix.reflection import warmup_items
    from train.sft import MODEL_DIR, train

    work = tmp_path_factory.mktemp("warm")
    geosynth.generate(work / "data", 192, 0, seed=5)
    items = warmup_items(load_split(work / "data", "train"), PromptConfig(), 192, seed=0)
    write_dataset(items, work / "sft_data", "warm")
    # A high learning rate for a from-scratch 330k-parameter model (the R3V 3e-5 is for 7B LoRA).
    cfg = TrainConfig(finetuning_type="full", learning_rate=5e-3, num_train_epochs=4, global_batch_size=16,
                      per_device_batch_size=16, cutoff_len=1024)
    train(cfg, model_path=str(tiny_model_dir), dataset_dir=work / "sft_data", dataset_name="warm", iter_dir=work,
          seed=0, image_min_pixels=3136, image_max_pixels=64 * 28 * 28)
    return work / MODEL_DIR


@pytest.fixture(scope="session")
def warm_sampled_run_dir(warm_tiny_model_dir, tmp_path_factory) -> Path:
    """A run.py folder holding iteration 0 only, sampled by the warm tiny model (no training).

    total_iters=0 with sample_last_train=true: config.yaml, data/ (24 GeoSynth train / 4 test
    questions) and iter_0/{train,test}_samples.jsonl with 4 samples per question. For stages that
    read a run's train-sample pool, e.g. `self_select_scaling.py --train_select_mix true`.
    """
    import run
    from core.config import RunConfig, parse_args

    out = tmp_path_factory.mktemp("run0")
    argv = ["--base_model", str(warm_tiny_model_dir), f"output_dir={out}", "run_name=run0", "total_iters=0",
            "sample_last_train=true", "data.geosynth_train=24", "data.geosynth_test=4", "sample.num_samples=4",
            "sample.max_new_tokens=64", "sample.batch_size=8"]
    run.main(parse_args(RunConfig, argv).config)
    return out / "run0"


REPO = Path(__file__).resolve().parent


@pytest.fixture
def saved_run(tmp_path) -> tuple[Path, list[str]]:
    """The killed run of tests/data/run_41b6ae0 (made by the code of 41b6ae0; its last two steps are left),
    moved to tmp_path/r41, and the command that resumes it."""
    import shutil

    import yaml

    folder = tmp_path / "r41"
    shutil.copytree(REPO / "tests" / "data" / "run_41b6ae0" / "r41", folder)
    tree = yaml.safe_load((folder / "config.yaml").read_text())
    tree["model"]["base_model"], tree["output_dir"] = str(REPO / "models" / "geosynth-small"), str(tmp_path)
    (folder / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    argv = ["--config", str(REPO / "configs" / "geosynth_small.yaml"), "--base_model", str(REPO / "models" / "geosynth-small"),
            f"output_dir={tmp_path}", "run_name=r41", "total_iters=1", "data.geosynth_train=16", "data.geosynth_test=8",
            "sample.max_new_tokens=48", "sample.batch_size=8", "train.max_steps=2", "train.per_device_batch_size=4",
            "train.global_batch_size=4", "train.lora_rank=4", "train.lora_alpha=8"]
    return folder, argv
