"""Seeded top-k / top-p sampling whose draws depend only on (question seed, sample index, step).

`transformers` samples every row of a batch from one global RNG stream, so a question's rationales
change with the batch it happens to share and with the number of GPUs. Here each row carries its
own seed, and the draw is the Gumbel-max trick with noise from a counter-based hash of
(row seed, decode step, token id): argmax(logits / T + Gumbel) is an exact sample from
softmax(logits / T), restricted to the top-k / top-p survivors. No RNG state is consumed, so the
samples are the same for any batch size, batch order or GPU count (up to the logits themselves).

Speed: top-k is taken first and top-p is computed on the k survivors only (the stock top-p sorts
the whole 152k vocabulary every step: ~30 ms at 96 rows, DESIGN.md §5); the result is the same
distribution because top-p never keeps a token outside the top-k set.
"""

from __future__ import annotations

import hashlib

import torch

_MASK31 = 0x7FFFFFFF


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (run seed, split, question id, sample index), stable across runs."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & _MASK31


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer hash (the xor-shift-multiply finaliser), in int64 without overflow."""
    x = x & _MASK31
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK31
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK31
    return (x >> 16) ^ x


def uniform_noise(row_seeds: torch.Tensor, step: int, token_ids: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1) values keyed by (row seed, step, token id); shape of token_ids (rows, n)."""
    h = _mix(row_seeds.to(torch.int64) ^ _mix(torch.full_like(row_seeds, step, dtype=torch.int64) + 0x9E3779B))
    h = _mix(h.unsqueeze(1) ^ _mix(token_ids.to(torch.int64) + 0x3C6EF372))
    return (h.to(torch.float64) + 0.5) / float(_MASK31 + 1)


def sample_tokens(logits: torch.Tensor, row_seeds: torch.Tensor, step: int, *, temperature: float,
                  top_k: int, top_p: float) -> torch.Tensor:
    """One token id per row, sampled from the top-k / top-p filtered softmax(logits / temperature)."""
    logits = logits.float()
    k = min(top_k if top_k > 0 else logits.shape[-1], logits.shape[-1])
    values, ids = torch.topk(logits, k, dim=-1)  # sorted, descending
    values = values / temperature
    if top_p < 1.0:
        probs = torch.softmax(values, dim=-1)
        # Drop a token when the mass of the tokens strictly before it already reaches top_p
        # (so the first token always stays), as in transformers' TopPLogitsWarper.
        before = torch.cumsum(probs, dim=-1) - probs
        values = values.masked_fill(before >= top_p, float("-inf"))
    u = uniform_noise(row_seeds, step, ids)
    gumbel = -torch.log(-torch.log(u)).to(values.dtype)
    choice = torch.argmax(values + gumbel, dim=-1)
    return ids.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


class SeededSampler:
    """A `transformers` logits processor that makes the sampled token the only allowed one.

    Pass it to `generate(..., do_sample=True, temperature=1.0, top_k=0, top_p=1.0)`; the stock
    warpers are then no-ops and the multinomial draw has a single candidate with probability 1.
    `row_seeds` holds one seed per output row, in generate's row order (question-major: the K
    samples of question 0, then of question 1, ...).
    """

    def __init__(self, row_seeds: torch.Tensor, prompt_length: int, *, temperature: float,
                 top_k: int, top_p: float) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}; use greedy mode instead.")
        self.row_seeds = row_seeds
        self.prompt_length = prompt_length
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        if self.row_seeds.device != scores.device:
            self.row_seeds = self.row_seeds.to(scores.device)  # once, not every step
        tokens = sample_tokens(scores, self.row_seeds, step, temperature=self.temperature, top_k=self.top_k,
                               top_p=self.top_p)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, tokens.unsqueeze(1), 0.0)
        return out
