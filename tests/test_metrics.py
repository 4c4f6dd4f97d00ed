"""Exact checks for eval/metrics.py (voting, pass@N, subset averaging for MV@N / pass@N curves, the sign test)."""

import math

import pytest

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


def test_sign_test_is_exact_and_two_sided():
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(3, 3) == 1.0
    assert sign_test_p(0, 3) == sign_test_p(3, 0) == 0.25   # 2 * (1/2)^3
    assert sign_test_p(1, 4) == pytest.approx(2 * 6 / 32)   # P(X <= 1) for X ~ Bin(5, 1/2), both tails
    assert sign_test_p(84, 41) < 0.001 < sign_test_p(44, 37)  # run j3 of session 8: iterations 1 and 3
