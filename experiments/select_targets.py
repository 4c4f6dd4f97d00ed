"""Self-select targets of the GeoSynth research, registered by name (not part of R3V).

R3V trains self-select items on the direct answer, "Answer: B" (mix.select_target=answer, the product's
own). These targets make the select output spell out a check first; a run names one with
`plugins=[experiments.variants] mix.select_target=NAME`:

    pointer  "Prediction k is correct.\nAnswer: B", naming a correct candidate first (the answer is then
             copied from a candidate instead of recomputed)
    check    one line per candidate naming the option whose value it computed and the answer it gave,
             "Prediction 1: computed B, answered C.", then "Answer: B"
    value    one line per candidate writing the value it computed, then the option with that value,
             "Prediction 1: 56° is option B.", then "Answer: B" (free-form questions get check lines)
    table    value lines after a first line listing the options value first, "Options: 28° is A,
             56° is B, ...", with lines "Prediction 1: 56° is B."

Test-time answers are read from the answer line in every case. What each did: experiments/results_log.md.
"""

from __future__ import annotations

from data_gen.problem import Problem
from data_gen.prompts import answer_target
from eval.answers import computed_value_text, derived_option, extract_answer, option_of_value, option_value_texts
from experiments.diagnostics import options_table
from mix.reflection import SELECT_TARGETS, Candidate


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


@SELECT_TARGETS.register("pointer")
def pointer(problem: Problem, chosen: list[Candidate]) -> str:
    """The first correct candidate as listed (positions are shuffled)."""
    return pointer_target(problem, 1 + next(i for i, c in enumerate(chosen) if c.correct))


@SELECT_TARGETS.register("check")
def check(problem: Problem, chosen: list[Candidate]) -> str:
    """Each candidate's computed option and answer, read by eval.answers."""
    return check_target(problem, [(derived_option(c.text, problem.choices) if problem.choices else None,
                                   extract_answer(c.text, problem.choices)) for c in chosen])


def _values(problem: Problem, chosen: list[Candidate], table: bool) -> str:
    if not problem.choices:  # free form: the value is the answer, so the check lines say it
        return check_target(problem, [(None, extract_answer(c.text, None)) for c in chosen])
    values = [computed_value_text(c.text) for c in chosen]
    return value_target(problem, [(v, option_of_value(v, problem.choices) if v else None) for v in values],
                        option_value_texts(problem.choices) if table else None)


@SELECT_TARGETS.register("value")
def value(problem: Problem, chosen: list[Candidate]) -> str:
    """Each candidate's value, then its option."""
    return _values(problem, chosen, table=False)


@SELECT_TARGETS.register("table")
def table(problem: Problem, chosen: list[Candidate]) -> str:
    """The options value first, then each candidate's value and its letter."""
    return _values(problem, chosen, table=True)
