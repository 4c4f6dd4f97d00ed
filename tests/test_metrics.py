"""Exact checks for eval/metrics.py (voting, pass@N, subset averaging for MV@N / pass@N curves) and the
select and letter-binding diagnostics of eval/evaluate.py."""

import math

import pytest

from data_gen.problem import Problem
from eval.evaluate import letter_binding, select_diagnostics, select_vs_rules
from eval.metrics import (
    accuracy,
    draw_subsets,
    majority_vote,
    mv_at_n,
    pass_at_n,
    pass_at_n_score,
    sign_test_p,
    subset_estimate,
)

VOTE_CASES = [
    ("clear_majority", ["B", "A", "B"], "B"),
    # Ties go to the answer seen first; the Q2 reference gave them to the one seen first latest
    # (REFERENCE.md §4), which would return "B" here.
    ("tie_first_occurrence", ["A", "B"], "A"),
    ("tie_first_occurrence_reordered", ["B", "A", "A", "B"], "B"),
    ("tie_three_way", ["C", "B", "A"], "C"),
    # None is "no answer": it never wins, even when it is the most frequent entry.
    ("none_most_frequent", [None, None, "D"], "D"),
    ("none_first_then_tie", [None, "C", "A"], "C"),
    ("all_none", [None, None], None),
    ("empty", [], None),
    # REF: "FAILED" was a vote (then read as D); extracted answers are None, never "FAILED".
    ("none_not_a_label", [None, None, None, "A"], "A"),
    ("free_form_strings", ["12", "12", "0.5"], "12"),
]


@pytest.mark.parametrize("answers,expected", [c[1:] for c in VOTE_CASES], ids=[c[0] for c in VOTE_CASES])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


@pytest.mark.parametrize("flags,expected", [([False, False, True], True), ([False, False], False), ([], False)],
                         ids=["one_correct", "none_correct", "no_samples"])
def test_pass_at_n(flags, expected):
    assert pass_at_n(flags) is expected


def test_accuracy():
    assert accuracy([True, False, True, True]) == 75.0
    assert accuracy([False]) == 0.0
    assert accuracy([]) == 0.0  # documented choice: empty scores 0, not an exception


def test_small_cases_enumerate_all_combinations_exactly():
    # C(4, 2) = 6 <= 6: every pair once, in combinations order, whatever the seed.
    expected = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert draw_subsets(4, 2, num_subsets=6, seed=0) == expected
    assert draw_subsets(4, 2, num_subsets=100, seed=123) == expected
    # Score = sum of indices: sums 1,2,3,3,4,5 -> mean 3, population variance 10/6.
    mean, std = subset_estimate(4, 2, lambda idx: float(sum(idx)), num_subsets=6, seed=7)
    assert mean == pytest.approx(3.0)
    assert std == pytest.approx(math.sqrt(10 / 6))


def test_all_samples_is_one_subset_with_zero_spread():
    assert draw_subsets(5, 5, num_subsets=10, seed=0) == [(0, 1, 2, 3, 4)]
    assert subset_estimate(5, 5, lambda idx: 42.0, num_subsets=10, seed=0) == (42.0, 0.0)


def test_random_subsets_are_seeded_and_valid():
    # C(10, 3) = 120 > 20, so subsets are drawn: same seed -> same draws; each a sorted set of 3.
    a = draw_subsets(10, 3, num_subsets=20, seed=1)
    assert a == draw_subsets(10, 3, num_subsets=20, seed=1)
    assert a != draw_subsets(10, 3, num_subsets=20, seed=2)
    assert len(a) == 20
    assert all(len(set(s)) == 3 and list(s) == sorted(s) and 0 <= s[0] and s[-1] < 10 for s in a)
    calls = []
    subset_estimate(10, 3, lambda idx: calls.append(idx) or 0.0, num_subsets=20, seed=1)
    assert calls == a  # the estimate scores exactly the drawn subsets


