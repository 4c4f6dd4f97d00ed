"""Tables of extraction and judging cases for eval/answers.py.

Each row is (text, expected) with an id; rows marked "REF" guard against a reference behaviour
(REFERENCE.md §4, §7.10) that must not come back.
"""

import pytest

from eval.answers import (computed_value_text, derived_option, derived_value_matches, extract_answer, is_correct,
                          normalize_number, option_of_value, option_value_texts)

GEO = ["20°", "40°", "50°", "80°"]           # GeoQA-style numeric choices
SURD = ["2√3cm", "4√{3}cm", "√3cm", "6cm"]   # choices that are expressions, not plain numbers
WORDS = ["parallel", "perpendicular", "equal", "none of these"]

# --------------------------------------------------------------------------- multiple choice

MC_CASES = [
    # The reference target formats (REFERENCE.md §3): select "Answer:\n B", QA "Answer: \nB".
    ("select_target", "Answer:\n B", GEO, "B"),
    ("qa_target", "Answer: \nB", GEO, "B"),
    ("answer_colon_letter", "So the angle is 40°.\nAnswer: B", GEO, "B"),
    ("paren_letter_with_text", "Answer: (B) 40°", GEO, "B"),
    ("letter_dot", "Answer: C.", GEO, "C"),
    ("letter_paren_close", "Answer: D) 80°", GEO, "D"),
    ("bracketed_lowercase", "Answer: (c)", GEO, "C"),
    ("lone_lowercase", "answer: b", GEO, "B"),
    ("answer_is_letter", "Therefore, the answer is B.", GEO, "B"),
    ("the_answer_is_paren", "The answer is (A)", GEO, "A"),
    ("final_answer", "Final answer: D", GEO, "D"),
    ("answer_is_colon_bold", "The answer is: **C**", GEO, "C"),
    ("bold_marker", "**Answer:** A", GEO, "A"),
    ("bold_marker_outside_colon", "**Answer**: C", GEO, "C"),
    ("latex_letter", "Answer: $B$", GEO, "B"),
    ("boxed_letter_after_marker", "Answer: \\boxed{C}", GEO, "C"),
    ("option_word", "The answer is option D", GEO, "D"),
    ("uppercase_marker", "ANSWER: A", GEO, "A"),
    ("answer_should_be", "So the answer should be C", GEO, "C"),
    ("letter_then_is", "Answer: A is correct since OA = OB.", GEO, "A"),
    # REF: the metric split on lowercase "answer" only (case-sensitive); both cases must work.
    ("lowercase_answer_is", "hence the answer is c", GEO, "C"),
    # REF: "…Answer: 40°" was read as the last letter of the text (R); the choice text must win.
    ("choice_text_degree", "Answer: 40°", GEO, "B"),
    ("choice_text_plain_number", "Answer: 50", GEO, "C"),
    ("choice_text_degrees_word", "The answer is 80 degrees.", GEO, "D"),
    ("choice_text_latex_circ", "Answer: $20^{\\circ}$", GEO, "A"),
    ("choice_text_after_equals", "Answer: ∠BOC = 40°", GEO, "B"),
    ("choice_text_after_is", "Answer: the angle is 50°", GEO, "C"),
    ("choice_text_surd", "Answer: 4√3 cm", SURD, "B"),
    ("choice_text_latex_sqrt", "Answer: $2\\sqrt{3}$cm", SURD, "A"),
    ("choice_text_word", "Answer: Perpendicular.", WORDS, "B"),
    ("choice_text_inside_line", "Answer: they are perpendicular to each other", WORDS, "B"),
    # A value that is no choice is no answer, even if it is a number.
    ("number_not_a_choice", "Answer: 45°", GEO, None),
    # "2" must not match "2√3cm" by its leading digit.
    ("surd_prefix_not_number", "Answer: 2", SURD, None),
    # REF: several markers (the reference used the last too); a later one wins over an earlier one.
    ("last_marker_wins", "Answer: A\nWait, recheck: OA = OB, so ∠B = 40°.\nAnswer: B", GEO, "B"),
    ("last_marker_phrase", "The model's answer: C. Recomputing... the answer is D", GEO, "D"),
    # A judgement about an answer ("answer is incorrect") is not a marker.
    ("judgement_not_marker", "Answer: B\nThis answer is correct because OA = OB.", GEO, "B"),
    ("refine_output", "The model's answer is incorrect. ∠AOB = 80°, so ∠C = 40°.\nAnswer: B", GEO, "B"),
    # REF: a letter outside the choices (E with 4 choices) → None, not a crash or a wrong letter.
    ("letter_out_of_range", "Answer: E", GEO, None),
    ("paren_letter_out_of_range", "Answer: (F)", GEO, None),
    # REF: the standalone-letter fallback read an article "A" in prose as option A.
    ("article_a_no_marker", "A triangle has three sides, so the sum of angles is 180.", GEO, None),
    ("article_a_after_marker", "Answer: A triangle with two equal sides", GEO, None),
    ("pronoun_i", "Answer: I am not sure", GEO, None),
    # REF: "FAILED" was voted and read as D; garbage and empty text are no answer.
    ("failed", "FAILED", GEO, None),
    ("garbage", "asdf qwer zxcv", GEO, None),
    ("empty", "", GEO, None),
    ("whitespace", "   \n ", GEO, None),
    # A marker with nothing after it (a truncated generation) is no answer; no reaching back.
    ("truncated_after_marker", "Answer: B. Let me double-check. The answer is", GEO, None),
    # No marker: the last \boxed{} wins.
    ("boxed_no_marker", "Thus ∠C = \\boxed{B}", GEO, "B"),
    ("boxed_choice_text", "Thus ∠C = \\boxed{40^\\circ}", GEO, "B"),
    # No marker: an explicit "correct option" sentence.
    ("correct_option_is", "Checking each: the correct option is (C).", GEO, "C"),
    ("option_is_correct", "So option A is correct.", GEO, "A"),
    # No marker: a final line that is only an answer.
    ("final_line_paren", "OA = OB, so ∠A = ∠B = 40°.\n(B)", GEO, "B"),
    ("final_line_letter_dot", "Reasoning ...\nB.", GEO, "B"),
    ("final_line_letter", "B", GEO, "B"),
    ("final_line_choice_text", "Reasoning ...\n40°", GEO, "B"),
    # No marker and the letter only inside prose → None (the reference took the last "(X)").
    ("no_marker_prose_letters", "(A) is wrong because ∠B = 40°, and (C) is too large", GEO, None),
    ("no_marker_prose_number", "So the angle is 40° and we are done", GEO, None),
    # Dataset choices that keep their own "A." prefix still match by text.
    ("choice_with_own_prefix", "Answer: 40°", ["A. 20°", "B. 40°", "C. 50°", "D. 80°"], "B"),
    # Tuples work like lists (Problem.choices is a tuple).
    ("choices_tuple", "Answer: 80°", tuple(GEO), "D"),
]


