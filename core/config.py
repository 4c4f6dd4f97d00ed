"""Configuration: one dataclass per stage, loaded as defaults < YAML (`--config`) < CLI.

Every option lives in exactly one dataclass field below, with its help text in the field's
metadata. The command line accepts:

    --config FILE.yaml            a YAML file with the same nesting as the dataclasses
    sample.temperature=1.0        a dotted override (also `--sample.temperature 1.0`)
    --base_model PATH             the seed's flags, kept as aliases (see ALIASES)

Unknown keys, in YAML or on the command line, are errors that list the valid keys.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.checks import InputError
from core.io import FileError, read_text

REPO_ROOT = Path(__file__).resolve().parent.parent
# The small GeoSynth model that ships with the project (issue 6); the default of `python run.py`.
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "geosynth-small"


class ConfigError(InputError):
    """A configuration value or key that cannot be used; the message says how to fix it."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (mutable defaults are wrapped in a factory)."""
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


# --------------------------------------------------------------------------- stage configs


@dataclass
class DataConfig:
    dataset: str = _f("geosynth", "Data source: geoqa (processed GeoQA folder), geosynth "
                      "(generated into the run folder), or generic (JSONL / HF dataset on disk).")
    geoqa_dir: str = _f("", "Folder with {train,test}.jsonl and images/ (GeoQA layout); for "
                        "dataset=generic, a folder of {train,test}.jsonl or a saved HF DatasetDict.")
    train_limit: int = _f(0, "Use only the first N train problems (0 = all; with val_questions, of those "
                          "left after the validation draw).")
    test_limit: int = _f(0, "Use only the first N test problems (0 = all).")
    val_questions: int = _f(0, "Hold out N train items as a validation split (a fixed draw from the "
                            "whole train file, the same for every seed and train_limit; a problem's "
                            "repeats in the file, same question and answer, are held out with it, so N "
                            "items may be fewer distinct problems): never "
                            "sampled for training data, evaluated each iteration like the test split "
                            "(val_* files, val_ metrics). Choose settings on it, report test. 0 = none.")
    skip_bad: bool = _f(False, "Skip malformed items (counted and reported) instead of failing.")
    rel_tol: float = _f(0.0, "Relative tolerance for free-form numeric answers (ChartQA's relaxed "
                        "accuracy: 0.05); 0 = exact.")
    geosynth_train: int = _f(400, "GeoSynth: number of train problems to generate.")
    geosynth_test: int = _f(200, "GeoSynth: number of test problems to generate.")
    geosynth_difficulty: int = _f(1, "GeoSynth: difficulty level 1..3.")


@dataclass
class ModelConfig:
    base_model: str = _f(str(DEFAULT_MODEL_DIR), "Base model folder (Qwen2-VL / Qwen2.5-VL, "
                         "loadable with AutoModelForImageTextToText).")
    dtype: str = _f("auto", "auto (bf16 on GPU, fp32 on CPU), bfloat16, float16 or float32.")
    attn_implementation: str = _f("auto", "auto (flash_attention_2 if installed, else sdpa), "
                                  "sdpa, eager or flash_attention_2.")
    sdpa_backends: str = _f("flash,efficient,math", "With sdpa on CUDA: the SDPA kernels generation may use, "
                            "in order (flash, efficient, cudnn, math; empty = PyTorch's choice). cuDNN is "
                            "left out by default: it costs ~1.6 ms of CPU per call with a padding mask "
                            "(DESIGN.md §5).")
    min_pixels: int = _f(3136, "Smallest image area given to the vision encoder (pixels).")
    max_pixels: int = _f(401408, "Largest image area given to the vision encoder (pixels); "
                         "512x784 by default, matching LLaMA-Factory's training cap.")


