"""Bad input found before any work starts, and done-markers that stand for their outputs (issue #36).

Each row: the case, the command or call, the message expected (it names the key, file or folder and the
fix), and that nothing was lost. Image checks at load are a separate step of the issue."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import run
from core.config import ConfigError, ModelConfig, RunConfig, parse_args
from infer.model import ModelError, load

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "geoqa_sample"
SAVED = REPO / "tests" / "data" / "run_41b6ae0"


def model_folder(tmp_path: Path, model_type: str = "qwen2_vl", weights: bool = True) -> Path:
    folder = tmp_path / f"model-{model_type}-{weights}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    if weights:
        (folder / "model.safetensors").write_bytes(b"x")
    return folder


def broken_images(tmp_path: Path) -> Path:
    """The GeoQA sample with one train and one test image cut short."""
    folder = tmp_path / "geoqa-broken"
    shutil.copytree(SAMPLE, folder)
    for name in ("train-7.png", "test-2.png"):
        (folder / "images" / name).write_bytes((folder / "images" / name).read_bytes()[:200])
    return folder


EVERY_KIND = ["--base_model", "{model}", "--geoqa_dir", "{data}", "sample.num_samples=0", "mix.select_target=nonesuch"]


def every_kind(tmp_path: Path) -> list[str]:
    """Bad values, an unknown variant, a model without weights and broken images in train and test."""
    fill = {"model": str(model_folder(tmp_path, weights=False)), "data": str(broken_images(tmp_path))}
    return [a.format(**fill) for a in EVERY_KIND]


EVERY_KIND_REPORT = [
    "5 problems with the inputs; nothing was started (fix each):",
    "[config] config values no run can use (fix each):\n      sample.num_samples=0: use 1 or more",
    "[config] mix.select_target='nonesuch' is not registered",
    "[model] model.base_model=", "has config.json but no weights",
    "[data] train.jsonl: 1 image(s) cannot be read:\n      ", "geoqa-broken/train.jsonl item 8 (id train-7): ",
    "[data] test.jsonl: 1 image(s) cannot be read:\n      ", "geoqa-broken/test.jsonl item 3 (id test-2): ",
    "pass data.skip_bad=true to leave those items out",
]

CLI_CASES = [
    ("counts and ranges, all at once", lambda t: ["sample.num_samples=0", "total_iters=-1", "sample.top_p=1.5"],
     ["config values no run can use (fix each):", "sample.num_samples=0: use 1 or more",
      "total_iters=-1: use 0 (the base model only) or more", "sample.top_p=1.5: use in (0, 1]"]),
    ("a model folder with only config.json",
     lambda t: ["--base_model", str(model_folder(t, weights=False)), "--geoqa_dir", str(SAMPLE)],
     ["has config.json but no weights (*.safetensors or *.bin): copy the whole model folder"]),
    ("a model of another architecture",
     lambda t: ["--base_model", str(model_folder(t, "llama")), "--geoqa_dir", str(SAMPLE)],
     ["is a 'llama' model; this project runs qwen2_vl, qwen2_5_vl"]),
    ("an adapter given as the base model",
     lambda t: ["--base_model", str(SAVED / "r41" / "iter_1" / "model"), "--geoqa_dir", str(SAMPLE)],
     ["is a LoRA adapter, not a model: give the base model here"]),
    ("failures of every kind, reported together", every_kind, EVERY_KIND_REPORT),
]


@pytest.mark.parametrize("case,argv,expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_is_refused_before_any_work(case, argv, expected, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), *argv(tmp_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for text in expected:
        assert text in proc.stderr
    assert not (tmp_path / "outputs").exists()  # nothing started


MARKER_CASES = [
    ("a trained adapter deleted, train_done.json kept", "iter_1/model/adapter_model.safetensors",
     "step iter1/train is marked done by {f}/iter_1/train_done.json, but {f}/iter_1/model lacks adapter_config.json "
     "and adapter_model.safetensors: delete {f}/iter_1/train_done.json to redo the step"),
    ("the mix data deleted, mix_stats.json kept", "iter_1/sft_data/r3v_iter1.json",
     "step iter1/mix is marked done by {f}/iter_1/sft_data/mix_stats.json, but {f}/iter_1/sft_data/r3v_iter1.json "
     "is gone: delete {f}/iter_1/sft_data/mix_stats.json to redo the step"),
]


@pytest.mark.parametrize("case,deleted,expected", MARKER_CASES, ids=[c[0] for c in MARKER_CASES])
def test_a_done_marker_whose_outputs_are_gone_is_refused_with_the_file_to_delete(case, deleted, expected, saved_run):
    folder, argv = saved_run
    (folder / deleted).unlink()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name not in ("run.log", ".lock.json")}
    with pytest.raises(ConfigError) as refused:
        run.main(parse_args(RunConfig, argv).config)
    assert expected.format(f=folder) in str(refused.value)
    # nothing lost or redone: every file is still there as it was (metrics.json and the tables are recomputed
    # by every run from the step files, and config.yaml is saved again)
    for path, content in before.items():
        if path.name not in ("config.yaml", "metrics.json"):
            assert path.read_bytes() == content, path


def test_loading_an_emptied_checkpoint_says_which_marker_to_delete(saved_run):
    folder, _ = saved_run
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / "iter_1" / "model" / name).unlink()
    with pytest.raises(ModelError, match=r"holds neither a LoRA adapter \(adapter_config.json\) nor a full model "
                                         r"\(config.json\); its training is marked done in .*train_done.json: delete "
                                         r"that file and rerun to train it again"):
        load(ModelConfig(base_model=str(REPO / "models" / "geosynth-small")), folder / "iter_1" / "model")


def test_a_truncated_image_is_named_by_its_id_at_load(tmp_path):
    """A cut-off PNG used to fail after the whole train split was sampled, as a PIL traceback naming no file."""
    from data_gen.geoqa import DataError, load_split

    folder = tmp_path / "geoqa"
    shutil.copytree(SAMPLE, folder)
    broken = folder / "images" / "train-7.png"
    broken.write_bytes(broken.read_bytes()[:200])
    (folder / "images" / "train-9.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as refused:
        load_split(folder, "train")
    message = str(refused.value)
    assert message.startswith("train.jsonl: 2 image(s) cannot be read:\n  ")
    assert "train.jsonl item 8 (id train-7): " in message and "train.jsonl item 10 (id train-9): " in message
    assert str(broken) in message and "data.skip_bad=true" in message
    kept = load_split(folder, "train", skip_bad=True)  # or leave them out, counted
    assert len(kept) == 28 and {"train-7", "train-9"}.isdisjoint(p.id for p in kept)


def test_a_dry_run_shows_the_same_report_and_exits_as_a_run_would(tmp_path):
    argv = every_kind(tmp_path)
    proc = subprocess.run([sys.executable, str(REPO / "run.py"), *argv, "--dry_run"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    checks = proc.stdout.split("# checks\n", 1)[1]
    for text in EVERY_KIND_REPORT:
        assert text in checks and text in proc.stderr
    assert "\nmodel: " not in proc.stdout and "\ndata: " not in proc.stdout  # no line says they were found
    assert not (tmp_path / "outputs").exists()


def test_what_is_logged_before_the_run_folder_is_taken_reaches_its_log(tmp_path):
    """Checks and data loading log before run.log exists: the lines are kept and written there first."""
    from core.log import add_file_log, get_logger, held_for_file

    log = get_logger("test")
    with held_for_file():
        log.info("before the folder")
        add_file_log(tmp_path / "a" / "run.log")
        log.info("after")
    with held_for_file():  # a block that opens no file keeps nothing for the next one
        log.info("dropped")
    with held_for_file():
        add_file_log(tmp_path / "b" / "run.log")
    assert (tmp_path / "a" / "run.log").read_text().count("before the folder\n") == 1
    assert "after" in (tmp_path / "a" / "run.log").read_text()
    assert "dropped" not in (tmp_path / "b" / "run.log").read_text()


def test_the_scaling_script_reports_every_kind_together_too(tmp_path):
    argv = [*every_kind(tmp_path)[:4], "num_test_samples=2", "max_select_num=3", "ckpt_dir=" + str(tmp_path / "none"),
            "train_select_mix=false"]
    for dry in ([], ["--dry_run"]):
        proc = subprocess.run([sys.executable, str(REPO / "self_select_scaling.py"), *argv, *dry], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        for text in ["4 problems with the inputs; nothing was started (fix each):",
                     "[config] num_test_samples=2 < max_select_num=3: N candidates need at least N samples",
                     "[model] model.base_model=", "has config.json but no weights",
                     f"[model] ckpt_dir '{tmp_path / 'none'}': no such folder; pass the folder LLaMA-Factory wrote",
                     "[data] test.jsonl: 1 image(s) cannot be read:\n      ", "geoqa-broken/test.jsonl item 3 (id test-2): "]:
            assert text in proc.stderr
        assert ("# checks\n" in proc.stdout) == bool(dry)
        assert not (tmp_path / "outputs").exists() and not list(tmp_path.glob("**/scaling*"))
