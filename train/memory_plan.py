"""A memory-aware training plan: the per-device batch and gradient checkpointing for the card at hand.

R3V's recipe trains with 2 sequences per device and gradient checkpointing on: it fits anywhere and
leaves most of a large card idle (issue #40: 1,851 training tokens/s for a 7B LoRA on an H100, against
5,261 with 8 per device and no checkpointing). With `train.per_device_batch_size=0` (auto), the plan
picks the largest per-device batch that fits the GPU's free memory, without checkpointing where it fits,
from the model's size, LoRA or full, and the longest tokenized item of the mix. The global batch (and so
the optimizer steps and the data) stays the same: gradient accumulation makes up the rest.

The estimate (bytes; L = the longest item in tokens, capped at cutoff_len, B = the per-device batch):

    weights      2 x params (bf16)           + full fine-tuning: 14 x params (gradients, AdamW states)
    activations  B x L x (a x layers x hidden + 12 x vocab)
                 a = 68 without checkpointing, 34 with it; 12 x vocab: the fp32 logits and their gradient
    overhead     4 GiB (CUDA context, allocator) and 10% of the card kept free

The coefficients are fitted to the issue's measurements of a 7B Qwen2-VL LoRA (H100 and H200, LLaMA-Factory
0.9.5, transformers 4.57.6): 19 GB at B = 0, about 9.5 GB more per sequence without checkpointing and
5.7 GB with it, for items of about 1,100 tokens. A plan that still runs out of memory is retried by
train.sft with half the per-device batch.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

GIB = 1 << 30
ACT_NO_CKPT = 68  # bytes per token, layer and hidden unit, activations kept for the backward pass
ACT_CKPT = 34  # with gradient checkpointing: the layer inputs, one layer recomputed at a time, LoRA inputs
LOGIT_BYTES = 12  # per token and vocabulary entry: fp32 logits, their gradient, the bf16 copy
FULL_STATE_BYTES = 14  # per parameter, full fine-tuning: gradients and AdamW's two moments
OVERHEAD = 4 * GIB
HEADROOM = 0.10  # of the card's free memory, kept free for fragmentation
MAX_PER_DEVICE = 16  # measured: 16 per device ran no faster than 8 on an H200 (issue #40)
REFERENCE = (2, True)  # R3V's recipe: 2 per device, gradient checkpointing on


@dataclass(frozen=True)
class ModelShape:
    params: int
    layers: int
    hidden: int
    vocab: int

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelShape":
        """From a model folder's config.json (its text_config where it has one) and its safetensors
        headers (the parameter count, read without loading a weight)."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        text = {**config, **(config.get("text_config") or {})}
        return cls(params=count_parameters(folder), layers=int(text["num_hidden_layers"]),
                   hidden=int(text["hidden_size"]), vocab=int(text["vocab_size"]))


def count_parameters(folder: Path) -> int:
    """Parameters in a folder's *.safetensors files, from their headers."""
    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                n = 1
                for dim in tensor["shape"]:
                    n *= dim
                total += n
    return total


def estimate_bytes(shape: ModelShape, finetuning_type: str, per_device: int, seq_len: int,
                   checkpointing: bool) -> int:
    """Peak GPU memory of one training process (the module docstring's estimate)."""
    fixed = 2 * shape.params + (FULL_STATE_BYTES * shape.params if finetuning_type == "full" else 0)
    per_token = (ACT_CKPT if checkpointing else ACT_NO_CKPT) * shape.layers * shape.hidden + LOGIT_BYTES * shape.vocab
    return int(fixed + per_device * seq_len * per_token + OVERHEAD)


@dataclass
class TrainPlan:
    per_device: int
    checkpointing: bool
    estimate_gib: float
    budget_gib: float
    why: str

    def as_dict(self) -> dict:
        return asdict(self)


def plan(shape: ModelShape, free_bytes: int, finetuning_type: str, seq_len: int, global_batch: int,
         world_size: int) -> TrainPlan:
    """The largest per-device batch (a power of two, at most MAX_PER_DEVICE and the global batch's share
    of one process) that fits `free_bytes` less the headroom: without gradient checkpointing when 2 or
    more fit so, else with it; 1 with checkpointing when nothing fits (the OOM retry then says so)."""
    budget = free_bytes * (1 - HEADROOM)
    share = max(1, global_batch // max(1, world_size))
    sizes = [b for b in (16, 8, 4, 2, 1) if b <= min(MAX_PER_DEVICE, share)]

    def fits(b: int, ckpt: bool) -> bool:
        return estimate_bytes(shape, finetuning_type, b, seq_len, ckpt) <= budget

    for ckpt in (False, True):
        for b in sizes:
            if fits(b, ckpt) and (ckpt or b >= 2 or share == 1):
                return TrainPlan(b, ckpt, round(estimate_bytes(shape, finetuning_type, b, seq_len, ckpt) / GIB, 1),
                                 round(budget / GIB, 1), f"the largest per-device batch that fits "
                                 f"{budget / GIB:.1f} GiB for items of up to {seq_len} tokens"
                                 + (" with gradient checkpointing" if ckpt else " without gradient checkpointing"))
    return TrainPlan(1, True, round(estimate_bytes(shape, finetuning_type, 1, seq_len, True) / GIB, 1),
                     round(budget / GIB, 1), f"nothing fits {budget / GIB:.1f} GiB by the estimate; trying 1 per "
                     f"device with gradient checkpointing")
