"""Load a model and processor for generation: a base model, a LoRA adapter on it, or a full checkpoint.

    load(model_cfg, checkpoint=None)           the base model in model_cfg.base_model
    load(model_cfg, checkpoint="saves/iter1")  a LLaMA-Factory LoRA output folder (adapter on the
                                               base, merged for speed) or a full fine-tuned folder

bf16 on GPU, fp32 on CPU; SDPA attention unless flash-attention is installed. The tokenizer pads
on the left for batched generation (a load-time setting, not saved with the model).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checks import InputError
from core.config import ModelConfig
from core.io import FileError, read_json
from core.log import get_logger

log = get_logger("infer")


class ModelError(InputError):
    """A model path that cannot be loaded; the message says what was expected."""


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    device: torch.device
    description: str
    cfg: ModelConfig


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ModelError(f"model.dtype={name!r}: use auto, bfloat16, float16 or float32.") from None


def pick_attention(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def attention_context(cfg: ModelConfig, device: torch.device):
    """The SDPA kernels generation may use (a no-op on CPU or with another attention)."""
    import contextlib

    if device.type != "cuda" or not cfg.sdpa_backends.strip():
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    try:
        backends = [names[n.strip()] for n in cfg.sdpa_backends.split(",") if n.strip()]
    except KeyError as e:
        raise ModelError(f"model.sdpa_backends={cfg.sdpa_backends!r}: unknown kernel {e}; use a comma list "
                         f"of {', '.join(names)}.") from None
    return sdpa_kernel(backends, set_priority=True)


# config.json model_type values this project loads, trains (LLaMA-Factory's qwen2_vl template) and builds.
SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def check_model_dir(path: str | Path, what: str = "model.base_model") -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelError(f"{what}={str(path)!r}: no such folder. Pass a local model folder (e.g. "
                         f"--base_model /models/Qwen2-VL-7B-Instruct); nothing is downloaded.")
    if not (path / "config.json").is_file():
        if is_adapter_dir(path):
            raise ModelError(f"{what}={str(path)!r} is a LoRA adapter, not a model: give the base model here "
                             f"(the adapter goes to --ckpt_dir).")
        raise ModelError(f"{what}={str(path)!r} has no config.json: it is not a model folder.")
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise ModelError(f"{what}={str(path)!r}: config.json is not readable JSON ({e}).") from None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelError(f"{what}={str(path)!r} is a {model_type!r} model; this project runs "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)} (Qwen2-VL, Qwen2.5-VL).")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{what}={str(path)!r} has config.json but no weights (*.safetensors or *.bin): copy the "
                         f"whole model folder.")
    return path.resolve()


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def check_checkpoint(path: str | Path, what: str = "checkpoint") -> Path:
    """A folder to load on the base model: a LoRA adapter (adapter_config.json with its peft_type, and
    adapter weights) or a full model folder; anything else is refused with the fix. Returns it resolved."""
    ckpt = Path(path).expanduser().resolve()
    done = ckpt.parent / "train_done.json"
    redo = (f"; its training is marked done in {done}: delete that file and rerun to train it again" if done.is_file()
            else "; pass the folder LLaMA-Factory wrote (its output_dir) or a full model folder")
    if not ckpt.is_dir():
        raise ModelError(f"{what} {str(ckpt)!r}: no such folder{redo}.")
    if not is_adapter_dir(ckpt):
        if not (ckpt / "config.json").is_file():
            raise ModelError(f"{what} {str(ckpt)!r} holds neither a LoRA adapter (adapter_config.json) nor a full "
                             f"model (config.json){redo}.")
        return check_model_dir(ckpt, what)
    config = ckpt / "adapter_config.json"
    try:
        peft_type = read_json(config, f"it is not a PEFT adapter config{redo}").get("peft_type")
    except FileError as e:
        raise ModelError(str(e)) from None
    except AttributeError:  # valid JSON, not an object
        peft_type = None
    if not peft_type:
        raise ModelError(f"{config} has no peft_type: it is not a PEFT adapter config{redo}.")
    if not any(ckpt.glob("adapter_model.*")):
        raise ModelError(f"{what} {str(ckpt)!r} has adapter_config.json but no adapter weights "
                         f"(adapter_model.safetensors or .bin){redo}.")
    return ckpt


def load(cfg: ModelConfig, checkpoint: str | Path | None = None, device: torch.device | None = None) -> LoadedModel:
    """Load model + processor; `checkpoint` is an adapter folder or a full model folder."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    base = check_model_dir(cfg.base_model)
    ckpt = check_checkpoint(checkpoint) if checkpoint else None
    adapter = ckpt if ckpt is not None and is_adapter_dir(ckpt) else None
    weights = base if ckpt is None or adapter is not None else ckpt
    dtype = pick_dtype(cfg.dtype, device)
    attn = pick_attention(cfg.attn_implementation, device)

    from infer.masks import use_fast_masks

    use_fast_masks()
    model = AutoModelForImageTextToText.from_pretrained(str(weights), dtype=dtype, attn_implementation=attn)
    if adapter is not None:
        from peft import PeftModel

        # PeftModel.from_pretrained works across the pinned versions (model.load_adapter does not
        # with transformers 5.6 + peft 0.18, DESIGN.md §5); merging removes the LoRA overhead.
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.to(device).eval()

    # A full fine-tuned folder may carry its own processor files; otherwise use the base model's.
    proc_dir = weights if (weights / "preprocessor_config.json").is_file() else base
    processor = AutoProcessor.from_pretrained(str(proc_dir))
    processor.tokenizer.padding_side = "left"
    desc = f"{weights}" + (f" + adapter {adapter}" if adapter else "") + f" ({dtype}, {attn}, {device})"
    log.info("loaded %s", desc)
    return LoadedModel(model, processor, device, desc, cfg)