@dataclass
class PromptConfig:
    # The reference prompts (REFERENCE.md §3), with the choices shown in every prompt, for
    # training and testing alike (the reference dropped them in training, §7.8).
    cot_instruction: str = _f("Answer the question with Chain-of-Thought.",
                              "Instruction appended to the question for CoT answers.")
    sample_instruction: str = _f(
        "Answer the question with Chain-of-Thought as short as possible without losing accuracy. Finally "
        "answer with option from choices with prefix \"Answer: \".",
        "Instruction for iteration-0 sampling of multiple-choice questions with the base model (the original's, "
        "REFERENCE.md §2: it asks for the \"Answer: \" marker the judge reads); its answers are then trained "
        "under cot_instruction, as in the original. Empty = cot_instruction. Free-form questions always "
        "use cot_instruction.")
    refine_instruction: str = _f("Judge the correctness of the model's prediction and refine it.",
                                 "Instruction closing a self-refine prompt.")
    select_instruction: str = _f(
        "Which prediction is correct? Give the final answer for the beginning question by "
        "selecting the correct option.", "Instruction closing a self-select prompt.")
    free_form_select_instruction: str = _f(
        "Which prediction is correct? Give the final answer for the beginning question.",
        "Self-select instruction for questions without choices.")


@dataclass
class SampleConfig:
    num_samples: int = _f(3, "K: rationales sampled per question (R3V uses 3).")
    temperature: float = _f(0.9, "Sampling temperature (R3V: 0.9).")
    top_p: float = _f(0.95, "Nucleus sampling threshold (R3V: 0.95).")
    top_k: int = _f(50, "Top-k sampling cut-off (R3V: 50).")
    max_new_tokens: int = _f(200, "Longest rationale; longer ones are recorded as truncated (the original: 200; "
                             "configs/r3v_recommended.yaml: 512, so long rationales reach their answer).")
    batch_size: int = _f(16, "Questions per generate call on each GPU (each yields K sequences).")
    num_processes: int = _f(0, "Data-parallel workers for `accelerate launch` (0 = one per "
                            "visible GPU, or 1 on CPU), per node.")
    accelerate_config: str = _f("", "accelerate config file for sampling with several processes (e.g. "
                                "configs/accelerate/multi_node.yaml; relative to the repository or "
                                "absolute). Empty = built-in flags. Process counts and node addresses "
                                "are always passed as flags, which win over the file.")
    num_machines: int = _f(0, "Nodes that sample together (0 = NNODES from the environment, else 1). "
                           "With more than one, every node needs NODE_RANK and MASTER_ADDR (MASTER_PORT "
                           "defaults to 29500) and the run folder on shared storage (docs/scaling.md).")
    node_wait_s: float = _f(900.0, "Several nodes: seconds node 0 waits for every rank's records to show "
                            "on the shared run folder, and other nodes wait for node 0's merged file.")


@dataclass
class MixConfig:
    include_qa: bool = _f(True, "Add every train question with its direct answer (QA items).")
    include_cot: bool = _f(True, "Add positive rationales (L_SFT), at most cot_per_question per question.")
    cot_per_question: int = _f(1, "Distinct positive rationales per question in the mix (R3V: 1); more "
                               "raises the dose of self-generated CoT per iteration.")
    include_refine: bool = _f(True, "Add self-refine items: negative -> positive (L_REF).")
    value_check: bool = _f(False, "Multiple choice: drop a correct rationale whose last computed value "
                           "(after the last '=' of its answer line, else before its answer marker) is a "
                           "number other than the value of the option it names "
                           "(a lucky letter; R3V keeps it). Such a rationale is then neither a positive "
                           "nor a negative.")
    filters: list = _f([], "Candidate filters by name, applied after value_check (not in R3V; a plugin registers "
                        "them, e.g. [arith] from experiments.variants). Empty = R3V's filters only.")
    include_select: bool = _f(True, "Add self-select items (L_SEL).")
    min_chars: int = _f(50, "A candidate must be longer than this many characters (reference: 50).")
    drop_no_answer: bool = _f(False, "Drop candidates without an extractable answer (the original keeps them, "
                              "as negatives; configs/r3v_recommended.yaml drops them).")
    drop_truncated: bool = _f(False, "Drop candidates cut off at sample.max_new_tokens (the original keeps them; "
                              "configs/r3v_recommended.yaml drops them).")
    dedupe: bool = _f(False, "Drop repeated texts of a question before building its CoT, refine and select items, "
                      "keeping the newest (the original keeps repeats; configs/r3v_recommended.yaml drops them).")
    select_mixed_n: bool = _f(False, "Self-select items with N in 2..max_select_n candidates "
                              "(the scaling model) instead of 2+1 / 1+2.")
    max_select_n: int = _f(6, "Largest candidate set for mixed-N self-select items.")
    select_target: str = _f("answer", "Self-select target: answer = \"Answer: B\" (R3V), or a target a "
                            "plugin registers (experiments/README.md).")
    select_per_n: int = _f(3, "At most this many select items per question and N, for mixed-N or "
                           "natural select sets (the original's check `> 2` lets 3 through).")
    extra_sets: dict = _f({}, "More self-select sets per question, by name -> how many (not in R3V; a plugin "
                          "registers them, e.g. {swap: 4} from experiments.variants). Empty = none.")
    select_sets: str = _f("fixed", "How self-select candidate sets are drawn: fixed = 2 pos + 1 neg and "
                          "1 pos + 2 neg (R3V; mixed N: 1..N-1 positives); natural = N (3, or 2..max_select_n "
                          "with select_mixed_n) of the question's usable samples from the whole pool drawn "
                          "at random, repeats kept, like a test-time set (not in R3V), select_per_n sets per "
                          "N, each with at least one correct candidate (all-correct sets included).")