@pytest.mark.parametrize("text,choices,expected", [c[1:] for c in MC_CASES],
                         ids=[c[0] for c in MC_CASES])
def test_extract_multiple_choice(text, choices, expected):
    assert extract_answer(text, choices) == expected


# --------------------------------------------------------------------------- free form

FREE_CASES = [
    ("integer", "Answer: 42", "42"),
    ("thousands_comma", "The answer is 1,000.", "1000"),
    ("trailing_zero", "Answer: 0.50", "0.5"),
    ("negative", "Answer: -3", "-3"),
    ("unicode_minus", "Answer: −3.5", "-3.5"),
    ("leading_dot", "Answer: .25", "0.25"),
    ("fraction_slash", "Answer: 3/4", "0.75"),
    ("latex_frac", "Answer: $\\frac{1}{2}$", "0.5"),
    ("latex_dfrac_negative", "Answer: $-\\dfrac{3}{4}$", "-0.75"),
    ("boxed_frac_no_marker", "so x = \\boxed{\\frac{1}{3}}", "0.3333333333"),
    ("degrees_sign", "Answer: 40°", "40"),
    ("degrees_word", "Answer: 40 degrees", "40"),
    ("latex_circ", "Answer: $40^\\circ$", "40"),
    ("percent", "Answer: 25%", "25"),
    ("latex_percent", "Answer: 25\\%", "25"),
    ("unit_spaced", "Answer: 12 cm", "12"),
    ("unit_attached", "Answer: 12cm", "12"),
    ("after_equals", "Answer: x = 5", "5"),
    ("after_is", "Answer: The total is 17 apples.", "17"),
    ("approximately", "Answer: approximately 3.14", "3.14"),
    ("integer_float", "Answer: 7.0", "7"),
    ("expression_is_phrase", "Answer: 2√3", "2√3"),
    ("variable_is_phrase", "Answer: 3x", "3x"),
    ("ratio_is_phrase", "Answer: 1:2", "1:2"),
    ("yes", "Answer: Yes", "yes"),
    ("yes_sentence", "The answer is yes, because the bars are equal.", "yes"),
    ("no_dot", "Answer: No.", "no"),
    ("none_is_not_no", "Answer: None", "none"),
    ("phrase", "Answer: New York.", "new york"),
    ("phrase_first_sentence", "Answer: Blue. The other bars are red.", "blue"),
    ("phrase_quoted", 'Answer: "Canada"', "canada"),
    ("lowercase_marker", "the answer is 12", "12"),
    ("last_marker_free", "Answer: 3\nOn reflection, the answer is 4", "4"),
    ("next_line", "Answer:\n 9", "9"),
    # No marker: only a bare final answer line or \boxed counts.
    ("bare_number_line", "Sum the bars.\n1,250", "1250"),
    ("bare_yes_line", "Compare both.\nYes", "yes"),
    ("boxed_no_marker_free", "We get \\boxed{12}.", "12"),
    ("prose_no_marker", "The tallest bar is 12 and the shortest is 3", None),
    # REF: "FAILED"/garbage got random credit or a letter; here it is no answer.
    ("failed_free", "FAILED", None),
    ("empty_free", "", None),
    ("marker_nothing_after", "Answer:", None),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in FREE_CASES],
                         ids=[c[0] for c in FREE_CASES])
