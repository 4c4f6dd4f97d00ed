"""experiments/diagnostics.py: the research metrics, on hand-made records and on outputs of the research
select targets (experiments/select_targets.py builds the target texts the diagnostics read back)."""

import pytest

from core.config import PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from experiments.diagnostics import letter_binding, select_diagnostics, select_vs_rules
from experiments.select_targets import check_target, value_target


def _listed_select_case(shown: list[int]):
    """One multiple-choice question (gold B = 40°), its three samples (40° -> B, 40° -> C, 45° -> D) and a
    select prompt listing them in the order `shown` (sample indices)."""
    p = Problem("q1", "/i.png", "x?", ("20°", "40°", "50°", "80°"), "B")
    texts = ["x = 40°.\nAnswer: B", "x = 40°.\nAnswer: C", "x = 45°.\nAnswer: D"]
    samples = [{"id": "q1", "predictions": texts, "answers": ["B", "C", "D"], "correct": [True, False, False]}]
    return p, texts, samples, prompts.select_prompt(p, [texts[j] for j in shown], PromptConfig())


def test_check_diagnostics_score_the_lines_against_the_listed_candidates():
    from experiments.diagnostics import check_diagnostics

    p, _, samples, prompt = _listed_select_case([2, 0, 1])
    # the target the mix would train on for this order is all right
    right = check_target(p, [("no option", "D"), ("B", "B"), ("B", "C")])
    record = {"id": "q1", "prompt": prompt, "predictions": [right], "answers": ["B"]}
    assert check_diagnostics(samples, [record], [p]) == {
        "select_check_rate": 100.0, "select_check_answered_acc": 100.0, "select_check_computed_acc": 100.0,
        "select_check_computed_copy": 100.0 / 3, "select_check_coverage": 100.0}  # only candidate 1 named its own value
    # messy model output: spaces, a missing period, trailing prose cut at the line end, a skipped line
    messy = "  Prediction 1: computed no option, answered D \nPrediction 3: computed B,answered C.\r\nAnswer: B"
    record = {"id": "q1", "prompt": prompt, "predictions": [messy], "answers": ["B"]}
    got = check_diagnostics(samples, [record], [p])
    assert got["select_check_answered_acc"] == 100.0 and got["select_check_computed_acc"] == 100.0
    assert round(got["select_check_coverage"], 2) == 66.67 and got["select_check_computed_copy"] == 0.0
    # read in the samples' order instead of the listed one: 1 answer of 3 right, 1 computed option of 3
    wrong = check_target(p, [("B", "B"), ("B", "C"), ("no option", "D")])
    record = {"id": "q1", "prompt": prompt, "predictions": [wrong], "answers": ["B"]}
    got = check_diagnostics(samples, [record], [p])
    assert (round(got["select_check_answered_acc"], 2), round(got["select_check_computed_acc"], 2)) == (0.0, 33.33)
    assert got["select_check_coverage"] == 100.0
    plain = {"id": "q1", "prompt": prompt, "predictions": ["Answer: B"], "answers": ["B"]}
    assert check_diagnostics(samples, [plain], [p]) == {}