def test_mv_at_2_over_3_samples_by_hand():
    # Q1 samples A, B, A (gold A); Q2 samples D, None, C (gold D). Pairs of sample indices:
    #   (0,1): Q1 A/B tie -> A (first) right; Q2 D/None -> D right   -> 100
    #   (0,2): Q1 A/A -> A right;             Q2 D/C tie -> D right  -> 100
    #   (1,2): Q1 B/A tie -> B wrong;         Q2 None/C -> C wrong   ->   0
    # mean 200/3, population std 100*sqrt(2)/3. Latest-first tie-breaking would give (50, 100, 0).
    answers = [["A", "B", "A"], ["D", None, "C"]]
    mean, std = mv_at_n(answers, ["A", "D"], n=2, num_subsets=10, seed=0)
    assert mean == pytest.approx(200 / 3)
    assert std == pytest.approx(100 * math.sqrt(2) / 3)
    # MV@1 is the mean single-sample accuracy: samples 0,1,2 score 100, 0, 50.
    assert mv_at_n(answers, ["A", "D"], n=1, num_subsets=10, seed=0)[0] == pytest.approx(50.0)


def test_pass_at_n_score_by_hand():
    flags = [[False, False, True], [False, False, False], [True, False, True]]
    # n=1: samples 0,1,2 give 1/3, 0/3, 2/3 questions -> mean 100/3.
    assert pass_at_n_score(flags, 1, num_subsets=10, seed=0)[0] == pytest.approx(100 / 3)
    # n=2: (0,1) 1/3, (0,2) 2/3, (1,2) 2/3 -> mean 500/9.
    assert pass_at_n_score(flags, 2, num_subsets=10, seed=0)[0] == pytest.approx(500 / 9)
    assert pass_at_n_score(flags, 3, num_subsets=10, seed=0) == (pytest.approx(200 / 3), 0.0)


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="between 1 and"):
        draw_subsets(3, 4, num_subsets=5, seed=0)
    with pytest.raises(ValueError, match="between 1 and"):
        draw_subsets(3, 0, num_subsets=5, seed=0)
    with pytest.raises(ValueError, match="question 1 has 2 samples"):
        mv_at_n([["A", "B", "C"], ["A", "B"]], ["A", "B"], n=1, num_subsets=5, seed=0)
    with pytest.raises(ValueError, match="golds"):
        mv_at_n([["A"], ["B"]], ["A"], n=1, num_subsets=5, seed=0)


def _samples(qid: str, texts_answers: list[tuple[str, str | None]], gold: str = "A") -> dict:
    return {"id": qid, "predictions": [t for t, _ in texts_answers], "answers": [a for _, a in texts_answers],
            "correct": [a == gold for _, a in texts_answers]}


def test_select_diagnostics_counts_outside_picks_and_unanimous_overrides():
    samples = [_samples("q1", [("", "A"), ("", "A"), ("", "A")]),     # unanimous, right
               _samples("q2", [("", "B"), ("", "B"), ("", "B")]),     # unanimous, wrong
               _samples("q3", [("", "A"), ("", None), ("", "A")]),    # a candidate without answer: not unanimous
               _samples("q4", [("", "C"), ("", "D"), ("", "C")], gold="C")]
    no = [False]
    selects = [{"id": "q1", "predictions": ["Answer: C"], "answers": ["C"], "correct": no},  # outside, overrides right unanimous
               {"id": "q2", "predictions": ["Answer: A"], "answers": ["A"], "correct": no},  # outside, overrides wrong unanimous
               {"id": "q3", "predictions": ["?"], "answers": [None], "correct": no},         # no answer: not "outside"
               {"id": "q4", "predictions": ["Answer: D"], "answers": ["D"], "correct": no}]  # one of the candidates
    assert select_diagnostics(samples, selects) == {
        "select_outside_candidates_rate": 50.0, "select_unanimous": 2,
        "select_overrides_unanimous": 2, "select_overrides_right_unanimous": 1,
        # each pick differs from its candidates' majority (A, B, A, C; q3's pick is no answer); q1, q3, q4's was right
        "select_departs_majority": 4, "select_departs_majority_right": 0, "select_departs_majority_vote_right": 3,
        # the vote over all candidates (ties to the first) is right on q1, q3, q4; no select answer is
        "select_only_right": 0, "vote_only_right": 3, "select_vs_vote_p": 0.25}
    assert select_diagnostics(samples, []) == {}


