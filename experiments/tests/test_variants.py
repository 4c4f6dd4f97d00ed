"""The research variants reach a run only through `plugins`: a fresh process refuses their names without
it, a run folder saved before the registries resumes once it is given, and a tiny run trains on them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import run
from core.config import RunConfig, parse_args, to_dict
from core.io import read_json

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from core.config import RunConfig, parse_args
from core.registry import load_plugins
from mix.reflection import check_mix_config
cfg = parse_args(RunConfig, sys.argv[1:]).config
load_plugins(cfg.plugins)
check_mix_config(cfg.mix)
print("accepted")
"""


def check_in_a_fresh_process(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHECK, *argv], cwd=REPO, capture_output=True, text=True, check=False)


def test_a_research_target_needs_its_plugin():
    refused = check_in_a_fresh_process("mix.select_target=value")
    assert refused.returncode != 0
    assert "mix.select_target='value' is not registered (known: answer)" in refused.stderr
    assert "plugins=[experiments.variants]" in refused.stderr
    accepted = check_in_a_fresh_process("plugins=[experiments.variants]", "mix.select_target=value")
    assert accepted.returncode == 0 and accepted.stdout.strip() == "accepted", accepted.stderr


def test_a_folder_saved_before_plugins_resumes_once_they_are_given(tmp_path):
    """Folders saved before this key existed have no `plugins`; naming it on resume is not a change of results."""
    argv = [f"output_dir={tmp_path}", "run_name=old", "mix.select_target=value"]
    saved = to_dict(parse_args(RunConfig, argv).config)
    del saved["plugins"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    cfg = parse_args(RunConfig, [*argv, "plugins=[experiments.variants]"]).config
    assert run.open_run_dir(cfg, restart=False) == tmp_path / "old"
    assert yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())["plugins"] == ["experiments.variants"]


@pytest.fixture(scope="module")
def value_run(warm_tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("value")
    argv = ["--base_model", str(warm_tiny_model_dir), f"output_dir={out}", "run_name=value", "data.geosynth_train=16",
            "data.geosynth_test=6", "total_iters=1", "sample.max_new_tokens=64", "sample.batch_size=8",
            "train.max_steps=1", "train.per_device_batch_size=4", "train.global_batch_size=4",
            "plugins=[experiments.variants]", "mix.select_target=value", "mix.select_sets=natural", "mix.select_per_n=1"]
    run.main(parse_args(RunConfig, argv).config)
    return out / "value"


def test_a_tiny_run_trains_on_the_value_target(value_run):
    data = json.loads((value_run / "iter_1" / "sft_data" / "r3v_iter1.json").read_text())
    selects = [r for r in data if "Which prediction is correct?" in r["messages"][0]["content"]]
    assert selects, "the warm tiny model's samples give select sets"
    for r in selects:
        lines = r["messages"][1]["content"].split("\n")
        assert lines[-1].startswith("Answer: ") and all(line.startswith("Prediction ") for line in lines[:-1])
    assert read_json(value_run / "iter_1" / "train_done.json")["global_step"] == 1
    assert yaml.safe_load((value_run / "config.yaml").read_text())["plugins"] == ["experiments.variants"]