@dataclass
class TrainConfig:
    template: str = _f("configs/llamafactory/sft_lora.yaml",
                       "LLaMA-Factory SFT YAML template (relative to the repository or absolute).")
    finetuning_type: str = _f("lora", "lora or full.")
    continue_from_previous: bool = _f(False, "Start each iteration's training from the previous "
                                      "iteration's model instead of the base (R3V: from base).")
    learning_rate: float = _f(3e-5, "Learning rate (R3V: 3e-5).")
    num_train_epochs: float = _f(3.0, "Epochs over the mix (R3V: 3).")
    global_batch_size: int = _f(64, "Global batch (R3V: 64); gradient accumulation is derived "
                                "from it, the per-device batch and the number of GPUs.")
    per_device_batch_size: int = _f(2, "Batch per GPU (R3V: 2). 0 = auto: the largest that fits the GPU's free "
                                    "memory, without gradient checkpointing where it fits (train/memory_plan.py); "
                                    "a planned batch that runs out of memory is retried with half.")
    cutoff_len: int = _f(4096, "Longest training sequence in tokens; long enough for 6-candidate "
                         "select prompts (the reference's 1024 cut them).")
    lora_rank: int = _f(8, "LoRA rank (LLaMA-Factory default, as in R3V).")
    lora_alpha: int = _f(16, "LoRA alpha.")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0 = run all epochs).")
    num_gpus: int = _f(0, "GPUs for training (0 = all visible).")
    nnodes: int = _f(1, "Nodes for multi-node training (torchrun; see docs/scaling.md).")
    overrides: dict = _f({}, "Extra LLaMA-Factory arguments written into the rendered YAML.")


@dataclass
class WarmupConfig:
    enabled: bool = _f(False, "Before iteration 0, fine-tune on gold rationales (the original "
                       "R3V warm-up; Qwen2-VL needs none).")
    num_items: int = _f(500, "Gold rationales to use for the warm-up.")


@dataclass
class StageConfigs:
    """The stage options that run.py and self_select_scaling.py share."""

    plugins: list = _f([], "Modules to import first: they register variants by name (select targets, "
                        "...) that this config may then name, e.g. [experiments.variants]. Saved with the "
                        "run, so a resume and eval.evaluate import the same.")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class RunConfig(StageConfigs):
    """The self-training loop (run.py)."""

    run_name: str = _f("", "Run folder name under output_dir (default: derived from data and model).")
    output_dir: str = _f("outputs", "Parent folder of run folders.")
    seed: int = _f(42, "The one seed: sampling, shuffles and training derive from it.")
    total_iters: int = _f(3, "Self-training iterations after iteration 0 (the seed runs 0..total_iters).")
    sample_last_train: bool = _f(True, "Also sample the train set in the last iteration, as the original "
                                 "does: no training of the loop uses it, self_select_scaling.py's select-mix model "
                                 "does (its pool is iterations 0..N). May be turned on when a run is resumed.")
    select_at_iter0: bool = _f(False, "Also measure self-selection with the untrained base model.")
    export_final: bool = _f(False, "After the last iteration, merge its LoRA adapter into a full model "
                            "in <run>/iter_<last>/merged (llamafactory-cli export).")
    metrics: list = _f([], "More metrics by name, beside R3V's (Test@1, MV@K, SS@K, pass@K, ...), written into "
                        "each metrics.json; a plugin registers them (e.g. [select_vs_vote, letter_binding] "
                        "from experiments.variants).")
    warmup: WarmupConfig = field(default_factory=WarmupConfig)


