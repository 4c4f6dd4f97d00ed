"""Metrics over already-extracted answers (strings, or None for "no answer"): pure functions.

    accuracy(correct)                      percent correct, 0..100
    majority_vote(answers)                 the most frequent answer; None never wins over an answer
    pass_at_n(correct_flags)               the oracle: any sample correct
    draw_subsets(M, n, num_subsets, seed)  the n-subsets of M sample indices a curve point averages
    subset_estimate(M, n, score_fn, ...)   mean and std of a score over those subsets
    mv_at_n(...), pass_at_n_score(...)     MV@N and pass@N built on subset_estimate
    sign_test_p(wins, losses)              two-sided exact sign test of a paired comparison

The MV@N / SS@N / pass@N curves of `self_select_scaling.py` (DESIGN.md §1) sample the test set
M times and, for each N, average over subsets of N of the M samples. A subset is a choice of sample
indices applied to every question at once, so one point is a dataset-level score per subset, and
the spread reported is the std over subsets. SS@N uses `draw_subsets` directly (the model must read
the chosen samples), and the same seed gives MV@N and SS@N the same subsets, so they are paired.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence


def accuracy(correct: Sequence[bool]) -> float:
    """Percent of True in `correct` (0..100). An empty list scores 0.0 rather than raising, so a
    run with no test questions still reports; callers log the count beside the score."""
    return 100.0 * sum(bool(c) for c in correct) / len(correct) if correct else 0.0


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-None answer; None only when every answer is None (or none given).

    None means "no answer" and never wins a vote: the reference counted "FAILED" as a vote and
    then read it as option D (REFERENCE.md §4). Ties go to the tied answer that occurs FIRST, which
    makes the result independent of anything after the tie and equals `Counter.most_common`, as the
    original R3V voting did (sample 1 wins ties); the Q2 reference sorted by count and took the
    last, so ties went to the answer first seen latest.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in counts if counts[a] == best)  # Counter keeps first-occurrence order


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance, if either side were as likely to win each discordant
    pair, of a split at least this uneven. Ties (both right, both wrong) carry no information and are
    left out by the caller; no discordant pair gives 1.0."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def pass_at_n(correct_flags: Sequence[bool]) -> bool:
    """The oracle over one question's samples: True if any sample is correct."""
    return any(correct_flags)


def draw_subsets(num_samples: int, n: int, num_subsets: int, seed: int) -> list[tuple[int, ...]]:
    """Subsets of n sample indices out of range(num_samples), each a sorted tuple.

    When C(num_samples, n) <= num_subsets every combination is returned, in
    `itertools.combinations` order, so the estimate is exact and does not depend on the seed.
    Otherwise num_subsets subsets are drawn with `random.Random(seed)`, each without replacement
    within itself; two draws may repeat the same subset (independent draws keep the mean unbiased).
    """
    if not 1 <= n <= num_samples:
        raise ValueError(f"n={n} must be between 1 and the number of samples ({num_samples}).")
    if num_subsets < 1:
        raise ValueError(f"num_subsets={num_subsets} must be at least 1.")
    if math.comb(num_samples, n) <= num_subsets:
        return list(itertools.combinations(range(num_samples), n))
    rng = random.Random(seed)
    return [tuple(sorted(rng.sample(range(num_samples), n))) for _ in range(num_subsets)]


def subset_estimate(num_samples: int, n: int, score_fn: Callable[[tuple[int, ...]], float],
                    num_subsets: int, seed: int) -> tuple[float, float]:
    """(mean, std) of score_fn over the subsets of `draw_subsets` (exact when C(M, n) is small).

    score_fn(indices) scores the whole dataset using only those sample indices. The std is the
    population std over subsets (0.0 for a single subset): the spread of the score across subsets,
    not a standard error.
    """
    scores = [score_fn(s) for s in draw_subsets(num_samples, n, num_subsets, seed)]
    return statistics.fmean(scores), statistics.pstdev(scores)


def _num_samples(per_question: Sequence[Sequence], what: str) -> int:
    """The common number of samples per question; every question must have the same M."""
    if not per_question:
        raise ValueError(f"{what}: no questions given.")
    m = len(per_question[0])
    for q, samples in enumerate(per_question):
        if len(samples) != m:
            raise ValueError(f"{what}: question {q} has {len(samples)} samples, question 0 has {m}; "
                             "every question needs the same number of samples.")
    return m


def mv_at_n(per_question_answers: Sequence[Sequence[str | None]], golds: Sequence[str], n: int,
            num_subsets: int, seed: int) -> tuple[float, float]:
    """MV@N: accuracy (percent) of the majority vote over n of each question's M samples.

    Answers and golds are compared as strings, so both must come from the same extractor (option
    letters, or `extract_answer`'s canonical values). Returns (mean, std) over subsets.
    """
    m = _num_samples(per_question_answers, "mv_at_n")
    if len(golds) != len(per_question_answers):
        raise ValueError(f"mv_at_n: {len(golds)} golds for {len(per_question_answers)} questions.")

    def score(indices: tuple[int, ...]) -> float:
        return accuracy([majority_vote([answers[i] for i in indices]) == gold
                         for answers, gold in zip(per_question_answers, golds)])

    return subset_estimate(m, n, score, num_subsets, seed)


def pass_at_n_score(per_question_correct: Sequence[Sequence[bool]], n: int, num_subsets: int,
                    seed: int) -> tuple[float, float]:
    """pass@N: percent of questions with a correct sample among n of its M samples (the oracle
    upper bound of MV@N and SS@N). Returns (mean, std) over subsets."""
    m = _num_samples(per_question_correct, "pass_at_n_score")

    def score(indices: tuple[int, ...]) -> float:
        return accuracy([pass_at_n([flags[i] for i in indices]) for flags in per_question_correct])

    return subset_estimate(m, n, score, num_subsets, seed)


__all__ = [
    "accuracy",
    "draw_subsets",
    "majority_vote",
    "mv_at_n",
    "pass_at_n",
    "pass_at_n_score",
    "subset_estimate",
]
