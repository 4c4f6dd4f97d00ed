"""Reflection mix: filters, per-question caps, newest-first choice, select items, prompts, writer."""

import json
import re
from collections import Counter

import pytest

from core.config import ConfigError, MixConfig, PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from eval.metrics import majority_vote
from mix.llamafactory import to_sharegpt, write_dataset
from mix.reflection import build_mix, filter_reason, warmup_items

PCFG = PromptConfig()
# configs/r3v_recommended.yaml's mix filters (the defaults are the original's, which keep more)
RECOMMENDED = MixConfig(drop_no_answer=True, drop_truncated=True, dedupe=True)
LONG = " because the angles of a triangle add up to one hundred and eighty degrees"  # > 50 chars


def problem(i: int, answer: str = "B") -> Problem:
    return Problem(id=f"p{i}", image=f"/img/p{i}.png", question=f"Question {i}: find x ()",
                   choices=("10", "20", "30", "40"), answer=answer, rationale=f"x = 20{LONG}.\nAnswer: B")


def rec(qid: str, samples: list[tuple[str, str | None, bool, bool]]) -> dict:
    """samples: (text, extracted answer, correct, truncated)."""
    return {"id": qid, "predictions": [s[0] for s in samples], "answers": [s[1] for s in samples],
            "correct": [s[2] for s in samples], "truncated": [s[3] for s in samples],
            "num_tokens": [10] * len(samples)}


def pos(tag: str):
    return (f"[{tag}] x = 20{LONG}. Answer: B", "B", True, False)


def neg(tag: str, letter: str = "C"):
    return (f"[{tag}] x = 30{LONG}. Answer: {letter}", letter, False, False)


@pytest.mark.parametrize("text,answer,truncated,reason", [
    ("x" * 51 + " Answer: B", "B", False, None),
    ("short. Answer: B", "B", False, "too short"),
    ("x" * 50, "B", False, "too short"),                      # the reference: len > 50, not >=
    ("Answer: B" + "x" * 60, "B", False, "no rationale"),     # starts with "Answer": no rationale
    ("x" * 80, None, False, "no answer"),
    ("x" * 80 + " Answer: B", "B", True, "truncated"),        # cut off at max_new_tokens
], ids=["kept", "short", "exactly-50", "answer-first", "no-answer", "truncated"])
def test_filters(text, answer, truncated, reason):
    assert filter_reason(text, answer, truncated, 50) == reason


def test_mix_kinds_caps_and_counts():
    probs = [problem(0), problem(1), problem(2), problem(3)]
    pool = [(0, [rec("p0", [pos("a"), pos("b"), neg("c")]),         # 2 pos 1 neg
                 rec("p1", [pos("a"), neg("b"), neg("c", "D")]),    # 1 pos 2 neg
                 rec("p2", [neg("a"), neg("b"), neg("c")]),          # no positive
                 rec("p3", [pos("a"), ("tiny. Answer: B", "B", True, False), neg("t", "A")[:3] + (True,)])])]
    # the original's filter (the default) keeps the truncated negative of p3: it gets a refine item
    _, original = build_mix(probs, pool, 1, 0, MixConfig(), PCFG)
    assert original["kinds"] == {"qa": 4, "cot": 3, "refine": 3, "select": 2}
    assert original["candidates"] == {"kept negative": 7, "kept positive": 4, "too short": 1}
    items, stats = build_mix(probs, pool, 1, 0, RECOMMENDED, PCFG)
    kinds = Counter(it["kind"] for it in items)
    assert kinds == {"qa": 4, "cot": 3, "refine": 2, "select": 2}
    assert stats["kinds"] == {"qa": 4, "cot": 3, "refine": 2, "select": 2}
    assert stats["candidates"] == {"kept negative": 6, "kept positive": 4, "too short": 1, "truncated": 1}
    assert stats["questions_with_positive"] == 3
    # At most one CoT and one refine per question; ids name the question.
    ids = Counter(it["id"] for it in items)
    assert all(v == 1 for v in ids.values())
    selects = {it["id"]: it for it in items if it["kind"] == "select"}
    assert set(selects) == {"select-p0-2p1n", "select-p1-1p2n"}
    for it in selects.values():
        assert it["response"] == "Answer: B"
        assert it["num_candidates"] == 3


