"""experiments/mix_variants.py: judge items (gold rationales with swapped answer letters; not part of R3V)."""

import pytest

from core.config import PromptConfig
from data_gen.problem import Problem
from experiments.mix_variants import judge_items


def test_judge_items_list_the_gold_rationale_and_letter_swapped_copies():
    """experiments.geosynth_model --judge_items: 3 candidates, the gold one at least once, the others differ
    from it only in the answer letter; the target is the gold answer; the same seed, the same items."""
    problems = [Problem(f"p{i}", "/i.png", f"x{i}?", ("20°", "40°", "50°", "80°"), "B",
                        rationale="x = 20° + 20° = 40°.\nAnswer: B") for i in range(6)]
    items = judge_items(problems, PromptConfig(), 60, seed=3)
    assert items == judge_items(problems, PromptConfig(), 60, seed=3)
    assert len(items) == 60 and {it["id"].split("-")[2] for it in items[:6]} == {p.id for p in problems}
    wrong_counts, majority_wrong = set(), 0
    for it in items:
        assert it["kind"] == "select" and it["response"] == "Answer: B"
        listed = [line for line in it["prompt"].splitlines() if line.startswith("Answer: ")]
        assert len(listed) == 3 and listed.count("Answer: B") >= 1
        assert listed == [f"Answer: {x}" for x in it["answers"]]  # the letters as listed, for experiments.select_judge_probe
        wrong = [line for line in listed if line != "Answer: B"]
        wrong_counts.add(len(wrong))
        majority_wrong += len(wrong) == 2 and wrong[0] == wrong[1]
        assert it["prompt"].count("x = 20° + 20° = 40°.") == 3
    assert wrong_counts == {0, 1, 2} and majority_wrong > 0
    two = judge_items([Problem("t", "/i.png", "y?", ("yes", "no"), "A", rationale="so yes\nAnswer: A")], PromptConfig(), 12, 0)
    assert all(it["answers"].count("A") >= 1 and set(it["answers"]) <= {"A", "B"} for it in two)  # two options: one wrong letter at most
    with pytest.raises(ValueError, match="judge items need"):
        judge_items([Problem("f", "/i.png", "n?", None, "7", rationale="7\nAnswer: 7")], PromptConfig(), 2, 0)