@dataclass
class ScalingConfig(StageConfigs):
    """Test-time self-selection scaling (self_select_scaling.py)."""

    ckpt_dir: str = _f("", "Checkpoint to evaluate: a LLaMA-Factory LoRA output folder or a full model "
                       "folder (e.g. outputs/<run>/iter_3/model). Empty = the base model.")
    out: str = _f("", "Output folder (default: <run folder of ckpt_dir>/scaling_<name>, or "
                  "outputs/scaling-<name>; see self_select_scaling.py).")
    seed: int = _f(42, "Seed for sampling, candidate shuffles and subset draws.")
    max_select_num: int = _f(6, "Largest number of candidates N the model selects among.")
    num_test_samples: int = _f(10, "M: samples per test question (M >= max_select_num).")
    num_subsets: int = _f(3, "Random N-subsets of the M samples averaged per N (all subsets when "
                          "there are no more than this many).")
    train_select_mix: bool = _f(True, "First train the mixed-N select model (select items with N in "
                                "2..max_select_num, mix.select_per_n per N) on the base model from the run's "
                                "train samples of iterations 0..N (N: ckpt_dir's iteration, else the run's last), "
                                "as the original does; it is then the model evaluated. false = evaluate "
                                "ckpt_dir (or the base model) as it is.")
    run_dir: str = _f("", "Self-training run folder (default: found from ckpt_dir). Its train samples "
                      "feed train_select_mix, and its config.yaml supplies every data, model, prompt, "
                      "sample, mix and train option left at its default here.")


# --------------------------------------------------------------------------- loading


# Every dict-typed config field, as a dotted key: a YAML mapping there is one value.
DICT_KEYS: set[str] = set()



def check_values(cfg: Any) -> None:
    """Refuse values no run can use, all of them at once, before any work starts (counts >= 1,
    probabilities in range, ...). Checks the sections and keys `cfg` has (RunConfig, ScalingConfig)."""
    rules: list[tuple[str, Callable[[Any], bool], str]] = [
        ("sample.num_samples", lambda v: v >= 1, "1 or more (R3V: 3)"),
        ("sample.batch_size", lambda v: v >= 1, "1 or more"),
        ("sample.max_new_tokens", lambda v: v >= 1, "1 or more"),
        ("sample.temperature", lambda v: v > 0, "above 0 (greedy runs ignore it)"),
        ("sample.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
        ("sample.top_k", lambda v: v >= 0, "0 (off) or more"),
        ("sample.num_processes", lambda v: v >= 0, "0 (one per GPU) or more"),
        ("mix.min_chars", lambda v: v >= 0, "0 or more"),
        ("mix.max_select_n", lambda v: v >= 2, "2 or more"),
        ("train.learning_rate", lambda v: v > 0, "above 0"),
        ("train.num_train_epochs", lambda v: v > 0, "above 0"),
        ("train.global_batch_size", lambda v: v >= 1, "1 or more"),
        ("train.per_device_batch_size", lambda v: v >= 0, "0 (auto: planned for the GPU) or more"),
        ("train.cutoff_len", lambda v: v >= 1, "1 or more"),
        ("train.lora_rank", lambda v: v >= 1, "1 or more"),
        ("train.max_steps", lambda v: v >= 0, "0 (all epochs) or more"),
        ("train.num_gpus", lambda v: v >= 0, "0 (all visible) or more"),
        ("train.nnodes", lambda v: v >= 1, "1 or more"),
        ("data.train_limit", lambda v: v >= 0, "0 (all) or more"),
        ("data.test_limit", lambda v: v >= 0, "0 (all) or more"),
        ("data.val_questions", lambda v: v >= 0, "0 (none) or more"),
        ("data.rel_tol", lambda v: v >= 0, "0 or more"),
        ("data.geosynth_train", lambda v: v >= 1, "1 or more"),
        ("data.geosynth_test", lambda v: v >= 1, "1 or more"),
        ("total_iters", lambda v: v >= 0, "0 (the base model only) or more"),
        ("warmup.num_items", lambda v: v >= 1, "1 or more"),
        ("num_test_samples", lambda v: v >= 1, "1 or more"),
        ("max_select_num", lambda v: v >= 1, "1 or more"),
        ("num_subsets", lambda v: v >= 1, "1 or more"),
    ]
    bad = []
    for key, ok, want in rules:
        obj = cfg
        for part in key.split("."):
            obj = getattr(obj, part, _MISSING)
        if obj is not _MISSING and not ok(obj):
            bad.append(f"{key}={obj!r}: use {want}")
    if bad:
        raise ConfigError("config values no run can use (fix each):\n  " + "\n  ".join(bad))


_MISSING = object()


# The seed's flags (SEED.md) mapped to their dotted keys.
ALIASES = {
    "base_model": "model.base_model",
    "geoqa_dir": "data.geoqa_dir",
    "batch_size": "sample.batch_size",
}


def field_help(cls: type) -> dict[str, tuple[str, Any, str]]:
    """Flatten a config class into {dotted key: (type name, default, help)}."""
    out: dict[str, tuple[str, Any, str]] = {}
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            for key, value in field_help(tp).items():
                out[f"{f.name}.{key}"] = value
        else:
            out[f.name] = (_type_name(tp), getattr(defaults, f.name), f.metadata.get("help", ""))
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Coerce a YAML or CLI value to the field's type, or explain why it cannot be."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        tp = args[0]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return "" if value is None else str(value)
        if tp is dict or origin is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value) or {}
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if tp is list or origin is list:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, list):
                raise ValueError
            return list(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key}={value!r} is not a valid {_type_name(tp)}; "
                          f"give a {_type_name(tp)} value, e.g. {key}=<{_type_name(tp)}>.") from None
    return value


