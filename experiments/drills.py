"""Arithmetic drill items for a from-scratch base model (experiments.geosynth_model --arith_items; not part of R3V).

A pretrained VLM such as Qwen2-VL-7B can compute; a model trained from random weights on a few
thousand rationales cannot: the shipped 8M GeoSynth model writes about 40% of its arithmetic steps
wrong, and R3V's loop does not change that (experiments/results_log.md, "Session 11"). A judge of candidates
that cannot redo a step cannot catch a wrong one, so self-select has nothing to add to a vote there.
Drill items give the base model the arithmetic a pretrained model brings.

Each item takes one arithmetic step of a train problem's gold rationale as its template
("2 × 8 ÷ 4") and draws new operands for it: numbers of the same kind (the constants 2, 90, 180 and
360 kept, the others drawn near their size), until the result is a whole non-negative number, as
in GeoSynth's own rationales. So the drills cover the kinds of computation the rationales need
without copying any problem's numbers. The prompt is "Compute 2 × 9 ÷ 3." beside that problem's
figure; the response writes the step as the rationales do (a ° on the result of angles), squares
expanded first:

    Compute 8² + 15².   ->   8² + 15² = 64 + 225 = 289
"""

from __future__ import annotations

import random
import re

from data_gen.problem import Problem
from experiments.arithmetic import arithmetic_steps, evaluate

CONSTANTS = {"2", "90", "180", "360"}
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_SQUARE_RE = re.compile(r"(\d+)²")


def _draw(number: str, rng: random.Random) -> str:
    if number in CONSTANTS or "." in number:
        return number
    value = int(number)
    return str(rng.randint(max(1, value // 2), max(3, value * 2)))


def _write(expression: str, value: float) -> str:
    """The step as the rationales write it: squares expanded first ("8² + 15² = 64 + 225 = 289")."""
    result = (f"{int(value)}" if float(value).is_integer() else f"{value:.10g}") + ("°" if "°" in expression else "")
    if "²" not in expression:
        return f"{expression} = {result}"
    expanded = _SQUARE_RE.sub(lambda m: str(int(m.group(1)) ** 2), expression)
    return f"{expression} = {expanded} = {result}"


def templates(problems: list[Problem]) -> list[tuple[Problem, str]]:
    """(problem, left side) of every arithmetic step of the gold rationales whose right side is a number."""
    found = []
    for p in problems:
        for step in arithmetic_steps(p.rationale or ""):
            if _NUMBER_RE.fullmatch(step.right.replace("°", "").strip()):
                found.append((p, step.left))
    return found


def arithmetic_items(problems: list[Problem], num_items: int, seed: int, tries: int = 50) -> list[dict]:
    """num_items drill items ({"kind": "drill", "id", "image", "prompt", "response"}), templates taken in a
    seeded order, every template once before any repeats."""
    pool = templates(problems)
    if not pool:
        raise ValueError("arithmetic drills need gold rationales with arithmetic steps (GeoSynth data has them)")
    rng = random.Random(f"{seed}-drills")
    order = rng.sample(pool, len(pool))
    items = []
    for n in range(num_items):
        problem, template = order[n % len(order)]
        for _ in range(tries):
            expression = _NUMBER_RE.sub(lambda m: _draw(m.group(0), rng), template)
            value = evaluate(expression)
            if value is not None and value >= 0 and float(value).is_integer():
                break
        else:
            expression, value = template, evaluate(template)  # the gold step itself
        items.append({"kind": "drill", "id": f"drill-{n}-{problem.id}", "image": problem.image,
                      "prompt": f"Compute {expression}.", "response": _write(expression, value)})
    return items
