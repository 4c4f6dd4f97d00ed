"""Self-selection at test time: the model reads N of its own rationales and picks the answer.

The candidates of a question are shuffled with an RNG keyed by (seed, tag, question id), so the
position of the correct rationale carries no signal and the same seed gives the same prompts.
Test-side selection applies no filter (as in the reference): every chosen sample is shown,
including ones without an extractable answer. The select prompt is the one used in training
(data_gen/prompts.py), so train and test formats cannot drift apart (REFERENCE.md §7.8).
"""

from __future__ import annotations

import random

from core.config import PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from infer.sample import Item
from infer.sampling import stable_seed


def select_items(problems: list[Problem], records: dict[str, dict], indices: tuple[int, ...] | None,
                 seed: int, tag: str, prompt_cfg: PromptConfig) -> list[Item]:
    """One greedy select request per problem over its samples `indices` (None = all samples)."""
    items = []
    for p in problems:
        record = records.get(p.id)
        if record is None:
            raise KeyError(f"no samples for question {p.id!r} in the samples file this select step reads "
                           f"(<split>_samples.jsonl): it belongs to other data; delete it to sample again, "
                           f"or use a new run folder.")
        chosen = [record["predictions"][i] for i in (indices if indices is not None
                                                      else range(len(record["predictions"])))]
        random.Random(f"{seed}-select-{tag}-{p.id}").shuffle(chosen)
        items.append(Item(id=p.id, image=p.image, prompt=prompts.select_prompt(p, chosen, prompt_cfg),
                          seed=stable_seed(seed, tag, p.id), answer=p.answer,
                          choices=list(p.choices) if p.choices else None))
    return items