def _set(cfg: Any, key: str, value: Any, source: str, valid: dict) -> None:
    """Set a dotted key on a nested dataclass instance."""
    if key in RETIRED and key not in valid:
        if _retired_is_off(key, value):
            return  # what every config saved before the key retired holds: nothing to do
        raise ConfigError(f"{source}: {retired_spelling(key, value)}.")
    if key not in valid:
        raise ConfigError(f"{source}: unknown key '{key}'. Valid keys: {', '.join(sorted(valid))}"
                          + (f"; seed aliases: {', '.join('--' + a for a in ALIASES)}" if ALIASES else ""))
    *parents, name = key.split(".")
    obj = cfg
    for p in parents:
        obj = getattr(obj, p)
    tp = typing.get_type_hints(type(obj))[name]
    setattr(obj, name, _convert(value, tp, key, source))


def _dict_keys(cls: type, prefix: str = "") -> set[str]:
    """Dotted keys of the dict-typed fields of a config class (their values are single config values)."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys |= _dict_keys(tp, f"{prefix}{f.name}.")
        elif tp is dict or typing.get_origin(tp) is dict:
            keys.add(f"{prefix}{f.name}")
    return keys


DICT_KEYS.update(_dict_keys(RunConfig), _dict_keys(ScalingConfig))


def _is_leaf(key: str) -> bool:
    """A dict at this dotted key is one value (train.overrides, mix.extra_sets), not a section."""
    return key in DICT_KEYS


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not _is_leaf(key):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _unflatten(flat: dict[str, Any]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        *parents, name = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[name] = value
    return tree


# Keys that left the product for experiments/ (their variants register from a plugin now). Every
# config.yaml saved before holds them: at the value that meant "off" they are dropped; any other value
# is what the new keys now say, and a saved folder resumes once its command says it that way.
RETIRED = {
    "mix.swap_select": (0, lambda v: {"mix.extra_sets": {"swap": v}},
                        "plugins=[experiments.variants] mix.extra_sets={{swap: {v}}}"),
    "mix.arith_check": (False, lambda v: {"mix.filters": ["arith"]},
                        "plugins=[experiments.variants] mix.filters=[arith]"),
}


def _retired_is_off(key: str, value: Any) -> bool:
    off = RETIRED[key][0]
    try:
        return _convert(value, type(off), key, "") == off
    except ConfigError:
        return False


def retired_spelling(key: str, value: Any) -> str:
    return f"{key}={value} moved to experiments/ (experiments/README.md); write it as " \
           + RETIRED[key][2].format(v=value)


# Keys added after run folders were first saved, with the value that reproduces what runs did before
# the key existed (a saved config that lacks one is read with this value, not today's default).
BEFORE_ADDED = {"mix.drop_no_answer": True, "mix.drop_truncated": True, "mix.dedupe": True}

# Defaults changed to follow the original R3V protocol (docs/differences.md): the former value, named
# when a saved folder that holds it is refused, so its owner can pass it to resume.
FORMER_DEFAULTS = {
    "sample.max_new_tokens": 512,
    "prompt.sample_instruction": "",
    "mix.select_per_n": 2,
}


def migrate_saved(tree: dict) -> tuple[dict, list[str]]:
    """A run folder's saved config tree read in today's keys: retired keys dropped (off) or rewritten,
    keys added since filled with their value from before (BEFORE_ADDED); and a note per rewritten key,
    naming its new spelling."""
    tree, notes = _migrate_retired(tree)
    flat = _flatten(tree)
    for key, value in BEFORE_ADDED.items():
        if key.split(".")[0] in tree and key not in flat:
            flat[key] = value
    return _unflatten(flat), notes


def _migrate_retired(tree: dict) -> tuple[dict, list[str]]:
    flat, notes = _flatten(tree), []
    for key in [k for k in flat if k in RETIRED]:
        value = flat.pop(key)
        if _retired_is_off(key, value):
            continue
        notes.append(retired_spelling(key, value))
        for new_key, new_value in RETIRED[key][1](value).items():
            old = flat.get(new_key)
            if isinstance(new_value, dict):
                flat[new_key] = {**(old or {}), **new_value}
            elif isinstance(new_value, list):
                flat[new_key] = [*(old or []), *[x for x in new_value if x not in (old or [])]]
            else:
                flat[new_key] = new_value
    return _unflatten(flat), notes


SAVED_CONFIG_FIX = ("it is the folder's saved config: restore it from a copy, or start the folder over "
                    "(run.py --restart, or another run_name= / out=)")


def load_yaml(path: Path, fix: str = "fix the file") -> dict:
    """A YAML mapping from a file, or a ConfigError that names the file, the place and `fix`."""
    try:
        tree = yaml.safe_load(read_text(path, fix)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}not valid YAML ({getattr(e, 'problem', None) or e}); {fix}.") from None
    except FileError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys; {fix}.")
    return tree


def apply_yaml(cfg: Any, path: str | Path, *, saved: bool = False) -> set[str]:
    """Apply a YAML file (same nesting as the dataclasses) onto cfg; returns the dotted keys it set.
    saved: the file is a run folder's own config.yaml, whose retired keys are read in today's spelling."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file; give the path of a YAML config "
                          f"(examples in {REPO_ROOT / 'configs'}).")
    tree = load_yaml(path, SAVED_CONFIG_FIX if saved else "fix the file")
    if saved:
        tree, _ = migrate_saved(tree)
    valid = field_help(type(cfg))
    keys = set()
    for key, value in _flatten(tree).items():
        keys.add(ALIASES.get(key, key))
        _set(cfg, ALIASES.get(key, key), value, str(path), valid)
    return keys