def test_extract_free_form(text, expected):
    assert extract_answer(text) == expected


# --------------------------------------------------------------------------- judging

JUDGE_CASES = [
    # (id, text, gold, choices, rel_tol, expected)
    ("mc_letter", "Answer: B", "B", GEO, 0.0, True),
    ("mc_wrong_letter", "Answer: C", "B", GEO, 0.0, False),
    ("mc_text_match", "Answer: 40°", "B", GEO, 0.0, True),
    # REF: the last-letter fallback made "Answer: 40°" wrong even when 40° was the gold.
    ("mc_text_match_not_letter", "Answer: 40°", "D", GEO, 0.0, False),
    # REF: no answer got 75% random credit; it must never be correct.
    ("mc_no_answer", "I cannot tell.", "A", GEO, 0.0, False),
    ("mc_failed_not_d", "FAILED", "D", GEO, 0.0, False),
    ("mc_gold_lowercase", "Answer: (b)", "b", GEO, 0.0, True),
    ("free_equal_values", "Answer: 1,000", "1000", None, 0.0, True),
    ("free_fraction_vs_decimal", "Answer: \\frac{1}{2}", "0.5", None, 0.0, True),
    ("free_gold_fraction", "Answer: 0.75", "3/4", None, 0.0, True),
    ("free_third", "x = \\boxed{\\frac{1}{3}}", "1/3", None, 0.0, True),
    ("free_close_not_exact", "Answer: 0.333", "1/3", None, 0.0, False),
    ("free_percent_vs_plain", "Answer: 25%", "25", None, 0.0, True),
    # ChartQA relaxed accuracy: within 5% of the gold.
    ("relaxed_inside", "Answer: 104", "100", None, 0.05, True),
    ("relaxed_edge", "Answer: 95", "100", None, 0.05, True),
    ("relaxed_outside", "Answer: 106", "100", None, 0.05, False),
    ("strict_outside", "Answer: 104", "100", None, 0.0, False),
    ("relaxed_zero_gold", "Answer: 0.01", "0", None, 0.05, False),
    ("relaxed_negative", "Answer: -9.6", "-10", None, 0.05, True),
    ("yes_case", "The answer is Yes.", "yes", None, 0.0, True),
    ("yes_vs_no", "Answer: yes", "No", None, 0.0, False),
    ("phrase_case", "Answer: new york", "New York", None, 0.0, True),
    ("phrase_different", "Answer: Boston", "New York", None, 0.0, False),
    ("phrase_vs_number", "Answer: twelve", "12", None, 0.0, False),
    ("free_none_never_matches", "no idea", "12", None, 0.0, False),
    ("free_gold_with_unit", "Answer: 12", "12 cm", None, 0.0, True),
]


