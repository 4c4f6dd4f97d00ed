"""Mix variants of the GeoSynth research that are not part of R3V.

judge_items: self-select items built from gold rationales with swapped answer letters, taught to a
from-scratch base model (`python -m experiments.geosynth_model --judge_items N`) and measured by
`python -m experiments.select_judge_probe`.
"""

from __future__ import annotations

import random

from core.config import PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from mix.reflection import letter_swap_set


def judge_items(problems: list[Problem], prompt_cfg: PromptConfig, num_items: int, seed: int) -> list[dict]:
    """Self-select items from gold rationales, for a from-scratch model's pretraining (not part of R3V:
    experiments.geosynth_model --judge_items; the paper's 7B model brings this judgement from its own).

    Each item lists 3 candidates in random order: the gold rationale at least once, and 0-2 copies
    whose last line names another option ("Answer: C" after computing B's value: the value-to-letter
    binding error the small model makes most, docs/results.md). Two such copies name the same wrong
    letter half of the time, so the wrong answer can hold the majority. Target: the gold answer;
    "answers" lists the letters the candidates end with, as listed.
    Multiple-choice problems with a rationale ending in "Answer: <letter>" only."""
    usable = [p for p in problems if p.choices and p.rationale and p.rationale.rstrip().endswith(f"Answer: {p.answer}")]
    if not usable:
        raise ValueError("judge items need multiple-choice problems whose gold rationale ends with "
                         "'Answer: <letter>' (GeoSynth data has them)")
    rng = random.Random(f"{seed}-judge")
    order = rng.sample(usable, len(usable))  # every problem once before any repeats
    items = []
    for n in range(num_items):
        p = order[n % len(order)]
        gold = p.rationale.rstrip()
        pairs = letter_swap_set(gold, p.answer, len(p.choices), rng)
        rng.shuffle(pairs)
        candidates, letters = [t for t, _ in pairs], [x for _, x in pairs]
        items.append({"kind": "select", "id": f"judge-{n}-{p.id}", "image": p.image,
                      "prompt": prompts.select_prompt(p, candidates, prompt_cfg),
                      "response": prompts.answer_target(p), "answers": letters})
    return items
