"""Self-selection scaling: the table from scripted records, exactly; then a CPU run on the tiny model."""

import json
from pathlib import Path

import pytest

from core.config import ScalingConfig, parse_args
from eval.metrics import draw_subsets


def rec(qid, answers, gold):
    return {"id": qid, "predictions": [f"... Answer: {a}" for a in answers], "answers": answers,
            "correct": [a == gold for a in answers], "num_tokens": [3] * len(answers),
            "truncated": [False] * len(answers)}


def test_scaling_table_from_scripted_records():
    from self_select_scaling import scaling_table

    cfg = parse_args(ScalingConfig, ["max_select_num=3", "num_test_samples=3", "num_subsets=10"]).config
    # q1: samples A, B, A (gold A); q2: B, None, C (gold C).
    samples = [rec("q1", ["A", "B", "A"], "A"), rec("q2", ["B", None, "C"], "C")]
    greedy = [rec("q1", ["A"], "A"), rec("q2", ["B"], "C")]
    # With 3 samples every subset is enumerated: N=2 -> (0,1), (0,2), (1,2); N=3 -> (0,1,2).
    assert draw_subsets(3, 2, 10, cfg.seed + 2) == [(0, 1), (0, 2), (1, 2)]
    select = {(2, 0): [rec("q1", ["A"], "A"), rec("q2", ["B"], "C")],
              (2, 1): [rec("q1", ["A"], "A"), rec("q2", ["C"], "C")],
              (2, 2): [rec("q1", ["B"], "A"), rec("q2", ["C"], "C")],
              (3, 0): [rec("q1", ["A"], "A"), rec("q2", ["C"], "C")]}
    rows = scaling_table(samples, greedy, select, ["A", "C"], cfg)
    by_n = {r["N"]: r for r in rows}
    assert [r["N"] for r in rows] == [1, 2, 3]
    assert all(r["Test@1"] == 50.0 for r in rows)
    # N=1: single samples: q1 correct in 2/3 subsets, q2 in 1/3 -> mean (50 + 0 + 100) / 3.
    assert by_n[1]["SS@N"] == pytest.approx(50.0) and by_n[1]["MV@N"] == pytest.approx(50.0)
    # N=2 votes: (0,1): q1 A|B tie -> A (first) ok, q2 B ok? no (gold C) -> 50;
    #            (0,2): q1 A ok, q2 B|C tie -> B wrong -> 50; (1,2): q1 B|A -> B wrong, q2 None|C -> C ok -> 50.
    assert by_n[2]["MV@N"] == pytest.approx(50.0) and by_n[2]["MV_std"] == pytest.approx(0.0)
    # N=2 pass: (0,1): q1 yes q2 no -> 50; (0,2): 100; (1,2): 100 -> 83.33.
    assert by_n[2]["pass@N"] == pytest.approx(250 / 3)
    # N=2 self-select from the scripted select files: 50, 100, 50.
    assert by_n[2]["SS@N"] == pytest.approx(200 / 3)
    # N=3: vote q1 A (2 of 3) ok, q2 B|C tie -> B wrong -> 50; select both right -> 100.
    assert by_n[3]["MV@N"] == 50.0 and by_n[3]["SS@N"] == 100.0 and by_n[3]["pass@N"] == 100.0
