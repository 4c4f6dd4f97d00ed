"""The memory-aware training plan (issue #40): its arithmetic, the explicit override, the retry on an OOM.

The arithmetic is checked against the issue's measurements of a 7B Qwen2-VL LoRA on an H100 and an H200
(LLaMA-Factory 0.9.5, transformers 4.57.6); training itself is mocked where a GPU would be needed (the
plan and the retry are decided here, on the CPU, from the free memory a card reports)."""

import json

import pytest

from core.config import TrainConfig
from core.proc import CommandError
from train import memory_plan, sft
from train.memory_plan import GIB, ModelShape, estimate_bytes, plan

QWEN2_VL_7B = ModelShape(params=8_291_375_616, layers=28, hidden=3584, vocab=152_064)
QWEN2_VL_2B = ModelShape(params=2_208_985_600, layers=28, hidden=1536, vocab=151_936)
SEQ = 1100  # about the longest item of the measured mix (select prompts of 6 candidates)


@pytest.mark.parametrize("per_device,checkpointing,measured_gb", [(2, True, 30.4), (4, False, 57.0), (8, False, 95.0)])
def test_the_estimate_is_within_15_percent_of_the_measured_peaks(per_device, checkpointing, measured_gb):
    estimate = estimate_bytes(QWEN2_VL_7B, "lora", per_device, SEQ, checkpointing) / 1e9
    assert abs(estimate - measured_gb) / measured_gb < 0.15, estimate


@pytest.mark.parametrize("card_gib,expected", [(139, (8, False)), (78, (4, False)), (40, (2, True)), (24, (1, True))])
def test_the_plan_for_a_7b_lora_on_each_card(card_gib, expected):
    chosen = plan(QWEN2_VL_7B, card_gib * GIB, "lora", SEQ, global_batch=64, world_size=1)
    assert (chosen.per_device, chosen.checkpointing) == expected
    assert chosen.estimate_gib <= card_gib * (1 - memory_plan.HEADROOM) or chosen.per_device == 1


def test_longer_items_full_fine_tuning_and_more_gpus_plan_smaller_batches():
    long = plan(QWEN2_VL_7B, 139 * GIB, "lora", 4096, global_batch=64, world_size=1)
    assert (long.per_device, long.checkpointing) == (2, False)  # four times the tokens per item
    full = plan(QWEN2_VL_2B, 78 * GIB, "full", SEQ, global_batch=64, world_size=1)
    assert full.per_device < plan(QWEN2_VL_2B, 78 * GIB, "lora", SEQ, global_batch=64, world_size=1).per_device
    assert plan(QWEN2_VL_2B, 139 * GIB, "lora", 256, global_batch=64, world_size=8).per_device == 8  # 64 / 8 GPUs
    assert plan(QWEN2_VL_2B, 139 * GIB, "lora", 256, global_batch=64, world_size=1).per_device == 16  # the cap


def test_the_shape_is_read_from_a_model_folder(tiny_model_dir):
    from safetensors.torch import load_file

    shape = ModelShape.from_folder(tiny_model_dir)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    text = {**config, **config.get("text_config", {})}
    assert (shape.layers, shape.hidden, shape.vocab) == (text["num_hidden_layers"], text["hidden_size"], text["vocab_size"])
    weights = {k: v for p in tiny_model_dir.glob("*.safetensors") for k, v in load_file(p).items()}
    assert shape.params == sum(t.numel() for t in weights.values())


RUN = dict(model_path="/base", dataset_name="mix", seed=1, image_min_pixels=3136, image_max_pixels=12544)


def fake_gpu(monkeypatch, free_gib: float, seq_len: int = SEQ):
    monkeypatch.setattr(sft, "visible_gpus", lambda: 1)
    monkeypatch.setattr(sft, "longest_item_tokens", lambda *a: seq_len)
    monkeypatch.setattr(memory_plan.ModelShape, "from_folder", classmethod(lambda cls, folder: QWEN2_VL_7B))
    import torch

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (int(free_gib * GIB), int(free_gib * GIB)))


