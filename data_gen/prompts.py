"""Prompt builder: the one place where CoT, self-refine and self-select prompts are written.

Training and testing use these same functions, choices included (the reference code dropped the
choices from training prompts, REFERENCE.md §7.8). Texts are the reference's (REFERENCE.md §3) with
its typo "Predicion" fixed; every instruction is configurable through `PromptConfig`.
The `<image>` placeholder is not part of these texts: the sampler passes the image beside the text,
and the LLaMA-Factory writer prepends `<image>`.
"""

from __future__ import annotations

import re

from core.config import PromptConfig
from data_gen.problem import LETTERS, Problem


def question_block(problem: Problem) -> str:
    """The question followed by its lettered choices, if any."""
    if not problem.choices:
        return problem.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(problem.choices))
    return f"{problem.question}\nChoices:\n{options}"


def cot_prompt(problem: Problem, cfg: PromptConfig, *, sampling: bool = False) -> str:
    """The CoT prompt. sampling=True uses the longer iteration-0 instruction when one is set."""
    instruction = cfg.sample_instruction if sampling and cfg.sample_instruction else cfg.cot_instruction
    return f"{question_block(problem)}\n{instruction}"


def refine_prompt(problem: Problem, negative: str, cfg: PromptConfig) -> str:
    return f"{cot_prompt(problem, cfg)}\nModel's Prediction: {negative}\n{cfg.refine_instruction}"


def candidate_label(position: int) -> str:
    """How the select prompt introduces candidate `position` (1-based)."""
    return f"Model's Prediction {position}: "


def select_prompt(problem: Problem, candidates: list[str], cfg: PromptConfig) -> str:
    listed = "\n".join(f"{candidate_label(i)}{c}" for i, c in enumerate(candidates, 1))
    instruction = cfg.select_instruction if problem.choices else cfg.free_form_select_instruction
    return f"{cot_prompt(problem, cfg)}\n{listed}\n{instruction}"


def answer_target(problem: Problem) -> str:
    """The direct-answer target for QA and self-select items: "Answer: B" (or the value)."""
    return f"Answer: {problem.answer}"


POINTER = re.compile(r"\s*Prediction (\d+) is correct")


def pointer_target(problem: Problem, position: int) -> str:
    """mix.select_target=pointer: name the correct candidate (1-based, as listed), then answer."""
    return f"Prediction {position} is correct.\n{answer_target(problem)}"


def check_target(problem: Problem, rows: list[tuple[str | None, str | None]]) -> str:
    """mix.select_target=check: one line per candidate as listed, then the answer.

    rows: (the option whose value the candidate computed, the answer it gave) per candidate, None
    where there is none; multiple choice lines name both, free-form lines only the answer.
    """
    lines = []
    for pos, (computed, answered) in enumerate(rows, 1):
        said = f"answered {answered or 'nothing'}"
        lines.append(f"Prediction {pos}: computed {computed or 'no option'}, {said}." if problem.choices
                     else f"Prediction {pos}: {said}.")
    return "\n".join([*lines, answer_target(problem)])


def options_table(values: list[str]) -> str:
    """The options listed value first, as mix.select_target=table writes them: "28° is A, 56° is B"."""
    return ", ".join(f"{v} is {LETTERS[i]}" for i, v in enumerate(values))


def value_target(problem: Problem, rows: list[tuple[str | None, str | None]],
                 table: list[str] | None = None) -> str:
    """mix.select_target=value (multiple choice): one line per candidate as listed, writing the value it
    computed and then the option with that value, then the answer:
    "Prediction 1: 56° is option B." / "Prediction 2: 57° is no option." / "Prediction 3: no value."
    With table (mix.select_target=table: each option's value, in order), a first line lists the
    options value first, "Options: 28° is A, 56° is B, 124° is C, 34° is D.", and the candidate lines
    read "Prediction 1: 56° is B.": finding a value's letter is then a copy of what follows the same
    value earlier in the output.

    rows: (the value the candidate computed last, as written, or None; the letter of the option with
    that value, or None).
    """
    named = "{}" if table else "option {}"
    lines = [f"Options: {options_table(table)}."] if table else []
    for pos, (value, option) in enumerate(rows, 1):
        said = "no value" if value is None else f"{value} is {named.format(option) if option else 'no option'}"
        lines.append(f"Prediction {pos}: {said}.")
    return "\n".join([*lines, answer_target(problem)])


def read_pointer(output: str) -> int | None:
    """The candidate position a select output names first ("Prediction 2 is correct."), if any."""
    match = POINTER.match(output)
    return int(match.group(1)) if match else None