@pytest.mark.parametrize("text,gold,choices,rel_tol,expected", [c[1:] for c in JUDGE_CASES],
                         ids=[c[0] for c in JUDGE_CASES])
def test_is_correct(text, gold, choices, rel_tol, expected):
    assert is_correct(text, gold, choices, rel_tol=rel_tol) is expected


@pytest.mark.parametrize("gold", ["E", "AB", "", "40°"], ids=["out_of_range", "two_letters", "empty", "text"])
def test_bad_gold_letter_is_an_error(gold):
    # A gold that is no option letter is a loader bug; it must not silently score as wrong.
    with pytest.raises(ValueError, match="not an option letter"):
        is_correct("Answer: A", gold, GEO)


NUMBER_CASES = [
    ("plain", "42", 42.0),
    ("comma", "1,234,567", 1234567.0),
    ("decimal", "-0.5", -0.5),
    ("fraction", "3/4", 0.75),
    ("frac", "\\frac{1}{4}", 0.25),
    ("boxed_dollar", "$\\boxed{7}$", 7.0),
    ("degree", "40°", 40.0),
    ("unit", "12 cm", 12.0),
    ("zero_denominator", "1/0", None),
    ("surd", "2√3", None),
    ("variable", "3x", None),
    ("words", "twelve", None),
    ("european_decimal", "3,5", None),
    ("arithmetic", "3 + 4", None),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in NUMBER_CASES],
                         ids=[c[0] for c in NUMBER_CASES])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


def test_extraction_is_deterministic():
    # REF: the reference's judge was random when nothing was found; repeated calls must agree.
    texts = [c[1] for c in MC_CASES]
    assert [extract_answer(t, GEO) for t in texts] == [extract_answer(t, GEO) for t in texts]


@pytest.mark.parametrize("text,letter,expected", [
    ("∠AOC + ∠BOC = 180°, so ∠BOC = 180° - 130° = 50°.\nAnswer: C", "C", True),   # chained "="
    ("So ∠BOC = 180° - 124° = 66°.\nAnswer: C", "C", False),        # computed 66, names C (50°)
    ("x = 40 degrees, so the answer is B", "B", True),                 # marker "answer is", unit word
    ("x = 40°. Answer: x = 50°", "C", True),                           # the answer line's "=" wins
    ("x = 40°. Answer: x = 50°", "B", False),
    ("∠AOC = 130°.\nAnswer: ∠BOC = 180° - 130° = 50°", "C", True),
    ("x = 5, so y = 40°, z = 20°.\nAnswer: B", "B", False),           # the last "=" counts
    ("∠AOB = 180° - 130°.\nAnswer: C", "C", None),                    # an expression with units
    ("x = 12 cm + 3 cm.\nAnswer: C", "C", None),
    ("x = 40.\nAnswer: (b)", "(b)", True),                             # the letter as extracted or written
    ("The angles are equal.\nAnswer: B", "B", None),                   # no "=": nothing to compare
    ("x = 2y + 4.\nAnswer: A", "A", None),                             # an expression, not a value
    ("x = 20°.\nAnswer: E", "E", None),                                # a letter outside the choices
    ("", "A", None),
])
def test_derived_value_matches(text, letter, expected):
    assert derived_value_matches(text, letter, GEO) is expected


