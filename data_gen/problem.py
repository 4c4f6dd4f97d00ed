"""The `Problem` record every stage passes around, and option-letter helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Problem:
    """One question with a known final answer.

    id:        unique within its split; every join between stages goes through it.
    image:     absolute path of the image file.
    question:  the question text, without the choices (prompts add them).
    choices:   option texts for multiple choice, or None for free-form answers.
    answer:    the gold option letter for multiple choice, else the gold value as text.
    rationale: an optional gold step-by-step solution (GeoSynth; used only by the warm-up).
    problem_key: optional; items with one key are the same problem in other clothes (GeoSynth: its
               family, variant and numbers), held out together by the validation split.
    source:    where the item came from ("file:line"), for error messages.
    """

    id: str
    image: str
    question: str
    choices: tuple[str, ...] | None
    answer: str
    rationale: str = ""
    problem_key: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.choices)

    @property
    def answer_text(self) -> str:
        """The gold answer as written in the choices (or the free-form value)."""
        if self.choices:
            return self.choices[LETTERS.index(self.answer)]
        return self.answer


def letter(index: int) -> str:
    return LETTERS[index]
