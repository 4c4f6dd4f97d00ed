"""eval/judge.py: the engine's records judged against the gold answers, as every samples file holds them."""

import pytest

from data_gen.problem import Problem
from eval.judge import golds, judge_all, judge_record


def test_judge_record_adds_answers_and_correct_in_the_files_key_order():
    engine = {"id": "q", "prompt": "p", "predictions": ["so 20°.\nAnswer: B", "Answer: (C)", "no idea"],
              "num_tokens": [5, 3, 2], "truncated": [False, False, True], "shown": [2, 0, 1]}
    judged = judge_record(engine, "B", ["10°", "20°", "30°"])
    assert judged["answers"] == ["B", "C", None] and judged["correct"] == [True, False, False]
    assert list(judged) == ["id", "prompt", "predictions", "answers", "correct", "num_tokens", "truncated", "shown"]
    # a shard written by the old engine already holds a judgement: it is recomputed, not trusted
    stale = {**engine, "answers": ["A", "A", "A"], "correct": [True, True, True]}
    assert judge_record(stale, "B", ["10°", "20°", "30°"]) == judged


def test_free_form_answers_use_the_relative_tolerance():
    engine = {"id": "q", "prompt": "p", "predictions": ["Answer: 10.4", "Answer: 11"], "num_tokens": [1, 1],
              "truncated": [False, False]}
    assert judge_record(engine, "10", None)["correct"] == [False, False]
    assert judge_record(engine, "10", None, rel_tol=0.05)["correct"] == [True, False]


def test_golds_and_judge_all():
    ps = [Problem("a", "/i.png", "x?", ("1", "2"), "A"), Problem("b", "/i.png", "y?", None, "7")]
    assert golds(ps) == {"a": ("A", ["1", "2"]), "b": ("7", None)}
    records = [{"id": i, "prompt": "", "predictions": ["Answer: A", "Answer: 7"], "num_tokens": [1, 1],
                "truncated": [False, False]} for i in ("a", "b")]
    judged = judge_all(golds(ps))(records)
    assert [r["correct"] for r in judged] == [[True, False], [False, True]]
    with pytest.raises(KeyError, match="no gold answer"):
        judge_all(golds(ps[:1]))(records)
