"""A cheaper attention mask for SDPA during generation (same values as transformers' own).

transformers 4.57 builds the 4D causal+padding mask of every forward pass by `torch.vmap` over a
per-element mask function (`masking_utils.sdpa_mask_recent_torch`). With left-padded batches the
mask is needed at every decode step, and that construction dominated the profile of our sampler
(52% of CPU time on the tiny model: `bench.sampler --profile`). The plain causal+padding case is two
broadcast comparisons, so it is computed directly here; every other case (sliding windows, custom
mask functions) still goes to transformers' function. The result is the identical boolean mask
(tests/test_sampler.py compares them).
"""

from __future__ import annotations

import torch
from transformers import masking_utils
from transformers.masking_utils import causal_mask_function, prepare_padding_mask

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


def use_fast_masks() -> None:
    """Route SDPA masks of this process through `causal_padding_mask` (inference only; training runs
    in LLaMA-Factory's own process and is untouched)."""
    masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", causal_padding_mask)
