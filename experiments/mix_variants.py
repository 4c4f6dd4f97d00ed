"""Mix variants of the GeoSynth research that are not part of R3V.

Registered by name when imported (plugins=[experiments.variants]):
- mix.extra_sets={swap: N}: N select sets per question of one own correct rationale and copies of it
  whose last letter names another option (was mix.swap_select=N).
- mix.filters=[arith]: drop a correct rationale that writes a wrong arithmetic step (experiments.arithmetic;
  right letter, wrong work; was mix.arith_check=true).
judge_items: self-select items built from gold rationales with swapped answer letters, taught to a
from-scratch base model (`python -m experiments.geosynth_model --judge_items N`) and measured by
`python -m experiments.select_judge_probe`.
"""

from __future__ import annotations

import random

from core.config import MixConfig, PromptConfig
from data_gen import prompts
from data_gen.problem import LETTERS, Problem
from eval.answers import derived_value_matches
from experiments.arithmetic import wrong_steps
from mix.reflection import EXTRA_SETS, FILTERS, Candidate, select_item


@FILTERS.register("arith")
def wrong_arithmetic(text: str, answer: str | None, correct: bool, problem: Problem | None) -> str | None:
    """A correct rationale with a wrong arithmetic step ("2 × 8 ÷ 4 = 3") is not trained on."""
    return "wrong arithmetic step" if correct and wrong_steps(text) else None


def letter_swap_set(text: str, answer: str, num_options: int, rng: random.Random) -> list[tuple[str, str]]:
    """Three candidates from a rationale that ends in its answer letter, as (text, letter), unshuffled:
    the rationale at least once, the others copies whose last letter names another option (0-2 of
    them, two naming the same wrong letter half of the time, so a wrong answer can hold the majority)."""
    others = [c for c in LETTERS[:num_options] if c != answer]
    num_wrong = rng.randrange(min(3, len(others) + 1))  # two-option problems: at most one wrong letter
    wrong = rng.sample(others, num_wrong)
    if num_wrong == 2 and rng.random() < 0.5:
        wrong = [wrong[0], wrong[0]]
    stem = text[:-len(answer)]
    return [(stem + letter, letter) for letter in [answer] * (3 - num_wrong) + wrong]


@EXTRA_SETS.register("swap")
def swap_select_items(problem: Problem, pos: list[Candidate], rng: random.Random, count: int, cfg: MixConfig,
                      prompt_cfg: PromptConfig) -> list[dict]:
    """mix.extra_sets={swap: N} (not in R3V; was mix.swap_select=N): select sets made from the question's
    own correct rationales.

    Each set is one positive that ends in "Answer: <its letter>" and whose computed value is the value
    of that option (eval.answers.derived_value_matches, whatever mix.value_check says), listed with
    copies of it whose last letter names another option (letter_swap_set). The copies share the
    positive's reasoning, so the set can only be judged by reading the value and finding its option:
    the check this model's select answers miss (experiments/results_log.md). Up to N sets per
    question, cycling over the usable positives, newest first; labelled like the other select items.
    """
    sources = [c for c in pos if c.text.rstrip().endswith(f"Answer: {problem.answer}")
               and problem.choices and derived_value_matches(c.text, problem.answer, problem.choices) is True]
    items = []
    for j in range(count if sources else 0):
        src = sources[j % len(sources)]
        chosen = [Candidate(text, letter == problem.answer, src.iteration, letter)
                  for text, letter in letter_swap_set(src.text.rstrip(), problem.answer, len(problem.choices), rng)]
        items.append(select_item(problem, chosen, rng, f"select-{problem.id}-swap{j + 1}", cfg, prompt_cfg))
    return items


def judge_items(problems: list[Problem], prompt_cfg: PromptConfig, num_items: int, seed: int) -> list[dict]:
    """Self-select items from gold rationales, for a from-scratch model's pretraining (not part of R3V:
    experiments.geosynth_model --judge_items; the paper's 7B model brings this judgement from its own).

    Each item lists 3 candidates in random order: the gold rationale at least once, and 0-2 copies
    whose last line names another option ("Answer: C" after computing B's value: the value-to-letter
    binding error the small model makes most, experiments/results_log.md). Two such copies name the same wrong
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