@pytest.mark.parametrize("text,choices,expected", [
    ("x = 0.333.\nAnswer: A", ["1/3", "1/2", "2", "3"], True),          # equal to the precision written
    ("AB = 3.46.\nAnswer: A", ["3.464", "2", "1", "5"], True),
    ("x = 200.\nAnswer: A", ["201", "2", "1", "5"], False),
    ("x = 3/4.\nAnswer: A", ["0.75", "1", "2", "3"], True),
    ("x = -5.\nAnswer: A", ["-5", "5", "1", "2"], True),                # a sign, not an operator
    ("x = 1,000 m.\nAnswer: A", ["1000", "5", "1", "2"], True),         # a thousands comma
    ("x = 20°.\nAnswer: A", ["(A) 20°", "(B) 40°", "(C) 50°", "(D) 80°"], True),  # options with letters
])
def test_derived_value_precision_signs_and_option_prefixes(text, choices, expected):
    assert derived_value_matches(text, "A", choices) is expected


def test_derived_value_needs_numeric_options():
    assert derived_value_matches("r = 2√3.\nAnswer: A", "A", ["2√3", "3", "4", "5"]) is None
    assert derived_value_matches("x = 3.\nAnswer: B", "B", ["2√3", "3", "4", "5"]) is True
    assert derived_value_matches("x = 3.\nAnswer: B", "B", None) is None


def test_derived_option():
    assert derived_option("∠B = 180° - 130° = 50°.\nAnswer: A", GEO) == "C"
    assert derived_option("x = 45°.\nAnswer: A", GEO) is None      # no option has that value
    assert derived_option("The answer is B", GEO) is None            # nothing computed
    assert derived_option("x = 40", None) is None
    assert derived_option("x = 40.\nAnswer: B", ["40°", "40", "50", "80"]) is None  # two options have it


@pytest.mark.parametrize("text,expected", [
    ("∠B = 180° - 130° = 50°.\nAnswer: A", "50°"),          # the last value, not the expression before it
    ("x = 20 because the angles add up.\nAnswer: B", "20"),  # the number, not the rest of its clause
    ("AB = 3.5 cm, so.\nAnswer: C", "3.5"),
    ("p = 50 %.\nAnswer: A", "50 %"),
    ("x = 1,000.\nAnswer: A", "1,000"),
    ("x = 1/3.\nAnswer: A", "1/3"),
    ("x = about 40 answer: B\nAnswer: B", "40"),             # without a lead-in
    ("x = \\frac{1}{2}.\nAnswer: A", "\\frac{1}{2}"),           # no plain number: the whole clause
    ("x = 180° - 130°.\nAnswer: A", None),                  # an expression computes nothing
    ("The answer is B", None),
    ("", None),
])
def test_computed_value_text_is_the_value_as_written(text, expected):
    assert computed_value_text(text) == expected


def test_option_value_texts_write_each_option_as_a_computed_value_is_written():
    assert option_value_texts(["(A) 12 cm", "B. 3/4", "2√3", "40°"]) == ["12", "3/4", "2√3", "40°"]
    assert [option_of_value(v, GEO) for v in option_value_texts(GEO)] == ["A", "B", "C", "D"]


def test_option_of_value_reads_a_written_value_like_a_computed_one():
    assert option_of_value("50°", GEO) == "C" and option_of_value("50", GEO) == "C"
    assert option_of_value("45°", GEO) is None                      # no option has it
    assert option_of_value("40", ["40°", "40", "50", "80"]) is None  # two options have it
    assert option_of_value("", GEO) is None and option_of_value("50°", None) is None
    pairs = [(text, choices) for text in ("∠B = 180° - 130° = 50°.\nAnswer: A", "x = 0.333.\nAnswer: A")
             for choices in (GEO, ["1/3", "1/2", "2", "3"])]
    assert [derived_option(text, choices) for text, choices in pairs] == ["C", None, None, "A"]
    for text, choices in pairs:
        assert option_of_value(computed_value_text(text), choices) == derived_option(text, choices)
