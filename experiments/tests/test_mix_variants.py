"""experiments/mix_variants.py: the swap extra sets, the arith filter and judge items (not part of R3V)."""

import re
from collections import Counter

import pytest

import experiments.variants  # noqa: F401  (registers the variants, as plugins=[experiments.variants] does)
from core.config import ConfigError, MixConfig, PromptConfig
from data_gen.problem import Problem
from experiments.mix_variants import judge_items
from mix.reflection import build_mix
from tests.test_reflection import LONG, PCFG, neg, pos, problem, rec


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


def test_arith_filter_drops_positives_with_a_wrong_step_only_when_asked():
    """mix.filters=[arith] (was mix.arith_check=true)."""
    sloppy = (f"[sloppy] x = 5 + 5 = 20{LONG}. Answer: B", "B", True, False)   # right letter, wrong step
    careful = (f"[careful] x = 10 + 10 = 20{LONG}. Answer: B", "B", True, False)
    wrong_neg = (f"[neg] x = 5 + 5 = 30{LONG}. Answer: C", "C", False, False)   # negatives are kept
    probs = [problem(0)]
    pool = [(0, [rec("p0", [sloppy, careful, wrong_neg])])]
    plain, plain_stats = build_mix(probs, pool, 1, 0, MixConfig(cot_per_question=3), PCFG)
    checked, stats = build_mix(probs, pool, 1, 0, MixConfig(cot_per_question=3, filters=["arith"]), PCFG)
    cot = lambda items: sorted(it["response"][:9] for it in items if it["kind"] == "cot")
    assert cot(plain) == ["[careful]", "[sloppy] "]
    assert cot(checked) == ["[careful]"]
    assert stats["candidates"]["wrong arithmetic step"] == 1 and "wrong arithmetic step" not in plain_stats["candidates"]
    assert stats["candidates"]["kept negative"] == 1
    assert not any("[sloppy]" in it["prompt"] + it["response"] for it in checked)


def test_swap_select_sets_come_from_own_positives_with_letter_swapped_copies():
    """mix.extra_sets={swap: N} (not in R3V; was mix.swap_select=N): sets of one own positive (ending in its
    letter, value checked) and copies naming another option; without it the mix is as it was; labelled
    like select items."""
    probs = [problem(i) for i in range(20)]
    lucky = (f"[l] x = 30{LONG}.\nAnswer: B", "B", True, False)       # right letter, another option's value
    pool = [(0, [rec(f"p{i}", [pos("a"), neg("c"), lucky]) for i in range(20)]),
            (1, [rec("p0", [neg("d")])])]
    base_cfg = dict(include_qa=False, select_sets="natural", select_per_n=1)
    plain, _ = build_mix(probs, pool, 1, 0, MixConfig(**base_cfg), PCFG)
    items, stats = build_mix(probs, pool, 1, 0, MixConfig(**base_cfg, extra_sets={"swap": 3}), PCFG)
    swaps = [it for it in items if "-swap" in it["id"]]
    rest = {it["id"]: it for it in items if it not in swaps}
    assert rest == {it["id"]: it for it in plain}                          # the other items unchanged
    assert len(swaps) == 3 * 20 and stats["kinds"]["select"] == len(swaps) + sum(it["kind"] == "select" for it in plain)
    patterns = Counter()
    for it in swaps:
        assert it["kind"] == "select" and it["response"] == "Answer: B" and it["num_candidates"] == 3
        cands = re.findall(r"Model's Prediction \d: (.*?)(?=\nModel's Prediction|\nWhich)", it["prompt"], re.S)
        assert {c[:-1] for c in cands} == {f"[a] x = 20{LONG}. Answer: "}        # only the value-checked positive
        letters = [c[-1] for c in cands]
        assert "B" in letters
        wrong = [x for x in letters if x != "B"]
        patterns["wrong majority" if len(wrong) == 2 and wrong[0] == wrong[1] else f"{len(wrong)} wrong"] += 1
    assert len(patterns) >= 3 and patterns["wrong majority"] > 0
    assert sum(not it["vote_right"] for it in swaps) >= patterns["wrong majority"]   # and the ties a wrong letter leads
    again, _ = build_mix(probs, pool, 1, 0, MixConfig(**base_cfg, extra_sets={"swap": 3}), PCFG)
    assert again == items
    none, _ = build_mix(probs, pool, 1, 0, MixConfig(**base_cfg, extra_sets={"swap": 3}, include_select=False), PCFG)
    assert not any(it["kind"] == "select" for it in none)                 # the no-select ablation drops them too
    with pytest.raises(ConfigError, match=r"mix.extra_sets: swap: -1; give how many sets per question"):
        build_mix(probs, pool, 1, 0, MixConfig(extra_sets={"swap": -1}), PCFG)