def test_sign_test_is_exact_and_two_sided():
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(3, 3) == 1.0
    assert sign_test_p(0, 3) == sign_test_p(3, 0) == 0.25   # 2 * (1/2)^3
    assert sign_test_p(1, 4) == pytest.approx(2 * 6 / 32)   # P(X <= 1) for X ~ Bin(5, 1/2), both tails
    assert sign_test_p(84, 41) < 0.001 < sign_test_p(44, 37)  # run j3 of session 8: iterations 1 and 3


def test_letter_binding_counts_rationales_that_computed_an_option():
    mc = Problem(id="m", image="/i.png", question="x?", choices=("20°", "40°", "50°", "80°"), answer="B")
    free = Problem(id="f", image="/i.png", question="n?", choices=None, answer="7")
    samples = [_samples("m", [("x = 40°.\nAnswer: B", "B"),      # bound to its option
                              ("x = 40°.\nAnswer: C", "C"),      # computed B's value, names C
                              ("x = 45°.\nAnswer: C", "C"),      # no option has the value: not counted
                              ("x = 40°.", None)]),               # no answer: not counted
               _samples("f", [("n = 7.\nAnswer: 7", "7")])]     # free-form: not counted
    # the consistent vote keeps B (its value is B's) and drops both Cs (40° is B's value, 45° no option's)
    assert letter_binding(samples, [mc, free]) == {"value_is_option": 2, "letter_mismatch_rate": 50.0,
                                                   "consistent_vote_acc": 100.0, "value_vote_acc": 100.0}
    assert letter_binding([samples[1]], [mc, free]) == {"value_is_option": 0, "letter_mismatch_rate": None,
                                                        "consistent_vote_acc": None, "value_vote_acc": None}
    # no consistent sample: the vote falls back to all K answers (B first, wins the tie; gold is C);
    # reading values moves both to A (20°), also wrong
    mc2 = Problem(id="m2", image="/i.png", question="x?", choices=("20°", "40°", "50°", "80°"), answer="C")
    both = [samples[0], _samples("m2", [("x = 20°.\nAnswer: B", "B"), ("x = 20°.\nAnswer: C", "C")])]
    assert letter_binding(both, [mc, mc2, free]) == {"value_is_option": 4, "letter_mismatch_rate": 75.0,
                                                     "consistent_vote_acc": 50.0, "value_vote_acc": 50.0}


def test_select_vs_rules_counts_the_questions_each_rule_decides():
    mc = Problem(id="m", image="/i.png", question="x?", choices=("20°", "40°", "50°", "80°"), answer="B")
    same = Problem(id="s", image="/i.png", question="y?", choices=("20°", "40°", "50°", "80°"), answer="A")
    free = Problem(id="f", image="/i.png", question="n?", choices=None, answer="7")
    samples = [_samples("m", [("x = 40°.\nAnswer: C", "C"),      # computed B's value, names C
                              ("x = 40°.\nAnswer: B", "B"),      # consistent
                              ("x = 50°.\nAnswer: C", "C")]),    # consistent: the vote says C, both rules B
               _samples("s", [("y = 20°.\nAnswer: A", "A")] * 3),  # rules and vote agree: not counted
               _samples("f", [("n = 7.\nAnswer: 7", "7")])]       # free-form: not counted

    def select(answer_m):
        return [_samples("m", [(f"Answer: {answer_m}", answer_m)]), _samples("s", [("Answer: A", "A")]),
                _samples("f", [("Answer: 7", "7")])]

    def counts(rule, decides, takes_rule, takes_vote, rule_right=1, vote_right=0):
        return {f"{rule}_decides": decides, f"{rule}_decides_select_rule": takes_rule,
                f"{rule}_decides_select_vote": takes_vote, f"{rule}_decides_rule_right": rule_right * decides,
                f"{rule}_decides_vote_right": vote_right}

    problems = [mc, same, free]
    # no arithmetic step in these samples: the recompute rule reads values as the value rule does
    for answer, takes_rule, takes_vote in (("B", 1, 0), ("C", 0, 1), ("D", 0, 0)):
        assert select_vs_rules(samples, select(answer), problems) == {
            **counts("check", 1, takes_rule, takes_vote), **counts("value", 1, takes_rule, takes_vote),
            **counts("recompute", 1, takes_rule, takes_vote)}
    assert select_vs_rules(samples, [], problems)["check_decides"] == 0  # no select records
    assert select_vs_rules(samples, [{"id": "m", "answers": []}], [mc])["value_decides_select_rule"] == 0
    # the rules part: all three name C, two computed B's value. The check drops those two and agrees with
    # the vote (C); reading values moves them to B, which wins.
    moved = [_samples("m", [("x = 40°.\nAnswer: C", "C"), ("x = 40°.\nAnswer: C", "C"),
                            ("x = 50°.\nAnswer: C", "C")])]
    assert select_vs_rules(moved, [_samples("m", [("Answer: B", "B")])], [mc]) == {
        **counts("check", 0, 0, 0, rule_right=0), **counts("value", 1, 1, 0), **counts("recompute", 1, 1, 0)}