def test_newest_iteration_is_preferred_by_index_not_order():
    probs = [problem(0)]
    pool = [(1, [rec("p0", [pos("new"), neg("new")])]), (0, [rec("p0", [pos("old"), neg("old")])])]
    items, _ = build_mix(probs, list(reversed(pool)), 2, 0, MixConfig(), PCFG)
    cot = next(it for it in items if it["kind"] == "cot")
    refine = next(it for it in items if it["kind"] == "refine")
    assert cot["response"].startswith("[new]")
    assert "Model's Prediction: [new]" in refine["prompt"] and refine["response"].startswith("[new]")


def test_cot_per_question_adds_distinct_rationales_newest_first():
    probs = [problem(0), problem(1)]
    pool = [(0, [rec("p0", [pos("a"), pos("a"), pos("b")]), rec("p1", [pos("c"), neg("d")])]),
            (1, [rec("p0", [pos("new"), neg("e"), neg("f")]), rec("p1", [neg("g"), neg("h"), neg("i")])])]
    one, _ = build_mix(probs, pool, 2, 0, MixConfig(), PCFG)
    three, stats = build_mix(probs, pool, 2, 0, MixConfig(cot_per_question=3), PCFG)
    cot = lambda items: sorted((it["id"], it["response"][:5]) for it in items if it["kind"] == "cot")
    assert cot(one) == [("cot-p0", "[new]"), ("cot-p1", "[c] x")]
    # p0 has three distinct positives (the duplicate "a" counts once), p1 only one
    assert cot(three) == [("cot-p0", "[new]"), ("cot-p0-1", "[a] x"), ("cot-p0-2", "[b] x"), ("cot-p1", "[c] x")]
    assert stats["kinds"]["cot"] == 4
    others = lambda items: sorted((it for it in items if it["kind"] != "cot"), key=lambda it: it["id"])
    assert others(three) == others(one)  # the other kinds do not change
    with pytest.raises(ConfigError, match="cot_per_question=0"):
        build_mix(probs, pool, 2, 0, MixConfig(cot_per_question=0), PCFG)
    no_cot, _ = build_mix(probs, pool, 2, 0, MixConfig(include_cot=False, cot_per_question=0), PCFG)
    assert not [it for it in no_cot if it["kind"] == "cot"] and others(no_cot) == others(one)


def test_value_check_drops_lucky_positives_only_when_asked():
    # p0's second positive computed 30 but names B (20): a lucky letter; its negative says 30 -> C.
    lucky = (f"[lucky] x = 30{LONG}. Answer: B", "B", True, False)
    unchecked = (f"[nothing computed]{LONG}. Answer: B", "B", True, False)  # no "=": kept
    odd_neg = (f"[odd neg] x = 40{LONG}. Answer: C", "C", False, False)  # value 40 names C: negatives are kept
    free = Problem(id="f0", image="/img/f0.png", question="How many?", choices=None, answer="7")
    free_pos = (f"[free] n = 3 + 4 = 8{LONG}. Answer: 7", "7", True, False)  # free-form: never checked
    probs = [problem(0), free]
    pool = [(0, [rec("p0", [pos("a"), lucky, neg("b"), unchecked, odd_neg]), rec("f0", [free_pos])])]
    cfg = MixConfig(cot_per_question=3)
    plain, plain_stats = build_mix(probs, pool, 1, 0, cfg, PCFG)
    checked, stats = build_mix(probs, pool, 1, 0, MixConfig(cot_per_question=3, value_check=True), PCFG)
    cot = lambda items: sorted(it["response"][:7] for it in items if it["kind"] == "cot")
    assert cot(plain) == ["[a] x =", "[free] ", "[lucky]", "[nothin"]
    assert cot(checked) == ["[a] x =", "[free] ", "[nothin"]
    assert stats["candidates"]["value differs from its option"] == 1
    assert stats["candidates"]["kept positive"] == plain_stats["candidates"]["kept positive"] - 1
    assert stats["candidates"]["kept negative"] == plain_stats["candidates"]["kept negative"] == 2
    # the lucky rationale is no refine target and no select candidate either
    assert not any("[lucky]" in it["prompt"] + it["response"] for it in checked)
    assert "value differs from its option" not in plain_stats["candidates"]


