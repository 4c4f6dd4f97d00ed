"""Cheaper attention for SDPA during generation: the mask (same values as transformers' own) and
grouped-query decode steps without copying the KV cache.

transformers 4.57 builds the 4D causal+padding mask of every forward pass by `torch.vmap` over a
per-element mask function (`masking_utils.sdpa_mask_recent_torch`). With left-padded batches the
mask is needed at every decode step, and that construction dominated the profile of our sampler
(52% of CPU time on the tiny model: `bench.sampler --profile`). The plain causal+padding case is two
broadcast comparisons, so it is computed directly here; every other case (sliding windows, custom
mask functions) still goes to transformers' function. The result is the identical boolean mask
(tests/test_sampler.py compares them).

Decode steps: with a mask (any left-padded batch), transformers' `sdpa_attention_forward` cannot use
SDPA's grouped-query mode and copies every layer's keys and values `num_key_value_groups` times (7x
for Qwen2-VL-7B) at every step. For one query token per row, the query heads that share a KV head
can instead be laid out as that KV head's rows: (batch, kv_heads, groups, head_dim) against
(batch, kv_heads, kv_len, head_dim), the mask broadcast over them. Same scores, same softmax, no copy.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import masking_utils
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import causal_mask_function, prepare_padding_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

_hf_sdpa_mask = masking_utils.sdpa_mask


def causal_padding_mask(batch_size: int, cache_position: torch.Tensor, kv_length: int, kv_offset: int = 0,
                        mask_function=causal_mask_function, attention_mask: torch.Tensor | None = None,
                        local_size: int | None = None, allow_is_causal_skip: bool = True, **kwargs):
    """Drop-in for transformers' `sdpa_mask`: (batch, 1, q, kv) bool, True = attend, or None."""
    if mask_function is not causal_mask_function or local_size is not None:
        return _hf_sdpa_mask(batch_size=batch_size, cache_position=cache_position, kv_length=kv_length,
                             kv_offset=kv_offset, mask_function=mask_function, attention_mask=attention_mask,
                             local_size=local_size, allow_is_causal_skip=allow_is_causal_skip, **kwargs)
    q_length = cache_position.shape[0]
    padding_mask = prepare_padding_mask(attention_mask, kv_length, kv_offset, _slice=False)
    if allow_is_causal_skip and masking_utils._ignore_causal_mask_sdpa(padding_mask, q_length, kv_length,
                                                                       kv_offset, local_size):
        return None  # no padding: SDPA's is_causal does it (and keeps the flash kernel eligible)
    kv_index = torch.arange(kv_length, device=cache_position.device) + kv_offset
    mask = (kv_index[None, :] <= cache_position[:, None])[None, None]  # (1, 1, q, kv)
    if padding_mask is not None:
        mask = mask & padding_mask[:, kv_index].bool()[:, None, None, :]
    return mask.expand(batch_size, 1, q_length, kv_length)


def grouped_decode_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    """Drop-in for transformers' `sdpa_attention_forward`; decode steps with a mask skip the KV copy."""
    groups = getattr(module, "num_key_value_groups", 1)
    if (query.shape[2] != 1 or groups == 1 or attention_mask is None or attention_mask.ndim != 4
            or dropout or kwargs.get("output_attentions") or kwargs.get("head_mask") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    # Query head h uses KV head h // groups (transformers' repeat_kv), so the heads split as (kv_heads, groups).
    grouped = query.reshape(batch, kv_heads, groups, dim)
    mask = attention_mask[:, :, :, :key.shape[-2]]  # (batch, 1, 1, kv), broadcast over heads and groups
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def use_fast_masks() -> None:
    """Route SDPA masks and attention of this process through the functions above (inference only;
    training runs in LLaMA-Factory's own process and is untouched; other cases fall through)."""
    masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", causal_padding_mask)
    ALL_ATTENTION_FUNCTIONS.register("sdpa", grouped_decode_sdpa)


@contextmanager
def stock_decode_attention():
    """transformers' own SDPA attention (KV copied per group) inside the block; benchmarks compare."""
    ALL_ATTENTION_FUNCTIONS.register("sdpa", sdpa_attention_forward)
    try:
        yield
    finally:
        ALL_ATTENTION_FUNCTIONS.register("sdpa", grouped_decode_sdpa)