def test_value_vote_reads_each_candidates_value():
    from eval.evaluate import value_vote

    mc = Problem(id="m", image="/i.png", question="x?", choices=("20°", "40°", "50°", "80°"), answer="B")
    record = _samples("m", [("x = 40°.\nAnswer: C", "C"), ("x = 45°.\nAnswer: D", "D"), ("x = 40°.\nAnswer: A", "A"),
                            ("x = 40°.", None)])
    assert value_vote(record, mc) == "B"  # two moved to B; 45° is no option's value, so D stays D; None no vote
    assert letter_binding([record], [mc])["value_vote_acc"] == 100.0


def test_arithmetic_diagnostics_and_the_recompute_vote():
    from eval.evaluate import arithmetic_diagnostics, recompute_vote

    mc = Problem(id="m", image="/i.png", question="BC?", choices=("3", "4", "6", "8"), answer="B")
    free = Problem(id="f", image="/i.png", question="n?", choices=None, answer="7")
    record = _samples("m", [("AB = 4 + 4 = 8. BC = 2 × 8 ÷ 4 = 3.\nAnswer: A", "A"),   # 2 steps, the last wrong: 4 is B
                            ("AB = 4 + 4 = 8. BC = 2 × 8 ÷ 4 = 3.\nAnswer: A", "A"),   # the same
                            ("AB = 4 + 4 = 9. BC = 2 × 8 ÷ 4 = 4.\nAnswer: B", "B"),   # right letter, first step wrong
                            ("BC = 2 × 8 ÷ 4 = 4.", None)], gold="B")                  # no answer: not read
    free_record = _samples("f", [("n = 3 + 4 = 7.\nAnswer: 7", "7")], gold="7")     # 1 step, right
    assert recompute_vote(record, mc) == "B"  # the vote says A; redoing the last steps moves all three to B
    assert arithmetic_diagnostics([record, free_record], [mc, free]) == {
        "arith_steps": 7, "arith_step_error_rate": pytest.approx(300 / 7),
        "arith_wrong_rationale_rate": 75.0, "arith_wrong_among_correct": 50.0, "recompute_vote_acc": 100.0}
    # a step whose true value is no option's: the sample keeps the option of the value it wrote (C: 6)
    kept = _samples("m", [("BC = 2 × 5 = 6.\nAnswer: D", "D")])
    assert recompute_vote(kept, mc) == "C"
    assert arithmetic_diagnostics([], [mc])["arith_step_error_rate"] is None
    # the recompute rule decides where the value rule does not: A, A (3 is A's value), B -> both votes say A,
    # redoing 2 × 8 ÷ 4 moves all three to B
    split = _samples("m", [("BC = 2 × 8 ÷ 4 = 3.\nAnswer: A", "A")] * 2 + [("BC = 2 × 8 ÷ 4 = 4.\nAnswer: B", "B")],
                     gold="B")
    rules = select_vs_rules([split], [_samples("m", [("Answer: B", "B")])], [mc])
    assert rules["value_decides"] == 0 and rules["check_decides"] == 0
    assert (rules["recompute_decides"], rules["recompute_decides_select_rule"], rules["recompute_decides_rule_right"],
            rules["recompute_decides_vote_right"]) == (1, 1, 1, 0)


