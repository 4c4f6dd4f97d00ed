"""The check and value diagnostics of eval/evaluate.py on outputs of the research select targets
(experiments/select_targets.py builds the target texts the diagnostics read back)."""

from core.config import PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from experiments.select_targets import check_target, value_target


def _listed_select_case(shown: list[int]):
    """One multiple-choice question (gold B = 40°), its three samples (40° -> B, 40° -> C, 45° -> D) and a
    select prompt listing them in the order `shown` (sample indices)."""
    p = Problem("q1", "/i.png", "x?", ("20°", "40°", "50°", "80°"), "B")
    texts = ["x = 40°.\nAnswer: B", "x = 40°.\nAnswer: C", "x = 45°.\nAnswer: D"]
    samples = [{"id": "q1", "predictions": texts, "answers": ["B", "C", "D"], "correct": [True, False, False]}]
    return p, texts, samples, prompts.select_prompt(p, [texts[j] for j in shown], PromptConfig())


def test_check_diagnostics_score_the_lines_against_the_listed_candidates():
    from eval.evaluate import check_diagnostics

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
    from eval.evaluate import value_diagnostics

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
    from eval.evaluate import value_diagnostics

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