def fake_llamafactory(calls: list, fail_first: int = 0):
    def run(argv, log_path, env=None):
        import yaml

        args = yaml.safe_load(open(argv[-1]))
        calls.append(args)
        if len(calls) <= fail_first:
            raise CommandError("command failed with exit code 1: llamafactory-cli train\n--- last lines ---\n"
                               "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
        out = __import__("pathlib").Path(args["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        (out / "adapter_model.safetensors").write_bytes(b"x")
        (out / "all_results.json").write_text(json.dumps({"train_loss": 1.0}))
    return run


def test_auto_plans_the_batch_and_the_record_keeps_the_plan(tmp_path, monkeypatch):
    fake_gpu(monkeypatch, 78)
    calls: list = []
    monkeypatch.setattr(sft, "run_logged", fake_llamafactory(calls))
    sft.train(TrainConfig(per_device_batch_size=0), dataset_dir=tmp_path, iter_dir=tmp_path / "it", **RUN)
    assert calls[0]["per_device_train_batch_size"] == 4 and calls[0]["gradient_accumulation_steps"] == 16
    assert calls[0]["disable_gradient_checkpointing"] is True
    assert sft.train_done(tmp_path / "it")["plan"]["per_device"] == 4


def test_explicit_settings_win(tmp_path, monkeypatch):
    fake_gpu(monkeypatch, 139)
    calls: list = []
    monkeypatch.setattr(sft, "run_logged", fake_llamafactory(calls))
    sft.train(TrainConfig(), dataset_dir=tmp_path, iter_dir=tmp_path / "ref", **RUN)  # R3V's 2 per device
    assert calls[-1]["per_device_train_batch_size"] == 2 and "disable_gradient_checkpointing" not in calls[-1]
    assert "plan" not in sft.train_done(tmp_path / "ref")
    sft.train(TrainConfig(per_device_batch_size=0, overrides={"disable_gradient_checkpointing": False}),
              dataset_dir=tmp_path, iter_dir=tmp_path / "ckpt", **RUN)
    assert calls[-1]["per_device_train_batch_size"] == 8 and calls[-1]["disable_gradient_checkpointing"] is False


def test_a_planned_batch_that_runs_out_of_memory_is_retried_with_half(tmp_path, monkeypatch, caplog):
    fake_gpu(monkeypatch, 139)
    calls: list = []
    monkeypatch.setattr(sft, "run_logged", fake_llamafactory(calls, fail_first=2))  # 8 and 4 fail (simulated)
    with caplog.at_level("WARNING", logger="r3v"):
        sft.train(TrainConfig(per_device_batch_size=0), dataset_dir=tmp_path, iter_dir=tmp_path / "it", **RUN)
    assert [(c["per_device_train_batch_size"], c["gradient_accumulation_steps"]) for c in calls] == [(8, 8), (4, 16), (2, 32)]
    assert caplog.text.count("ran out of GPU memory at the planned per-device batch; retrying with") == 2
    assert sft.train_done(tmp_path / "it")["plan"]["per_device"] == 2
    # An explicit batch is not retried: the error stands.
    monkeypatch.setattr(sft, "run_logged", fake_llamafactory([], fail_first=1))
    with pytest.raises(CommandError, match="CUDA out of memory"):
        sft.train(TrainConfig(per_device_batch_size=8), dataset_dir=tmp_path, iter_dir=tmp_path / "x", **RUN)


def test_without_a_gpu_auto_is_the_reference_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(sft, "visible_gpus", lambda: 0)
    calls: list = []
    monkeypatch.setattr(sft, "run_logged", fake_llamafactory(calls))
    sft.train(TrainConfig(per_device_batch_size=0), dataset_dir=tmp_path, iter_dir=tmp_path / "it", **RUN)
    assert calls[0]["per_device_train_batch_size"] == 2 and calls[0]["disable_gradient_checkpointing"] is False


def test_the_longest_item_is_counted_with_the_model_s_tokenizer(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    long_text = "angle ABC is 40 degrees, " * 40
    items = [{"messages": [{"role": "user", "content": "<image>short"}, {"role": "assistant", "content": "B"}],
              "images": ["a.png"]},
             {"messages": [{"role": "user", "content": "<image>" + long_text}, {"role": "assistant", "content": "C"}],
              "images": ["b.png"]}]
    (tmp_path / "mix.json").write_text(json.dumps(items))
    tokens = len(AutoTokenizer.from_pretrained(str(tiny_model_dir))("<image>" + long_text + "C")["input_ids"])
    longest = sft.longest_item_tokens(tmp_path / "mix.json", tiny_model_dir, 28 * 28 * 64, cutoff_len=4096)
    assert longest == tokens + 2 * 16 + 64  # the text, two role markers, one image at the pixel cap
    assert sft.longest_item_tokens(tmp_path / "mix.json", tiny_model_dir, 28 * 28 * 64, cutoff_len=100) == 100
