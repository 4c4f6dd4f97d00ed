"""Prompt builder: the one place where CoT, self-refine and self-select prompts are written.

Training and testing use these same functions, choices included (the reference code dropped the
choices from training prompts, REFERENCE.md §7.8). Texts are the reference's (REFERENCE.md §3) with
its typo "Predicion" fixed; every instruction is configurable through `PromptConfig`.
The `<image>` placeholder is not part of these texts: the sampler passes the image beside the text,
and the LLaMA-Factory writer prepends `<image>`.
"""

from __future__ import annotations

from core.config import PromptConfig
from data_gen.problem import LETTERS, Problem


def question_block(problem: Problem) -> str:
    """The question followed by its lettered choices, if any."""
    if not problem.choices:
        return problem.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(problem.choices))
    return f"{problem.question}\nChoices:\n{options}"


def cot_prompt(problem: Problem, cfg: PromptConfig, *, sampling: bool = False) -> str:
    """The CoT prompt. sampling=True (iteration 0) uses the original's longer instruction for
    multiple-choice questions when one is set (it asks for an option letter)."""
    use_sample = sampling and cfg.sample_instruction and problem.choices
    instruction = cfg.sample_instruction if use_sample else cfg.cot_instruction
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
