"""The offline checkpoint builder: tiny models load, generate and train with real LLaMA-Factory.

    .venv/bin/python -m pytest -q tests/test_build_model.py
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from infer.build_model import (
    CHAT_TEMPLATE,
    QWEN_TOKEN_IDS,
    REAL,
    SPECIAL_TOKENS,
    build,
    build_config,
    build_real_tokenizer,
    check_combination,
    main,
)

VENV_BIN = Path(sys.executable).parent
ARCH_FIXTURES = {"qwen2_vl": "tiny_model_dir", "qwen2_5_vl": "tiny_model_dir_25"}


@pytest.fixture(params=sorted(ARCH_FIXTURES))
def model_dir(request) -> Path:
    return request.getfixturevalue(ARCH_FIXTURES[request.param])


def load(model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"  # not persisted: set at every load (DESIGN.md §5)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return processor, model


def image_message(image: Path, text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": text}]}]


def test_auto_classes_load_the_real_model_classes(model_dir):
    processor, model = load(model_dir)
    arch = json.loads((model_dir / "build_info.json").read_text())["arch"]
    expected = {"qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
                "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor")}[arch]
    assert (type(model).__name__, type(processor).__name__) == expected
    assert type(processor.tokenizer).__name__ == "Qwen2TokenizerFast"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert processor.image_processor.max_pixels == 112 * 112
    assert json.loads((model_dir / "config.json").read_text())["architectures"] == [expected[0]]
    text = model.config.text_config
    assert sum(text.rope_scaling["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2


def test_special_token_ids_match_the_config(tiny_model_dir):
    processor, model = load(tiny_model_dir)
    tok, config = processor.tokenizer, model.config
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    # The 14 specials sit right after the BPE vocabulary, in Qwen2-VL's order.
    assert list(ids.values()) == list(range(len(tok) - 14, len(tok)))
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert config.text_config.eos_token_id == tok.eos_token_id
    assert config.text_config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert config.text_config.vocab_size == len(tok)
    # Special tokens are never split, and plain text round-trips through the byte-level BPE.
    text = "<|im_start|>user\nIn △ABC, ∠A = 35°, AB = 2√3 cm.<|im_end|>"
    assert tok.decode(tok(text).input_ids) == text
    assert tok(text).input_ids[0] == ids["<|im_start|>"]


def test_chat_template_renders_an_image_message(tiny_model_dir, tiny_images):
    processor, _ = load(tiny_model_dir)
    messages = image_message(tiny_images[0], "Find angle B.")
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Find angle B.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # A given system prompt replaces the default; string content works too.
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert processor.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )
    assert processor.tokenizer.chat_template == processor.chat_template == CHAT_TEMPLATE


def test_generate_k_samples_for_a_left_padded_batch(model_dir, tiny_images):
    from qwen_vl_utils import process_vision_info

    processor, model = load(model_dir)
    conversations = [
        image_message(tiny_images[0], "Find angle B."),
        image_message(tiny_images[1], "In triangle ABC, AB = AC and angle A = 40°. What is angle B? "
                                      "Answer the question with Chain-of-Thought."),
    ]
    texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    images, _ = process_vision_info(conversations)
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert inputs.attention_mask[0, 0] == 0 and inputs.attention_mask[:, -1].all()  # left padding
    # max_pixels 112*112 -> at most 4x4 merged patches = 16 image tokens per image.
    assert (inputs.image_grid_thw.prod(-1) // 4 <= 16).all()
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=True, temperature=0.9, top_p=0.95, top_k=50,
                         num_return_sequences=3)
    assert out.shape[0] == 6 and out.shape[1] <= inputs.input_ids.shape[1] + 6
    assert len(processor.batch_decode(out[:, inputs.input_ids.shape[1]:], skip_special_tokens=True)) == 6


def test_build_is_deterministic_and_main_writes_the_same_files(tiny_model_dir, tmp_path):
    again = main(["--out", str(tmp_path / "again"), "--seed", "0"])
    for name in ("model.safetensors", "tokenizer.json", "config.json", "preprocessor_config.json"):
        digest = [hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (tiny_model_dir, again)]
        assert digest[0] == digest[1], name
    assert not (tmp_path / "again.partial").exists()
    main(["--out", str(again)])  # an earlier build is replaced ...
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no build_info.json"):  # ... any other folder is not
        build(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_corpus_file_extends_the_tiny_vocabulary(tmp_path):
    from transformers import AutoTokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hypotenusezzz " * 5 + "\nquadrilateralqqq\n", encoding="utf-8")
    out = build(tmp_path / "m", corpus=corpus)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.tokenize(" hypotenusezzz") == ["Ġhypotenusezzz"]


def test_unknown_size_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: tiny, small, medium, 3b, 7b"):
        check_combination("qwen2_5_vl", "2b")
    with pytest.raises(SystemExit):
        main(["--out", "unused", "--arch", "qwen2_vl", "--size", "3b"])


# Parameter counts of the released models (Qwen2-VL-2B: 2.21B, 7B: 8.29B; Qwen2.5-VL-3B: 3.75B).
@pytest.mark.parametrize("arch,size,billions,tied", [
    ("qwen2_vl", "2b", 2.209, True), ("qwen2_vl", "7b", 8.291, False),
    ("qwen2_5_vl", "3b", 3.755, True), ("qwen2_5_vl", "7b", 8.292, False),
])
def test_real_architectures_on_the_meta_device(arch, size, billions, tied):
    from transformers import (
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLForConditionalGeneration,
    )

    assert (arch, size) in REAL
    config = build_config(arch, size)
    assert config.text_config.rope_scaling["mrope_section"] == [16, 24, 24]
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)
    cls = Qwen2VLForConditionalGeneration if arch == "qwen2_vl" else Qwen2_5_VLForConditionalGeneration
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = cls._from_config(config, dtype=torch.bfloat16)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 3) == billions
    assert (model.lm_head.weight is model.model.language_model.embed_tokens.weight) == tied
    assert model.dtype == torch.bfloat16


def test_real_qwen_tokenizer_has_qwen2_vl_ids():
    tok = build_real_tokenizer()
    assert {t: tok.convert_tokens_to_ids(t) for t in QWEN_TOKEN_IDS} == QWEN_TOKEN_IDS
    assert len(tok) == 151669
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n" in text
    assert 151655 in tok(text).input_ids


def write_sft_job(root: Path, model_dir: Path, images: list[Path], n: int = 8) -> Path:
    """A tiny sharegpt dataset with images, its dataset_info.json, and a LoRA SFT YAML."""
    data = root / "data"
    data.mkdir(parents=True)
    records = [
        {
            "messages": [
                {"role": "user", "content": f"<image>What is angle {i}? Answer the question with Chain-of-Thought."},
                {"role": "assistant", "content": f"The angles of a triangle sum to 180°, so it is {10 * i}°.\n"
                                                 f"Answer: {'ABCD'[i % 4]}"},
            ],
            "images": [str(images[i % len(images)])],
        }
        for i in range(n)
    ]
    (data / "tiny_sft.json").write_text(json.dumps(records), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({
        "tiny_sft": {
            "file_name": "tiny_sft.json", "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
    }), encoding="utf-8")
    job = {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_target": "all", "lora_rank": 4,
        "dataset": "tiny_sft", "dataset_dir": str(data), "template": "qwen2_vl", "cutoff_len": 256,
        "image_max_pixels": 112 * 112, "overwrite_cache": True, "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0, "output_dir": str(root / "out"), "overwrite_output_dir": True,
        "logging_steps": 1, "save_strategy": "no", "plot_loss": False, "report_to": "none",
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1.0e-3,
        "max_steps": 3,  # no bf16/fp16: CPU
    }
    path = root / "sft.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in job.items()), encoding="utf-8")  # JSON is YAML
    return path


def test_llamafactory_trains_a_lora_adapter(tiny_model_dir, tiny_images, tmp_path):
    yaml_path = write_sft_job(tmp_path, tiny_model_dir, tiny_images)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", DISABLE_VERSION_CHECK="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_DISABLED="true")
    started = time.time()
    result = subprocess.run([str(VENV_BIN / "llamafactory-cli"), "train", str(yaml_path)],
                            env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=600)
    seconds = time.time() - started
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, f"llamafactory-cli train failed ({result.returncode}):\n{tail}"
    out = tmp_path / "out"
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_log.jsonl", "all_results.json"):
        assert (out / name).is_file(), f"{name} missing in {out}:\n{tail}"
    losses = [json.loads(line).get("loss") for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert len([x for x in losses if x is not None]) == 3, losses
    assert json.loads((out / "all_results.json").read_text())["train_loss"] > 0
    assert "<|vision_start|><|image_pad|>" in result.stdout + result.stderr  # the image reached the prompt
    assert seconds < 120, f"training took {seconds:.0f} s"


@pytest.mark.gpu
def test_real_2b_builds_and_generates_on_gpu(tmp_path, tiny_images):
    from qwen_vl_utils import process_vision_info
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = build(tmp_path / "qwen2-vl-2b-random", size="2b", device="cuda")
    assert (out / "model.safetensors").is_file()  # 4.4 GB of bf16 fits one 5 GB shard
    processor = AutoProcessor.from_pretrained(out)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.bfloat16, device_map="cuda").eval()
    conversation = image_message(tiny_images[0], "Find angle B.")
    text = processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    images, _ = process_vision_info([conversation])
    inputs = processor(text=[text], images=images, return_tensors="pt").to("cuda")
    out_ids = model.generate(**inputs, max_new_tokens=4, do_sample=True, num_return_sequences=3)
    assert out_ids.shape[0] == 3


def test_small_size_config():
    """The small size (experiments/geosynth_model.py): ~8M parameters, mrope sections summing to head_dim / 2."""
    from infer.build_model import build_config

    config = build_config("qwen2_vl", "small", vocab_size=2700)
    text = config.text_config
    assert text.hidden_size == 256 and text.num_hidden_layers == 6
    assert sum(text.rope_scaling["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2


def test_medium_size_config():
    """The medium size (experiments/geosynth_model.py --size medium): wider and deeper than small, valid rope."""
    from infer.build_model import build_config

    small = build_config("qwen2_vl", "small", vocab_size=2700)
    config = build_config("qwen2_vl", "medium", vocab_size=2700)
    text, vision = config.text_config, config.vision_config
    assert text.hidden_size == 512 and text.num_hidden_layers == 8 and vision.hidden_size == 512
    assert vision.depth > small.vision_config.depth
    assert sum(text.rope_scaling["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
