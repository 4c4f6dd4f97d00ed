"""experiments.drills: arithmetic drill items drawn from the steps of GeoSynth gold rationales."""

import re

import pytest

from experiments.drills import _write, arithmetic_items, templates
from data_gen.geosynth import make_item
from data_gen.problem import Problem
from experiments.arithmetic import arithmetic_steps, evaluate, wrong_steps


def geosynth_problems(n: int) -> list[Problem]:
    problems = []
    for i in range(n):
        r = make_item(5, "train", i)[0]
        problems.append(Problem(r["id"], r["image"], r["question"], tuple(r["choices"]), r["answer"], r["rationale"]))
    return problems


def test_drills_are_right_whole_and_new():
    problems = geosynth_problems(60)
    items = arithmetic_items(problems, 300, seed=1)
    assert len(items) == 300 and {it["kind"] for it in items} == {"drill"}
    gold_steps = {step.left for p in problems for step in arithmetic_steps(p.rationale)}
    new = 0
    for it in items:
        expression = it["prompt"].removeprefix("Compute ").removesuffix(".")
        assert it["response"].startswith(expression + " = ")
        steps = arithmetic_steps(it["response"])
        assert steps and wrong_steps(it["response"]) == 0, it["response"]
        value = evaluate(expression)
        assert value >= 0 and value.is_integer()
        assert it["image"] in {p.image for p in problems}
        new += expression not in gold_steps
    assert new > 200  # the operands are drawn afresh, not the problems' own
    # checked without the parser that built them: products and differences from 180 by integer arithmetic
    checked = 0
    for it in items:
        if m := re.fullmatch(r"Compute (\d+) × (\d+)\.", it["prompt"]):
            assert it["response"].endswith(f"= {int(m.group(1)) * int(m.group(2))}")
            checked += 1
        elif m := re.fullmatch(r"Compute 180° - (\d+)°\.", it["prompt"]):
            assert it["response"] == f"180° - {m.group(1)}° = {180 - int(m.group(1))}°"
            checked += 1
    assert checked >= 20
    assert arithmetic_items(problems, 300, seed=1) == items  # seeded
    assert arithmetic_items(problems, 300, seed=2) != items


def test_constants_stay_and_results_are_written_as_rationales_do():
    (problem,) = [p for p in geosynth_problems(60) if "(180° - " in p.rationale][:1]
    for it in arithmetic_items([problem], 20, seed=3):
        assert it["prompt"].startswith("Compute (180° - ") and it["response"].endswith("°")
    assert _write("8² + 15²", 289.0) == "8² + 15² = 64 + 225 = 289"
    assert _write("2 × 40°", 80.0) == "2 × 40° = 80°"
    assert _write("9 ÷ 2", 4.5) == "9 ÷ 2 = 4.5"  # a fallback gold step that is no whole number is not cut


def test_no_templates_is_a_clear_error():
    bare = Problem("p0", "/i.png", "x?", ("1", "2"), "A", "∠2 = ∠1 = 50°.\nAnswer: A")
    assert templates([bare]) == []
    with pytest.raises(ValueError, match="gold rationales with arithmetic steps"):
        arithmetic_items([bare], 5, seed=0)