def test_value_diagnostics_score_value_option_and_lookup_per_listed_candidate():
    from experiments.diagnostics import value_diagnostics

    p, texts, samples, prompt = _listed_select_case([2, 0, 1])
    right = value_target(p, [("45°", None), ("40°", "B"), ("40°", "B")])  # what the mix trains on
    record = {"id": "q1", "prompt": prompt, "predictions": [right], "answers": ["B"]}
    assert value_diagnostics(samples, [record], [p]) == {
        "select_value_rate": 100.0, "select_value_coverage": 100.0, "select_value_value_acc": 100.0,
        "select_value_option_acc": 100.0, "select_value_option_copy": 100.0 / 3,  # only candidate 1 names its value's option
        "select_value_lookup_acc": 100.0, "select_value_follows_lines": 100.0, "select_value_lines_vote_acc": 100.0,
        "select_value_table_acc": None, "select_value_differs": 1, "select_value_differs_option": 100.0,
        "select_value_differs_letter": 0.0}  # candidate 2 computed 40° (B) and answered C
    # a wrong value read, then the right lookup of it; a right value with the wrong option; a line skipped;
    # the answer follows the candidates' letters, not the lines
    messy = "Prediction 1: 50° is option C.\n Prediction 2: 40° is option D \nAnswer: C"
    record = {"id": "q1", "prompt": prompt, "predictions": [messy], "answers": ["C"]}
    got = value_diagnostics(samples, [record], [p])
    assert (got["select_value_value_acc"], got["select_value_option_acc"], got["select_value_lookup_acc"]) == (50.0, 0.0, 50.0)
    assert round(got["select_value_coverage"], 2) == 66.67
    assert (got["select_value_follows_lines"], got["select_value_lines_vote_acc"]) == (100.0, 0.0)  # tie C/D: C listed first
    # line 1 (candidate 3, answered D) reads 50°, option C: a lookup; line 2 (candidate 1, answered B) names D
    assert (got["select_value_differs"], got["select_value_differs_option"], got["select_value_differs_letter"]) == (1, 100.0, 0.0)
    copied = "Prediction 1: 45° is option D.\nPrediction 2: 40° is option B.\nPrediction 3: 40° is option C.\nAnswer: C"
    got = value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [copied], "answers": ["C"]}], [p])
    assert (got["select_value_differs"], got["select_value_differs_option"], got["select_value_differs_letter"]) == (1, 0.0, 100.0)
    nothing = value_target(p, [(None, None), ("40°", "B"), ("40°", "B")])
    got = value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [nothing], "answers": ["A"]}], [p])
    assert got["select_value_value_acc"] == 100.0 * 2 / 3 and got["select_value_follows_lines"] == 0.0
    # lines naming a position outside the list are left out; two predictions run into one line are not read
    extra = right + "\nPrediction 4: 40° is option B.\nPrediction 0: 40° is option B."
    got = value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [extra], "answers": ["B"]}], [p])
    assert got["select_value_value_acc"] == 100.0 and got["select_value_coverage"] == 100.0
    run_on = "Prediction 1: 45° is no option. Prediction 2: 40° is option C.\nAnswer: B"
    assert value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [run_on], "answers": ["B"]}], [p]) == {}
    # a prompt that does not list the question's samples, and a free-form select, are not value outputs
    unlisted = {"id": "q1", "prompt": prompts.select_prompt(p, texts[:2], PromptConfig()), "predictions": [right],
                "answers": ["B"]}
    assert value_diagnostics(samples, [unlisted], [p]) == {}
    free_q = Problem("q2", "/i.png", "y?", None, "40")
    free_samples = samples + [{"id": "q2", "predictions": texts, "answers": ["40", "40", "45"]}]
    both = [{"id": "q1", "prompt": prompt, "predictions": [right], "answers": ["B"]},
            {"id": "q2", "prompt": prompt, "predictions": [right], "answers": ["40"]}]
    assert value_diagnostics(free_samples, both, [p, free_q])["select_value_rate"] == 100.0  # of the multiple-choice ones
    check = check_target(p, [("no option", "D"), ("B", "B"), ("B", "C")])
    assert value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [check], "answers": ["B"]}], [p]) == {}
    free = Problem("q1", "/i.png", "x?", None, "40")
    assert value_diagnostics(samples, [record], [free]) == {}                    # multiple choice only


def test_value_diagnostics_read_table_targets_and_score_their_options_line():
    from experiments.diagnostics import value_diagnostics

    p, _, samples, prompt = _listed_select_case([0, 1, 2])
    right = value_target(p, [("40°", "B"), ("40°", "B"), ("45°", None)], ["20°", "40°", "50°", "80°"])
    assert right.startswith("Options: 20° is A, 40° is B, 50° is C, 80° is D.\nPrediction 1: 40° is B.\n")
    got = value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [right], "answers": ["B"]}], [p])
    assert (got["select_value_value_acc"], got["select_value_option_acc"], got["select_value_table_acc"]) == (100.0,) * 3
    slip = right.replace("50° is C", "50° is D")
    got = value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [slip], "answers": ["B"]}], [p])
    assert got["select_value_table_acc"] == 0.0 and got["select_value_option_acc"] == 100.0
    plain = value_target(p, [("40°", "B"), ("40°", "B"), ("45°", None)])      # value target: no table line
    got = value_diagnostics(samples, [{"id": "q1", "prompt": prompt, "predictions": [plain], "answers": ["B"]}], [p])
    assert got["select_value_table_acc"] is None and got["select_value_option_acc"] == 100.0


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
    from experiments.diagnostics import value_vote

    mc = Problem(id="m", image="/i.png", question="x?", choices=("20°", "40°", "50°", "80°"), answer="B")
    record = _samples("m", [("x = 40°.\nAnswer: C", "C"), ("x = 45°.\nAnswer: D", "D"), ("x = 40°.\nAnswer: A", "A"),
                            ("x = 40°.", None)])
    assert value_vote(record, mc) == "B"  # two moved to B; 45° is no option's value, so D stays D; None no vote
    assert letter_binding([record], [mc])["value_vote_acc"] == 100.0


def test_arithmetic_diagnostics_and_the_recompute_vote():
    from experiments.diagnostics import arithmetic_diagnostics, recompute_vote

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
    from experiments.diagnostics import shown_order

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


def test_listed_order_prefers_the_record_and_falls_back_to_the_prompt():
    """Select records written by eval.requests carry `shown`; older files are read back from the prompt."""
    from eval.requests import select_items
    from experiments.diagnostics import listed_order

    ps = [Problem("q0", "/img/0.png", "angle?", ("10°", "20°", "30°", "40°"), "B")]
    records = {"q0": {"id": "q0", "predictions": [f"q0 try {j}: x = {10 * j}°.\nAnswer: B" for j in range(3)]}}
    (req,) = select_items(ps, records, None, 1, "t", PromptConfig())
    new_record = {"id": req.id, "prompt": req.prompt, "predictions": ["Answer: A"], **req.meta}
    old_record = {k: v for k, v in new_record.items() if k != "shown"}   # a file written before `shown`
    assert listed_order(new_record, records["q0"]) == req.meta["shown"] == listed_order(old_record, records["q0"])
