"""experiments/select_targets.py: the research select targets, named through the plugin (not part of R3V)."""

import re
from collections import Counter

import pytest

import experiments.variants  # noqa: F401  (registers the targets, as plugins=[experiments.variants] does)
from core.config import MixConfig
from data_gen.problem import Problem
from mix.reflection import build_mix
from tests.test_reflection import LONG, PCFG, neg, pos, problem, rec


@pytest.mark.parametrize("mixed", [False, True])
def test_pointer_select_target_names_a_correct_candidate(mixed):
    probs = [problem(i) for i in range(20)]
    pool = [(0, [rec(f"p{i}", [pos("a"), pos("b"), neg("c"), neg("d", "A"), neg("e", "D")]) for i in range(20)])]
    cfg = MixConfig(select_target="pointer", select_mixed_n=mixed, include_qa=False)
    items, _ = build_mix(probs, pool, 1, 0, cfg, PCFG)
    selects = [it for it in items if it["kind"] == "select"]
    pointed = Counter()
    for it in selects:
        k, letter = re.fullmatch(r"Prediction (\d) is correct\.\nAnswer: (\w)", it["response"]).groups()
        tags = re.findall(r"Model's Prediction \d: \[(\w)\]", it["prompt"])
        assert letter == "B" and tags[int(k) - 1] in "ab"                 # points at a positive
        assert all(t not in "ab" for t in tags[:int(k) - 1])              # the first positive listed
        pointed[k] += 1
    assert len(pointed) >= 3                                               # positions are shuffled
    answer_items, _ = build_mix(probs, pool, 1, 0, MixConfig(select_mixed_n=mixed, include_qa=False), PCFG)
    assert [it["prompt"] for it in answer_items] == [it["prompt"] for it in items]  # only the target differs


def test_value_select_target_writes_each_value_then_its_option():
    probs = [problem(i) for i in range(10)]
    pool = [(0, [rec(f"p{i}", [pos("a"), neg("c"), (f"[d] x = 45{LONG}. Answer: A", "A", False, False)])
                 for i in range(10)])]
    cfg = MixConfig(select_target="value", include_qa=False, select_sets="natural")
    items, _ = build_mix(probs, pool, 1, 0, cfg, PCFG)
    selects = [it for it in items if it["kind"] == "select"]
    assert len(selects) == 10
    expected = {"a": "20 is option B.", "c": "30 is option C.", "d": "45 is no option."}  # no option is 45
    for it in selects:
        tags = re.findall(r"Model's Prediction \d: \[(\w)\]", it["prompt"])
        assert it["response"].split("\n") == [f"Prediction {k}: {expected[t]}" for k, t in enumerate(tags, 1)] \
            + ["Answer: B"]
    nothing = [(0, [rec("p0", [pos("a"), (f"[n] nothing computed{LONG}. Answer: C", "C", False, False),
                               neg("c")])])]
    (sel,) = [it for it in build_mix(probs[:1], nothing, 1, 0, cfg, PCFG)[0] if it["kind"] == "select"]
    tags = re.findall(r"Model's Prediction \d: \[(\w)\]", sel["prompt"])
    assert f"Prediction {tags.index('n') + 1}: no value." in sel["response"].split("\n")
    free = Problem(id="f0", image="/i.png", question="n?", choices=None, answer="20")
    free_pool = [(0, [rec("f0", [(f"[a] n = 20{LONG}. Answer: 20", "20", True, False),
                                 (f"[b] n = 30{LONG}. Answer: 30", "30", False, False),
                                 (f"[c] n = 40{LONG}. Answer: 40", "40", False, False)])])]
    (sel,) = [it for it in build_mix([free], free_pool, 1, 0, cfg, PCFG)[0] if it["kind"] == "select"]
    assert sel["response"].split("\n")[-1] == "Answer: 20"             # free form: check lines, as with check
    assert all(line.startswith("Prediction ") and "answered" in line for line in sel["response"].split("\n")[:-1])


def test_table_select_target_lists_the_options_value_first_then_the_value_lines():
    probs = [problem(i) for i in range(4)]
    pool = [(0, [rec(f"p{i}", [pos("a"), neg("c"), (f"[d] x = 45{LONG}. Answer: A", "A", False, False)])
                 for i in range(4)])]
    cfg = MixConfig(select_target="table", include_qa=False, select_sets="natural")
    selects = [it for it in build_mix(probs, pool, 1, 0, cfg, PCFG)[0] if it["kind"] == "select"]
    assert len(selects) == 4
    value_items = [it for it in build_mix(probs, pool, 1, 0, MixConfig(select_target="value", include_qa=False,
                                                                       select_sets="natural"), PCFG)[0]
                   if it["kind"] == "select"]
    assert [it["prompt"] for it in selects] == [it["prompt"] for it in value_items]  # only the target differs
    expected = {"a": "20 is B.", "c": "30 is C.", "d": "45 is no option."}
    for it in selects:
        tags = re.findall(r"Model's Prediction \d: \[(\w)\]", it["prompt"])
        assert it["response"].split("\n") == ["Options: 10 is A, 20 is B, 30 is C, 40 is D."] \
            + [f"Prediction {k}: {expected[t]}" for k, t in enumerate(tags, 1)] + ["Answer: B"]


def test_check_select_target_reads_each_candidate():
    probs = [problem(i) for i in range(10)]
    pool = [(0, [rec(f"p{i}", [pos("a"), neg("c"), neg("d", "A")]) for i in range(10)])]
    cfg = MixConfig(select_target="check", include_qa=False, select_sets="natural")
    items, _ = build_mix(probs, pool, 1, 0, cfg, PCFG)
    selects = [it for it in items if it["kind"] == "select"]
    assert len(selects) == 10
    expected = {"a": "computed B, answered B.", "c": "computed C, answered C.",  # 20 is B, 30 is C
                "d": "computed C, answered A."}                                # computed C, named A
    for it in selects:
        tags = re.findall(r"Model's Prediction \d: \[(\w)\]", it["prompt"])
        lines = it["response"].split("\n")
        assert lines == [f"Prediction {k}: {expected[t]}" for k, t in enumerate(tags, 1)] + ["Answer: B"]
    free = Problem(id="f0", image="/i.png", question="n?", choices=None, answer="20")
    free_pool = [(0, [rec("f0", [(f"[a] n = 20{LONG}. Answer: 20", "20", True, False),
                                 (f"[b] n = 30{LONG}. Answer: 30", "30", False, False),
                                 (f"[c] n = 40{LONG}. Answer: 40", "40", False, False)])])]
    items, _ = build_mix([free], free_pool, 1, 0, cfg, PCFG)
    (sel,) = [it for it in items if it["kind"] == "select"]
    tags = re.findall(r"Model's Prediction \d: \[(\w)\]", sel["prompt"])
    answers = {"a": "20", "b": "30", "c": "40"}
    assert sel["response"].split("\n") == [f"Prediction {k}: answered {answers[t]}." for k, t in enumerate(tags, 1)] \
        + ["Answer: 20"]
