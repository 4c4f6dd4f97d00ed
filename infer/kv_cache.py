"""A KV cache that grows into preallocated room instead of concatenating at every decode step.

transformers' DynamicCache appends each step's keys and values with `torch.cat`: 2 x layers new
tensors a step, each a copy of the whole cache in a fresh allocation (the sampler benchmark's profile
put 39% of the CPU time of a 7B decode in `aten::cat`). GrowingCache keeps, per layer, a buffer with
room for `reserve` more tokens and exposes the filled part as a view, so a decode step writes one
token per layer in place. The attention sees exactly the tensors DynamicCache would give it (same
values, same length), so generation is unchanged.
"""

from __future__ import annotations

from functools import partial

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """DynamicLayer whose `keys` / `values` are views of larger buffers (room for `reserve` tokens)."""

    def __init__(self, reserve: int = 256):
        super().__init__()
        self.reserve = max(1, reserve)
        self.length = 0
        self._k = self._v = None

    def lazy_initialization(self, key_states: torch.Tensor):
        super().lazy_initialization(key_states)
        self.length = 0

    def _refit(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        """Copy keys/values into new buffers with `room` free positions after them."""
        b, h, n, d = keys.shape
        self._k = keys.new_empty((b, h, n + room, d))
        self._v = values.new_empty((b, h, n + room, values.shape[-1]))
        self._k[:, :, :n].copy_(keys)
        self._v[:, :, :n].copy_(values)
        self.length = n
        self._expose()

    def _expose(self) -> None:
        self.keys = self._k[:, :, :self.length]
        self.values = self._v[:, :, :self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, cache_kwargs=None):
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        new = key_states.shape[-2]
        if self.length and key_states.shape[0] != self._k.shape[0]:
            raise ValueError(f"GrowingLayer: {key_states.shape[0]} new rows for a cache of {self._k.shape[0]}; "
                             f"repeat or select the cache's rows first (batch_repeat_interleave / batch_select_indices).")
        if self._k is None or self.length + new > self._k.shape[-2]:
            if self._k is None or self.length == 0:
                self._refit(key_states, value_states, self.reserve)
                return self.keys, self.values
            self._refit(self.keys, self.values, max(self.reserve, new))
        self._k[:, :, self.length:self.length + new].copy_(key_states)
        self._v[:, :, self.length:self.length + new].copy_(value_states)
        self.length += new
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def crop(self, max_length: int) -> None:
        if max_length < 0:
            max_length = self.length - abs(max_length)
        if self.length > max_length:
            self.length = max_length
            self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._refit(self.keys.repeat_interleave(repeats, dim=0), self.values.repeat_interleave(repeats, dim=0),
                        self.reserve)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._refit(self.keys[indices], self.values[indices], self.reserve)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.length:
            self._refit(self.keys.index_select(0, beam_idx.to(self._k.device)),
                        self.values.index_select(0, beam_idx.to(self._v.device)), self._k.shape[-2] - self.length)

    def offload(self):
        raise NotImplementedError("GrowingCache does not offload; use transformers' DynamicCache(offloading=True).")

    def prefetch(self):
        raise NotImplementedError("GrowingCache does not offload; use transformers' DynamicCache(offloading=True).")

    def reset(self) -> None:
        self.keys = self.values = self._k = self._v = None
        self.length = 0
        self.is_initialized = False


class GrowingCache(DynamicCache):
    """A DynamicCache (for generate's purposes) made of GrowingLayers with room for `reserve` tokens."""

    def __init__(self, reserve: int = 256):
        Cache.__init__(self, layer_class_to_replicate=partial(GrowingLayer, reserve))