def test_prompts_show_choices_in_training_like_at_test_time():
    p = problem(0)
    items, _ = build_mix([p], [(0, [rec("p0", [pos("a"), pos("b"), neg("c")])])], 1, 0, MixConfig(), PCFG)
    cot_prompt = prompts.cot_prompt(p, PCFG)
    assert "Choices:\n(A) 10\n(B) 20\n(C) 30\n(D) 40" in cot_prompt
    for it in items:
        assert "(B) 20" in it["prompt"]
        if it["kind"] in ("cot", "refine", "select"):
            assert it["prompt"].startswith(cot_prompt)
    select = next(it for it in items if it["kind"] == "select")
    assert re.findall(r"Model's Prediction (\d):", select["prompt"]) == ["1", "2", "3"]
    assert select["prompt"].endswith(PCFG.select_instruction)


def test_select_candidates_are_shuffled_and_seeded():
    probs = [problem(i) for i in range(40)]
    pool = [(0, [rec(f"p{i}", [pos(f"{i}a"), pos(f"{i}b"), neg(f"{i}c")]) for i in range(40)])]
    a, _ = build_mix(probs, pool, 1, 7, MixConfig(), PCFG)
    b, _ = build_mix(probs, pool, 1, 7, MixConfig(), PCFG)
    c, _ = build_mix(probs, pool, 1, 8, MixConfig(), PCFG)
    assert a == b and a != c
    # Where does the negative sit among the 3 candidates? Shuffled: every position occurs.
    positions = Counter()
    for it in a:
        if it["kind"] == "select":
            cands = re.findall(r"Model's Prediction (\d): \[\d+(\w)\]", it["prompt"])
            positions[next(n for n, tag in cands if tag == "c")] += 1
    assert set(positions) == {"1", "2", "3"}


def test_mixed_n_select_items():
    probs = [problem(0)]
    pool = [(0, [rec("p0", [pos("a"), pos("b"), pos("c"), neg("d"), neg("e"), neg("f", "A")])])]
    cfg = MixConfig(select_mixed_n=True, max_select_n=6, select_per_n=2, include_qa=False)
    items, _ = build_mix(probs, pool, 1, 0, cfg, PCFG)
    selects = [it for it in items if it["kind"] == "select"]
    by_n = Counter(it["num_candidates"] for it in selects)
    assert set(by_n) == {2, 3, 4, 5, 6} and all(v <= 2 for v in by_n.values())
    for it in selects:
        texts = re.findall(r"Model's Prediction \d: \[(\w)\]", it["prompt"])
        assert len(texts) == it["num_candidates"] == len(set(texts))        # no repeated candidate
        assert any(t in "abc" for t in texts) and any(t in "def" for t in texts)  # >= 1 pos and >= 1 neg


def test_an_unknown_select_target_or_set_is_refused_with_the_known_names():
    probs = [problem(0)]
    pool = [(0, [rec("p0", [pos("a"), neg("c")])])]
    with pytest.raises(ConfigError, match=r"mix.select_target='no-such-target' is not registered \(known: .*answer.*plugins="):
        build_mix(probs, pool, 1, 0, MixConfig(select_target="no-such-target"), PCFG)
    with pytest.raises(ConfigError, match=r"mix.select_sets='no-such-sets' is not registered \(known: .*fixed, natural"):
        build_mix(probs, pool, 1, 0, MixConfig(select_sets="no-such-sets"), PCFG)