def test_pointer_diagnostics_follow_the_shown_order():
    """Select records built with the real prompt builder: the pointer is resolved through the
    shuffled order written into the prompt, not the samples' order."""
    from core.config import PromptConfig
    from data_gen import prompts

    p = Problem("q1", "/i.png", "x?", ("1", "2", "3", "4"), "B")
    texts = ["x = 2.\nAnswer: B", "x = 3.\nAnswer: C", "x = 1.\nAnswer: A"]
    samples = [{"id": "q1", "predictions": texts, "answers": ["B", "C", "A"], "correct": [True, False, False]}]
    shown = [texts[2], texts[0], texts[1]]                          # the select prompt's (shuffled) order
    prompt = prompts.select_prompt(p, shown, PromptConfig())

    def select(output, answer):
        return [{"id": "q1", "prompt": prompt, "predictions": [output], "answers": [answer], "correct": [answer == "B"]}]

    named_right = select_diagnostics(samples, select("Prediction 2 is correct.\nAnswer: B", "B"))
    assert {k: round(v, 2) for k, v in named_right.items() if "pointer" in k} == {
        "select_pointer_rate": 100.0, "select_pointer_copies": 100.0, "select_pointer_correct": 100.0,
        "select_pointer_chance": 33.33}
    named_wrong = select_diagnostics(samples, select("Prediction 3 is correct.\nAnswer: B", "B"))
    assert named_wrong["select_pointer_copies"] == 0.0 and named_wrong["select_pointer_correct"] == 0.0
    plain = select_diagnostics(samples, select("Answer: B", "B"))
    assert not any("pointer" in k for k in plain)                  # answer targets: no pointer keys
    out_of_range = select_diagnostics(samples, select("Prediction 7 is correct.\nAnswer: B", "B"))
    assert not any("pointer" in k for k in out_of_range)


def test_shown_order_compares_whole_candidates():
    """A sample whose text is the start of another's (up to a newline) is not mistaken for it."""
    from core.config import PromptConfig
    from data_gen import prompts
    from eval.evaluate import shown_order

    p = Problem("q1", "/i.png", "x?", ("1", "2", "3", "4"), "B")
    texts = ["x = 2.", "x = 2.\nAnswer: C", "x = 1.\nAnswer: A"]
    for shown in ([1, 0, 2], [0, 1, 2], [2, 1, 0], [2, 0, 1]):
        prompt = prompts.select_prompt(p, [texts[j] for j in shown], PromptConfig())
        assert shown_order(prompt, texts) == shown
    assert shown_order(prompts.select_prompt(p, texts[:2], PromptConfig()), texts) is None  # a candidate missing


def test_select_departs_majority_counts_who_was_right_where_select_and_vote_differ():
    samples = [_samples("q1", [("", "A"), ("", "B"), ("", "B")]),     # majority B (wrong)
               _samples("q2", [("", "A"), ("", "B"), ("", "C")]),     # a tie: no majority, never counted
               _samples("q3", [("", "A"), ("", None), ("", "C")]),    # None does not vote: tie A/C
               _samples("q4", [("", "C"), ("", None), ("", None)])]   # majority C (wrong)
    selects = [{"id": "q1", "predictions": ["Answer: A"], "answers": ["A"], "correct": [True]},   # departs, right
               {"id": "q2", "predictions": ["Answer: A"], "answers": ["A"], "correct": [True]},
               {"id": "q3", "predictions": ["Answer: D"], "answers": ["D"], "correct": [False]},
               {"id": "q4", "predictions": ["Answer: C"], "answers": ["C"], "correct": [False]}]  # agrees
    got = select_diagnostics(samples, selects)
    assert (got["select_departs_majority"], got["select_departs_majority_right"],
            got["select_departs_majority_vote_right"]) == (1, 1, 0)
