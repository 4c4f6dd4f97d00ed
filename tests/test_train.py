"""train/: the rendered LLaMA-Factory YAML, the launch command, a real `llamafactory-cli train` on the
tiny model (with resume, failure and LoRA export), and LLaMA-Factory's own data pipeline on our data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.config import PromptConfig, TrainConfig
from core.proc import CommandError
from data_gen import prompts
from data_gen.problem import Problem
from mix.llamafactory import write_dataset
from train import llamafactory_cli, sft
from train.export import export_merged
from train.sft import whole_training_loss

RENDER = dict(model_path="/models/base", dataset_dir="/data", dataset_name="mix", output_dir="/out",
              seed=7, image_min_pixels=3136, image_max_pixels=401408)
TINY_PIXELS = dict(image_min_pixels=56 * 56, image_max_pixels=112 * 112)  # infer/build_model.py LOCAL["tiny"] pixels
# Settings that keep the real CPU run to seconds: one optimizer step per micro-batch, two steps (the
# first has lr 0: it is the warm-up step), and an lr large enough to move the adapter visibly.
FAST = dict(global_batch_size=2, per_device_batch_size=2, max_steps=2, learning_rate=1e-2,
            overrides={"logging_steps": 1, "preprocessing_num_workers": 1})


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("num_gpus, nnodes, accumulation", [(1, 1, 32), (2, 1, 16), (2, 2, 8), (0, 1, 32)])
def test_gradient_accumulation_reaches_the_global_batch(num_gpus, nnodes, accumulation):
    cfg = TrainConfig(global_batch_size=64, per_device_batch_size=2, nnodes=nnodes)
    args = sft.render_sft_config(cfg, num_gpus=num_gpus, on_gpu=num_gpus > 0, **RENDER)
    assert args["gradient_accumulation_steps"] == accumulation
    assert args["per_device_train_batch_size"] == 2


def test_uneven_global_batch_is_logged(caplog):
    with caplog.at_level("WARNING", logger="r3v"):
        assert sft.gradient_accumulation(64, 2, 3) == 10
    assert "effective global batch of 60" in caplog.text


def test_render_reference_hyperparameters_and_run_fields():
    args = sft.render_sft_config(TrainConfig(), num_gpus=1, on_gpu=True, **RENDER)
    expected = dict(stage="sft", do_train=True, finetuning_type="lora", lora_target="all", lora_rank=8,
                    lora_alpha=16, lora_dropout=0.0, freeze_vision_tower=True, template="qwen2_vl",
                    learning_rate=3e-5, lr_scheduler_type="constant_with_warmup", warmup_ratio=0.1,
                    weight_decay=0.05, adam_beta2=0.98, adam_epsilon=1e-6, num_train_epochs=3.0,
                    val_size=0.0, cutoff_len=4096, report_to="none", dataloader_num_workers=0,
                    model_name_or_path="/models/base", dataset="mix", dataset_dir="/data", output_dir="/out",
                    seed=7, image_min_pixels=3136, image_max_pixels=401408, bf16=True)
    assert {k: args.get(k) for k in expected} == expected
    assert "max_steps" not in args and "adapter_name_or_path" not in args
    assert sft.PLACEHOLDER not in args.values()


def test_bf16_only_on_gpu_and_max_steps():
    cpu = sft.render_sft_config(TrainConfig(max_steps=5), num_gpus=0, on_gpu=False, **RENDER)
    assert cpu["bf16"] is False and cpu["fp16"] is False and cpu["max_steps"] == 5


def test_overrides_win_over_template_and_config():
    cfg = TrainConfig(learning_rate=1e-4, overrides={"learning_rate": 5e-6, "bf16": False, "logging_steps": 1,
                                                     "deepspeed": "configs/llamafactory/ds_z2.json"})
    args = sft.render_sft_config(cfg, num_gpus=2, on_gpu=True, **RENDER)
    assert (args["learning_rate"], args["bf16"], args["logging_steps"]) == (5e-6, False, 1)
    assert Path(args["deepspeed"]).is_absolute() and Path(args["deepspeed"]).is_file()  # resolved from the repo


def test_full_finetuning_picks_the_full_template_unless_one_is_given(tmp_path):
    full = sft.render_sft_config(TrainConfig(finetuning_type="full"), num_gpus=1, on_gpu=True, **RENDER)
    assert full["finetuning_type"] == "full" and not any(k.startswith("lora_") for k in full)
    assert sft.template_path(TrainConfig(finetuning_type="full")).name == "sft_full.yaml"
    mine = tmp_path / "mine.yaml"
    mine.write_text("stage: sft\ndo_train: true\ntemplate: qwen2_vl\nwarmup_ratio: 0.2\n")
    cfg = TrainConfig(finetuning_type="full", template=str(mine))
    assert sft.template_path(cfg) == mine
    assert sft.render_sft_config(cfg, num_gpus=1, on_gpu=True, **RENDER)["warmup_ratio"] == 0.2
    with pytest.raises(FileNotFoundError, match="train.template"):
        sft.template_path(TrainConfig(template="configs/nope.yaml"))


def test_continue_from_previous():
    lora = TrainConfig(continue_from_previous=True)
    assert sft.starting_point(lora, "/base", None) == ("/base", None)
    assert sft.starting_point(lora, "/base", "/it1/model") == ("/base", "/it1/model")
    assert sft.starting_point(TrainConfig(finetuning_type="full", continue_from_previous=True),
                              "/base", "/it1/model") == ("/it1/model", None)
    assert sft.starting_point(TrainConfig(), "/base", "/it1/model") == ("/base", None)  # R3V: fresh LoRA
    args = sft.render_sft_config(lora, num_gpus=1, on_gpu=True, adapter_name_or_path="/it1/model", **RENDER)
    # LLaMA-Factory 0.9.5 (model/adapter.py): the last adapter is resumed as trainable only when
    # create_new_adapter is false.
    assert args["adapter_name_or_path"] == "/it1/model" and args["create_new_adapter"] is False
    with pytest.raises(ValueError, match="only LoRA"):
        sft.render_sft_config(TrainConfig(finetuning_type="full"), num_gpus=1, on_gpu=True,
                              adapter_name_or_path="/a", **RENDER)


# --------------------------------------------------------------------------- commands


def test_command_one_gpu():
    argv, env = sft.build_train_command("/run/it1/sft.yaml", num_gpus=1)
    assert Path(argv[0]).name == "llamafactory-cli" and argv[1:] == ["train", "/run/it1/sft.yaml"]
    assert env["NPROC_PER_NODE"] == "1" and "FORCE_TORCHRUN" not in env and "NNODES" not in env
    assert env["DISABLE_VERSION_CHECK"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PATH"].split(":")[0] == str(Path(argv[0]).parent)  # torchrun from the same venv


def test_command_cpu_and_deepspeed():
    _, cpu = sft.build_train_command("/x.yaml", num_gpus=0)
    assert "NPROC_PER_NODE" not in cpu and "FORCE_TORCHRUN" not in cpu
    _, ds = sft.build_train_command("/x.yaml", num_gpus=1, deepspeed=True)
    assert ds["FORCE_TORCHRUN"] == "1"  # LLaMA-Factory refuses DeepSpeed outside torchrun


def test_command_two_gpus():
    _, env = sft.build_train_command("/x.yaml", num_gpus=2)
    assert env["FORCE_TORCHRUN"] == "1" and env["NPROC_PER_NODE"] == "2" and "NNODES" not in env


def test_command_two_nodes(monkeypatch):
    _, env = sft.build_train_command("/x.yaml", num_gpus=2, nnodes=2, node_rank=1, master_addr="10.0.0.1",
                                     master_port=29600)
    assert {k: env[k] for k in ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR",
                                "MASTER_PORT")} == {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "NNODES": "2",
                                                    "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1",
                                                    "MASTER_PORT": "29600"}
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    _, env = sft.build_train_command("/x.yaml", num_gpus=8, nnodes=2)
    assert (env["NODE_RANK"], env["MASTER_ADDR"], env["MASTER_PORT"]) == ("0", "node0", "29500")
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        sft.build_train_command("/x.yaml", num_gpus=8, nnodes=2)
    with pytest.raises(ValueError, match="spaces"):
        sft.build_train_command("/my run/sft.yaml", num_gpus=1)


def test_parent_distributed_variables_are_dropped(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    env = llamafactory_cli.subprocess_env({"HF_HUB_OFFLINE": "1"})
    assert "WORLD_SIZE" not in env and "RANK" not in env and env["HF_HUB_OFFLINE"] == "1"


def test_latest_checkpoint_by_step_and_complete(tmp_path):
    assert sft.latest_checkpoint(tmp_path / "missing") is None
    for step, complete in [(9, True), (10, True), (100, False), (20, True)]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert sft.latest_checkpoint(tmp_path).name == "checkpoint-20"  # 100 was cut off mid-save


def fake_llamafactory(calls: list[dict]):
    """Stands in for `llamafactory-cli train`: records the YAML it got, writes what LF writes."""
    def run(argv, log_path, env=None):
        args = yaml.safe_load(Path(argv[-1]).read_text())
        calls.append(args)
        out = Path(args["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text("{}")
        (out / "adapter_model.safetensors").write_bytes(b"x")
        (out / "all_results.json").write_text(json.dumps({"train_loss": 1.5, "train_runtime": 3.0, "epoch": 3.0}))
        (out / "trainer_log.jsonl").write_text('{"current_steps": 6, "total_steps": 6, "loss": 1.2}\n')
        Path(log_path).write_text("fake run\n")
    return run


def test_train_resumes_from_the_latest_checkpoint_and_records(tmp_path, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(sft, "run_logged", fake_llamafactory(calls))
    monkeypatch.setattr(sft, "visible_gpus", lambda: 0)
    iter_dir = tmp_path / "iter2"
    for step in (3, 6, 9):  # a run killed after two epoch checkpoints, while saving the third
        (iter_dir / "model" / f"checkpoint-{step}").mkdir(parents=True)
        if step < 9:
            (iter_dir / "model" / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    run = dict(model_path="/base", dataset_dir=tmp_path, dataset_name="mix", iter_dir=iter_dir, seed=1,
               image_min_pixels=3136, image_max_pixels=12544)
    out = sft.train(TrainConfig(), **run)
    assert calls[0]["resume_from_checkpoint"] == str(iter_dir / "model" / "checkpoint-6")
    assert calls[0]["output_dir"] == str(iter_dir / "model") and calls[0]["seed"] == 1
    done = sft.train_done(iter_dir)
    assert (done["train_loss"], done["final_loss"], done["global_step"], done["runtime_s"]) == (1.5, 1.2, 6, 3.0)
    assert not list(out.glob("checkpoint-*"))  # only served resuming
    sft.train(TrainConfig(), **run)
    assert len(calls) == 1  # done: not run again

    # Killed after LLaMA-Factory saved the model, before train_done.json: recorded, not retrained.
    (iter_dir / "train_done.json").unlink()
    sft.train(TrainConfig(), **run)
    assert len(calls) == 1 and sft.train_done(iter_dir)["train_loss"] == 1.5


def test_train_refuses_a_missing_model(tmp_path, monkeypatch):
    monkeypatch.setattr(sft, "run_logged", lambda argv, log_path, env=None: None)  # "succeeds", writes nothing
    monkeypatch.setattr(sft, "visible_gpus", lambda: 0)
    with pytest.raises(RuntimeError, match="without an adapter"):
        sft.train(TrainConfig(), model_path="/base", dataset_dir=tmp_path, dataset_name="mix",
                  iter_dir=tmp_path / "it", seed=1, image_min_pixels=3136, image_max_pixels=12544)
    assert sft.train_done(tmp_path / "it") is None


# --------------------------------------------------------------------------- real LLaMA-Factory


def long_rationale(i: int) -> str:
    steps = " ".join(f"Step {k}: the angle at vertex {k} equals the sum of the two remote interior "
                     f"angles, so it is {30 + i + k} degrees." for k in range(1, 9))
    return f"{steps} Therefore the answer is {'ABCD'[i % 4]}. Answer: {'ABCD'[i % 4]}"


def mix_items(images: list[Path]) -> list[dict]:
    """Eight items of every kind, one a self-select prompt with 6 long candidates."""
    cfg = PromptConfig()
    items = []
    for i in range(6):
        p = Problem(id=f"q{i}", image=str(images[i % len(images)]), question=f"In the figure, find angle {i}. ()",
                    choices=("30°", "40°", "50°", "60°"), answer="ABCD"[i % 4])
        kind = ["qa", "cot", "refine", "cot", "qa", "refine"][i]
        prompt = {"qa": prompts.question_block(p), "cot": prompts.cot_prompt(p, cfg),
                  "refine": prompts.refine_prompt(p, long_rationale(i + 1), cfg)}[kind]
        response = prompts.answer_target(p) if kind == "qa" else long_rationale(i)
        items.append({"kind": kind, "id": f"{kind}-{p.id}", "image": p.image, "prompt": prompt, "response": response})
    p = Problem(id="sel", image=str(images[0]), question="In the figure, find angle ABC. ()",
                choices=("30°", "40°", "50°", "60°"), answer="C")
    items.append({"kind": "select", "id": "select-sel", "image": p.image,
                  "prompt": prompts.select_prompt(p, [long_rationale(k) for k in range(6)], cfg),
                  "response": prompts.answer_target(p)})
    items.append({"kind": "select", "id": "select-sel-2", "image": p.image,
                  "prompt": prompts.select_prompt(p, [long_rationale(k) for k in range(2)], cfg),
                  "response": prompts.answer_target(p)})
    return items


@pytest.fixture(scope="module")
def mix_dataset(tmp_path_factory, tiny_images) -> tuple[Path, str, list[dict]]:
    folder = tmp_path_factory.mktemp("sft_data")
    items = mix_items(tiny_images)
    write_dataset(items, folder, "r3v_test_mix")
    return folder, "r3v_test_mix", items


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# Run in a child process: LLaMA-Factory's argument parser reconfigures logging process-wide.
PIPELINE_SCRIPT = """
import json, sys
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

