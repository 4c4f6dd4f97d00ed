"""The requests the engine reads: CoT prompts, and self-selection over a question's own samples.

Self-selection at test time: the model reads N of its own rationales and picks the answer. The
candidates of a question are shuffled with an RNG keyed by (seed, tag, question id), so the
position of the correct rationale carries no signal and the same seed gives the same prompts.
Each select request carries the order in which its candidates were shown (`meta["shown"]`: the
sample indices, as listed), and the engine copies it into the record.
Test-side selection applies no filter (as in the reference): every chosen sample is shown,
including ones without an extractable answer. The select prompt is the one used in training
(data_gen/prompts.py), so train and test formats cannot drift apart (REFERENCE.md §7.8).
"""

from __future__ import annotations

import random

from core.config import PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from infer.generate import Request
from infer.sampling import stable_seed


def cot_items(problems: list[Problem], prompt_cfg: PromptConfig, seed: int, tag: str, *,
              sampling_prompt: bool = False) -> list[Request]:
    """CoT requests for problems; each question's seed is keyed by (run seed, tag, id)."""
    return [Request(p.id, p.image, prompts.cot_prompt(p, prompt_cfg, sampling=sampling_prompt),
                    stable_seed(seed, tag, p.id)) for p in problems]


def select_items(problems: list[Problem], records: dict[str, dict], indices: tuple[int, ...] | None,
                 seed: int, tag: str, prompt_cfg: PromptConfig) -> list[Request]:
    """One greedy select request per problem over its samples `indices` (None = all samples)."""
    items = []
    for p in problems:
        record = records.get(p.id)
        if record is None:
            raise KeyError(f"no samples for question {p.id!r} in the samples file this select step reads "
                           f"(<split>_samples.jsonl): it belongs to other data; delete it to sample again, "
                           f"or use a new run folder.")
        shown = list(indices if indices is not None else range(len(record["predictions"])))
        # Shuffling the indices moves them exactly as shuffling the texts did (shuffle depends only on
        # the list's length and the RNG), so prompts written before `shown` existed stay byte-identical.
        random.Random(f"{seed}-select-{tag}-{p.id}").shuffle(shown)
        chosen = [record["predictions"][i] for i in shown]
        items.append(Request(p.id, p.image, prompts.select_prompt(p, chosen, prompt_cfg),
                             stable_seed(seed, tag, p.id), meta={"shown": shown}))
    return items