@dataclass
class ParsedArgs:
    """What the command line asked for besides config values."""

    config: Any
    flags: set[str]
    keys: set[str] = field(default_factory=set)  # dotted keys set by --config files or key=value


def parse_args(cls: type, argv: list[str] | None = None, *, aliases: dict[str, str] | None = None,
               flags: dict[str, str] | None = None, prog: str = "", doc: str = "") -> ParsedArgs:
    """Build a `cls` instance from defaults < --config YAML < CLI overrides.

    aliases: extra `--flag` names mapped to dotted keys (merged with ALIASES).
    flags:   boolean switches that are not config values (e.g. {"restart": help}).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    all_aliases = {**ALIASES, **(aliases or {})}
    flags = flags or {}
    for i, tok in enumerate(argv):
        if tok in ("-h", "--help"):
            key = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
            print(format_help(cls, prog, doc, all_aliases, flags, key))
            raise SystemExit(0)

    pairs: list[tuple[str, str]] = []
    config_files: list[str] = []
    seen_flags: set[str] = set()
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            if name in flags:
                seen_flags.add(name)
                i += 1
                continue
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"command line: {tok} needs a value, e.g. {tok} VALUE.")
                value = argv[i + 1]
                i += 1
            if name == "config":
                config_files.append(value)
            else:
                pairs.append((name, value))
        elif "=" in tok:
            name, _, value = tok.partition("=")
            pairs.append((name, value))
        else:
            raise ConfigError(f"command line: cannot read '{tok}'; use key=value, --key value "
                              f"or --config FILE (see --help).")
        i += 1

    cfg = cls()
    keys: set[str] = set()
    for path in config_files:
        # A run folder's own config.yaml (`--config outputs/<run>/config.yaml` resumes that run): read it
        # as saved, in today's keys, with the values it had for keys added since (migrate_saved).
        keys |= apply_yaml(cfg, path, saved=Path(path).name == "config.yaml" and (Path(path).parent / "iter_0").is_dir())
    valid = field_help(cls)
    for name, value in pairs:
        key = all_aliases.get(name, name)
        _set(cfg, key, value, "command line", valid)
        keys.add(key)
        if name == "geoqa_dir" and hasattr(cfg, "data") and cfg.data.dataset == "geosynth":
            cfg.data.dataset = "geoqa"  # the seed's --geoqa_dir meant GeoQA (unless another format was named)
            keys.add("data.dataset")
    return ParsedArgs(cfg, seen_flags, keys)


# The settings of the R3V method itself (the paper's and the original code's knobs): listed first in
# their stage by --help. The rest is where and how fast it runs, data handling, and research variants.
R3V_KEYS = ("total_iters", "seed", "num_test_samples", "max_select_num", "train_select_mix",
            "data.dataset", "data.geoqa_dir", "model.base_model",
            "prompt.cot_instruction", "prompt.sample_instruction", "prompt.refine_instruction",
            "prompt.select_instruction", "sample.num_samples", "sample.temperature", "sample.top_p",
            "sample.top_k", "sample.max_new_tokens", "mix.include_qa", "mix.include_cot", "mix.include_refine",
            "mix.include_select", "mix.min_chars", "mix.select_sets", "mix.select_per_n", "mix.max_select_n",
            "train.finetuning_type", "train.learning_rate", "train.num_train_epochs", "train.global_batch_size",
            "train.lora_rank", "train.lora_alpha", "train.continue_from_previous")
STAGES = {"": "run", "data": "data", "model": "model", "prompt": "prompts", "sample": "sampling",
          "mix": "reflection mix", "train": "training (LLaMA-Factory)", "warmup": "warm-up SFT before iteration 0"}
HELP_WIDTH = 118


def _one_line(text: str, width: int) -> str:
    """The first sentence of a help text, cut at a word to `width` characters."""
    first = re.split(r"(?<!e\.g)(?<!i\.e)\. ", text)[0].rstrip(".") + "."
    if len(first) <= width:
        return first
    return first[:width - 1].rsplit(" ", 1)[0] + "…"


def format_help(cls: type, prog: str, doc: str, aliases: dict[str, str], flags: dict[str, str],
                key: str | None = None) -> str:
    """--help: the usage, switches and aliases, then every key on one line, grouped by stage with the
    R3V method's keys first (`--help KEY`: that key's whole help)."""
    keys = field_help(cls)
    if key is not None:
        key = aliases.get(key.lstrip("-"), key.lstrip("-"))
        if key not in keys:
            raise ConfigError(f"--help {key}: no such key; `python {prog} --help` lists them.")
        tname, default, help = keys[key]
        return f"{key} ({tname}, default {default!r})\n    {help}"
    lines = ["\n\n".join(doc.strip().split("\n\n")[:2]), "",
             f"usage: python {prog} [--config FILE.yaml] [key=value ...] [--flag ...]   (default < YAML < command line)"]
    lines += [f"  --{name:<28} {_one_line(help, HELP_WIDTH - 33)}" for name, help in flags.items()]
    lines.append("  seed's flags: " + ", ".join(f"--{a} = {k}" for a, k in aliases.items()))
    groups: dict[str, list[str]] = {}
    for name in keys:
        section = name.split(".")[0] if "." in name else ""
        groups.setdefault(section if section in STAGES else "", []).append(name)
    left = {name: f"  {name}={default!r}" if not isinstance(default, str) or len(default) < 24 else f"  {name}=..."
            for name, (_, default, _) in keys.items()}
    column = max(len(text) for text in left.values()) + 2
    for section, title in STAGES.items():
        names = sorted(groups.get(section, []), key=lambda n: n not in R3V_KEYS)  # stable: R3V's first
        if not names:
            continue
        lines += ["", f"{title}:"]
        lines += [f"{left[name]:<{column}}{_one_line(keys[name][2], HELP_WIDTH - column)}" for name in names]
    lines += ["", f"python {prog} --help KEY prints a key's whole help; docs/differences.md gives the original R3V's values."]
    return "\n".join(lines)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and not _is_leaf(f"{prefix}{key}"):
            changed += diff_configs(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changed


def _with_defaults(old: dict, defaults: dict, prefix: str = "") -> dict:
    """`old` with the keys it lacks taken from `defaults` (recursively)."""
    filled = dict(old)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value
        elif isinstance(value, dict) and isinstance(filled[key], dict) and not _is_leaf(f"{prefix}{key}"):
            filled[key] = _with_defaults(filled[key], value, f"{prefix}{key}.")
    return filled


# Keys that may change when a folder's steps are resumed: where and how fast the work runs (batch
# size, processes, nodes, attention kernels) does not change what its finished files hold, nor does
# which modules are imported (plugins: the variants a run uses are named by other keys), nor which
# metrics are computed (metrics.json is recomputed from the files at every run). Each entry
# point adds its own (run.py: total_iters, export_final; self_select_scaling.py: out).
RESULT_NEUTRAL = ("plugins", "metrics", "sample.batch_size", "sample.num_processes", "sample.accelerate_config", "sample.num_machines",
                  "sample.node_wait_s", "model.sdpa_backends", "train.num_gpus", "train.nnodes")


def config_changes(saved: Path, new: dict, allowed: tuple[str, ...],
                   defaults: dict | None = None) -> tuple[list[str], list[str]]:
    """What a reuse of a folder whose config is `saved` would be refused for: (the changed keys other than
    `allowed`, empty when it may be reused; notes on its retired keys and former defaults). Reads only."""
    old, notes = migrate_saved(load_yaml(saved, SAVED_CONFIG_FIX))
    if defaults:
        old = _with_defaults(old, defaults)
    changed = [c for c in diff_configs(old, new) if c.split(":")[0] not in allowed]
    old_flat = _flatten(old)
    for key, former in FORMER_DEFAULTS.items():
        if any(c.split(":")[0] == key for c in changed) and old_flat.get(key) == former:
            notes.append(f"{key}={former!r}, the default before it became the original R3V's "
                         f"(docs/differences.md): pass {key}={former!r} to resume it")
    return changed, [f"{saved} holds {note}." for note in notes]


def save_or_check(saved: Path, new: dict, allowed: tuple[str, ...], where: str, fix: str,
                  defaults: dict | None = None) -> bool:
    """Save a folder's config, or refuse to reuse the folder when other keys than `allowed` changed.

    Keys that the saved config lacks (options added to the suite after it was written) count as
    the value they had before (BEFORE_ADDED), else as their value in `defaults`. Returns True when an
    earlier config was found (a resume). `fix` tells the user what to do.
    """
    resumed = saved.is_file()
    if resumed:
        changed, notes = config_changes(saved, new, allowed, defaults)
        if changed:
            raise ConfigError(f"{where} holds results of another config; changed keys:\n  "
                              + "\n  ".join(changed) + f"\n{fix}" + "".join(f"\n{n}" for n in notes))
    from core.io import atomic_write_text

    atomic_write_text(saved, yaml.safe_dump(new, sort_keys=False))
    return resumed