model_args, data_args, training_args, _, _ = get_train_args(json.loads(sys.argv[1]))
modules = load_tokenizer(model_args)
tokenizer = modules["tokenizer"]
template = get_template_and_fix_tokenizer(tokenizer, data_args)
data = get_dataset(template, model_args, data_args, training_args, stage="sft", **modules)["train_dataset"]
rows = [{"prompt": tokenizer.decode(r["input_ids"]), "length": len(r["input_ids"]),
         "target": tokenizer.decode([t for t in r["labels"] if t != -100])} for r in data]
print("ROWS=" + json.dumps(rows))
"""


def test_llamafactory_pipeline_reads_our_data_untruncated(mix_dataset, tiny_model_dir, tmp_path, cpu_only):
    """LLaMA-Factory 0.9.5's own loader and qwen2_vl template on the written dataset, at the rendered
    cutoff_len: the 6-candidate select prompt keeps its instruction and its whole target."""
    folder, name, items = mix_dataset
    args = sft.render_sft_config(TrainConfig(**FAST), model_path=tiny_model_dir, dataset_dir=folder,
                                 dataset_name=name, output_dir=tmp_path / "out", num_gpus=0, seed=0,
                                 on_gpu=False, **TINY_PIXELS)
    env = llamafactory_cli.subprocess_env({"DISABLE_VERSION_CHECK": "1"})
    proc = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, json.dumps(args)], check=False, capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.split("ROWS=")[-1])
    assert len(rows) == len(items)

    select = max(rows, key=lambda r: r["length"])
    assert "Model's Prediction 6" in select["prompt"] and PromptConfig().select_instruction in select["prompt"]
    assert select["length"] > 1024  # the reference's cutoff_len would have cut this prompt (REFERENCE.md §7.9)
    assert select["length"] <= args["cutoff_len"]
    assert select["target"].startswith("Answer: C")  # the whole response is trained on
    assert "<|image_pad|>" in select["prompt"]  # the image reached the template
    targets = [r["target"] for r in rows]
    assert any(t.startswith(long_rationale(1) + "<|im_end|>") for t in targets)  # a CoT target, whole


def test_real_training_resume_record_and_export(mix_dataset, tiny_model_dir, tmp_path, cpu_only):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    folder, name, _ = mix_dataset
    cfg = TrainConfig(**FAST)
    run = dict(model_path=tiny_model_dir, dataset_dir=folder, dataset_name=name, seed=0, **TINY_PIXELS)
    iter_dir = tmp_path / "iter1"
    # A killed earlier attempt that left files but no checkpoint: cleaned, then trained afresh.
    (iter_dir / "model").mkdir(parents=True)
    (iter_dir / "model" / "adapter_config.json").write_text("{}")
    out = sft.train(cfg, iter_dir=iter_dir, **run)

    assert out == iter_dir / "model"
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    done = json.loads((iter_dir / "train_done.json").read_text())
    assert done["train_loss"] is not None and done["global_step"] == 2
    assert "llamafactory" in (iter_dir / "train.log").read_text().lower()
    rendered = yaml.safe_load((iter_dir / "sft.yaml").read_text())
    assert rendered["max_steps"] == 2 and rendered["bf16"] is False
    assert not list(out.glob("checkpoint-*"))
    assert sft.train(cfg, iter_dir=iter_dir, **run) == out  # finished: skipped, not retrained

    merged_dir = export_merged(tiny_model_dir, out, tmp_path / "merged")
    assert (merged_dir / "config.json").is_file() and not (tmp_path / "merged.partial").exists()
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32).eval()
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 42, 99, 123, 7]])
    with torch.no_grad():
        want = PeftModel.from_pretrained(base, out).eval()(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        plain = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)(input_ids=ids).logits
    assert torch.allclose(got, want, atol=2e-2, rtol=2e-2)  # the merge applied the adapter
    assert not torch.allclose(want, plain, atol=1e-4)  # and the adapter changed the model

    # continue_from_previous with LoRA: LLaMA-Factory keeps training the given adapter.
    model_path, adapter = sft.starting_point(TrainConfig(continue_from_previous=True), tiny_model_dir, out)
    nxt = sft.train(TrainConfig(**FAST), iter_dir=tmp_path / "iter2",
                    adapter_name_or_path=adapter, **{**run, "model_path": model_path})
    assert f"Loaded adapter(s): {out}" in (tmp_path / "iter2" / "train.log").read_text()
    from safetensors.torch import load_file
    before, after = load_file(out / "adapter_model.safetensors"), load_file(nxt / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_failed_training_raises_with_log(mix_dataset, tiny_model_dir, tmp_path, cpu_only):
    folder, _, _ = mix_dataset
    iter_dir = tmp_path / "iter1"
    with pytest.raises(CommandError) as err:
        sft.train(TrainConfig(**FAST), model_path=tiny_model_dir, dataset_dir=folder, dataset_name="not_registered",
                  iter_dir=iter_dir, seed=0, **TINY_PIXELS)
    message = str(err.value)
    assert str(iter_dir / "train.log") in message and "not_registered" in message
    assert sft.train_done(iter_dir) is None


def test_a_resumed_training_records_the_whole_training_s_loss(mix_dataset, tiny_model_dir, tmp_path, monkeypatch,
                                                              cpu_only):
    """Issue #37: transformers' train_loss of a resumed training sums the resumed steps only but divides by
    all of them. The kill is simulated: the uninterrupted training's step-2 checkpoint (the same files a
    run killed after saving it leaves) is put in a fresh folder; the resume itself is real LLaMA-Factory."""
    folder, name, _ = mix_dataset
    cfg = TrainConfig(**{**FAST, "max_steps": 4, "overrides": {**FAST["overrides"], "save_strategy": "steps",
                                                                 "save_steps": 2, "save_total_limit": 3}})
    run = dict(model_path=tiny_model_dir, dataset_dir=folder, dataset_name=name, seed=0, **TINY_PIXELS)
    killed = tmp_path / "killed" / "model"
    check_output = sft.check_output

    def keep_checkpoint_2(output_dir, *args):
        if not killed.exists():
            shutil.copytree(Path(output_dir) / "checkpoint-2", killed / "checkpoint-2")
        return check_output(output_dir, *args)

    monkeypatch.setattr(sft, "check_output", keep_checkpoint_2)
    whole = sft.train(cfg, iter_dir=tmp_path / "whole", **run)
    full = sft.train_done(tmp_path / "whole")
    assert full["global_step"] == 4 and "resumed_from_step" not in full
    resumed_dir = sft.train(cfg, iter_dir=tmp_path / "killed", **run)
    resumed = sft.train_done(tmp_path / "killed")
    reported = json.loads((resumed_dir / "all_results.json").read_text())["train_loss"]  # what transformers says
    assert resumed["resumed_from_step"] == 2 and resumed["train_loss_covers"] == "all 4 steps"
    assert abs(resumed["train_loss"] - full["train_loss"]) < 1e-3  # logged losses are rounded to 4 digits
    assert abs(reported - full["train_loss"]) > 0.05  # the figure recorded before: the resumed half only
    from safetensors.torch import load_file
    a, b = load_file(whole / "adapter_model.safetensors"), load_file(resumed_dir / "adapter_model.safetensors")
    assert all(torch_equal(a[k], b[k]) for k in a)  # the same training


def torch_equal(x, y) -> bool:
    import torch

    return torch.allclose(x, y, atol=1e-6)


def test_the_whole_training_loss_from_the_logged_intervals():
    history = [{"step": 2, "loss": 1.0}, {"step": 4, "loss": 0.8}, {"step": 6, "loss": 0.5}, {"step": 8, "loss": 0.4}]
    # Resumed at 4: the resumed part (steps 5-8) summed 0.5*2 + 0.4*2 = 1.8, which transformers divides by 8.
    assert whole_training_loss(history, 1.8 / 8, 8, 4) == (pytest.approx(((1.0 + 0.8) * 2 + 1.8) / 8), 8)
    # Resumed at 5 with logs every 2 steps: step 5's loss was never logged; 7 of the 8 steps are covered.
    loss, covered = whole_training_loss(history[:2], 1.2 / 8, 8, 5)
    assert covered == 7 and loss == pytest.approx(((1.0 + 0.8) * 2 + 1.2) / 7)