@pytest.mark.parametrize("mixed", [False, True])
def test_natural_select_sets_are_drawn_like_test_time(mixed):
    probs = [problem(i) for i in range(30)]
    same = (f"x = 20{LONG}. Answer: B", "B", True, False)                   # a rationale sampled twice
    pool = [(0, [rec(f"p{i}", [pos("a"), same, same]) for i in range(30)]),
            (1, [rec(f"p{i}", [neg("c"), pos("b"), neg("d", "A")]) for i in range(30)])]
    cfg = MixConfig(select_sets="natural", select_mixed_n=mixed, include_qa=False, select_per_n=2)
    items, stats = build_mix(probs, pool, 2, 0, cfg, PCFG)
    selects = [it for it in items if it["kind"] == "select"]
    sizes = Counter(it["num_candidates"] for it in selects)
    assert set(sizes) == ({2, 3, 4, 5, 6} if mixed else {3})
    assert all(v <= 2 * len(probs) for v in sizes.values())
    kinds = Counter()
    for it in selects:
        cands = re.findall(r"Model's Prediction \d: (.*?)(?=\nModel's Prediction|\nWhich)", it["prompt"], re.S)
        assert len(cands) == it["num_candidates"] and it["response"] == "Answer: B"
        correct = [c.endswith("Answer: B") for c in cands]
        assert any(correct)                                                 # something right to select
        kinds["all correct" if all(correct) else "mixed"] += 1
        kinds["repeat"] += len(set(cands)) < len(cands)
        assert it["vote_right"] == (majority_vote([c[-1] for c in cands]) == "B")  # ties: the first listed
    assert kinds["all correct"] and kinds["mixed"] and kinds["repeat"]   # as at test time
    # the mix counts the select items that a vote over their candidates would get wrong (only those
    # teach more than voting)
    assert stats["select_vote_wrong"] == sum(not it["vote_right"] for it in selects) > 0
    assert stats["select_vote_right"] + stats["select_vote_wrong"] == len(selects)
    again, _ = build_mix(probs, pool, 2, 0, cfg, PCFG)
    assert again == items                                                   # seeded
    with pytest.raises(ConfigError, match="select_sets='all' is not registered"):
        build_mix(probs, pool, 2, 0, MixConfig(select_sets="all"), PCFG)
    with pytest.raises(ConfigError, match="select_per_n=0"):
        build_mix(probs, pool, 2, 0, MixConfig(select_sets="natural", select_per_n=0), PCFG)
    with pytest.raises(ConfigError, match="max_select_n=1"):
        build_mix(probs, pool, 2, 0, MixConfig(select_mixed_n=True, max_select_n=1), PCFG)


def test_disabled_kinds_and_unknown_ids():
    probs = [problem(0)]
    pool = [(0, [rec("p0", [pos("a"), pos("b"), neg("c")])])]
    items, _ = build_mix(probs, pool, 1, 0, MixConfig(include_refine=False, include_select=False), PCFG)
    assert Counter(it["kind"] for it in items) == {"qa": 1, "cot": 1}
    with pytest.raises(ValueError, match="ids not in the train set"):
        build_mix(probs, [(0, [rec("zz", [pos("a")])])], 1, 0, MixConfig(), PCFG)


def test_warmup_items_use_gold_rationales():
    items = warmup_items([problem(0), problem(1)], PCFG, 5, 0)
    assert len(items) == 2 and all(it["response"].endswith("Answer: B") for it in items)
    with pytest.raises(ValueError, match="gold rationales"):
        warmup_items([Problem("q", "/i.png", "q?", ("1", "2"), "A")], PCFG, 5, 0)


def test_writer_sharegpt_and_dataset_info(tmp_path):
    items = [{"kind": "qa", "id": "qa-p0", "image": "/img/p0.png", "prompt": "Q?", "response": "Answer: B"}]
    path = write_dataset(items, tmp_path / "ds", "mix1")
    write_dataset(items, tmp_path / "ds", "mix2")
    data = json.loads(path.read_text())
    assert data == [{"messages": [{"role": "user", "content": "<image>Q?"},
                                  {"role": "assistant", "content": "Answer: B"}], "images": ["/img/p0.png"]}]
    info = json.loads((tmp_path / "ds" / "dataset_info.json").read_text())
    assert set(info) == {"mix1", "mix2"}  # both registered in the run's own folder
    assert info["mix1"]["file_name"] == "mix1.json" and info["mix1"]["formatting"] == "sharegpt"
    assert info["mix1"]["columns"] == {"messages": "messages", "images": "images"}


def test_writer_rejects_stray_image_tokens_and_empty_mix(tmp_path):
    with pytest.raises(ValueError, match="already contains '<image>'"):
        to_sharegpt({"id": "x", "image": "/i.png", "prompt": "see <image>", "response": "A"})
    with pytest.raises(ValueError, match="no items"):
        write_dataset([], tmp_path, "empty")


def test_extra_sets_and_filters_are_names_a_plugin_registers():
    probs = [problem(0)]
    pool = [(0, [rec("p0", [pos("a"), neg("c")])])]
    with pytest.raises(ConfigError, match=r"mix.filters='no-such-filter' is not registered"):
        build_mix(probs, pool, 1, 0, MixConfig(filters=["no-such-filter"]), PCFG)
    with pytest.raises(ConfigError, match=r"mix.extra_sets='no-such-sets' is not registered"):
        build_mix(probs, pool, 1, 0, MixConfig(extra_sets={"no-such-sets": 2}), PCFG)
