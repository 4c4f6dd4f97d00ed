"""experiments.arithmetic: which "=" chains are arithmetic steps, and their recomputed values."""

import pytest

from experiments.arithmetic import arithmetic_steps, evaluate, recomputed_value, wrong_steps


@pytest.mark.parametrize("expression,value", [
    ("180° - 124°", 56.0), ("2 × 8 ÷ 4", 4.0), ("(180° - 76°) ÷ 2", 52.0), ("39² - 36²", 225.0),
    ("2 · 3 − 1", 5.0), ("7", 7.0), ("1.5 * 4", 6.0), ("-3 + 5", 2.0),
    ("2 ** 100", None),        # only ² and ³ are powers
    ("4 ÷ 0", None), ("2 × ", None), ("__import__('os')", None), ("x + 1", None)])
def test_evaluate_reads_plain_arithmetic_only(expression, value):
    assert evaluate(expression) == value


def steps(text):
    return [(s.left, s.right, s.expected, s.written, s.wrong) for s in arithmetic_steps(text)]


@pytest.mark.parametrize("text,expected", [
    ("So ∠BOC = 180° - 124° = 56°.\nAnswer: B", [("180° - 124°", "56°", 56.0, 56.0, False)]),
    ("So BC = DE × AB ÷ AD = 2 × 8 ÷ 4 = 3.\nAnswer: C", [("2 × 8 ÷ 4", "3", 4.0, 3.0, True)]),
    # a chain: each pair of whole sides is a step; "AB²" and "64 + 144" are sides of two steps
    ("AB² = 8² + 15² = 64 + 144 = 16, so AB = 17.",
     [("8² + 15²", "64 + 144", 289.0, 208.0, True), ("64 + 144", "16", 208.0, 16.0, True)]),
    # a left side with symbols before it is not whole ("∠A - 85°"), nor one glued to a symbol ("∠2")
    ("So ∠C = 180° - ∠A - 85° = 180° - 70° - 85° = 45°.", [("180° - 70° - 85°", "45°", 25.0, 45.0, True)]),
    ("∠1 + ∠2 = 180°. So ∠2 = 180° - 62° = 118°.", [("180° - 62°", "118°", 118.0, 118.0, False)]),
    # a right side that goes on with a symbol or a unit is not whole
    ("∠AOB = 2 × ∠ACB = 2 × 40° = 80°.", [("2 × 40°", "80°", 80.0, 80.0, False)]),
    ("AB × 2 + 4 = 10", []), ("x = 12 cm + 3 cm = 15 cm", []), ("k = 3 + 4 = 7 cm", []),
    ("∠2 = ∠1 = 50°.\nAnswer: D", []), ("no equals sign at all", []), ("", []),
    ("the area = 13 × 8 = 8 = 13.", [("13 × 8", "8", 104.0, 8.0, True)]),
    ("AB = AD + DB = 4 + 4 = 8. So x = 1.5 + 1 = 2.5, then", [("4 + 4", "8", 8.0, 8.0, False),
                                                            ("1.5 + 1", "2.5", 2.5, 2.5, False)]),
    # a word, symbol or ratio before a number belongs to it: no left side (never a false wrong step)
    ("sin 30° × 8 = 4", []), ("half of 8 + 2 = 6", []), ("∠ 1 + 10 = 40", []), ("AD : DB = 1 : 2 = 3 ÷ 6", []),
    ("angle 2 = 60° + 30° = 90°", [("60° + 30°", "90°", 90.0, 90.0, False)]),
    # after the end of a sentence or clause a left side may start
    ("AB = 4 + 4 = 8. 2 × 8 = 15, so", [("4 + 4", "8", 8.0, 8.0, False), ("2 × 8", "15", 16.0, 15.0, True)]),
    ("so x = 9, 2 + 3 = 5", [("2 + 3", "5", 5.0, 5.0, False)]),
    ("x = 4 + 4 = 8.\n2 × 5 = 10", [("4 + 4", "8", 8.0, 8.0, False), ("2 × 5", "10", 10.0, 10.0, False)]),
    # thousands separators, and brackets that do not close
    ("500 + 500 = 1,000", [("500 + 500", "1000", 1000.0, 1000.0, False)]),
    ("1,000 - 1 = 999", [("1000 - 1", "999", 999.0, 999.0, False)]),
    ("(2 + 3 = 5", []), ("2 + 3) = 5", [])])
def test_arithmetic_steps_read_whole_sides(text, expected):
    assert steps(text) == expected


@pytest.mark.parametrize("text,wrong", [
    ("10 ÷ 3 = 3.33", False), ("10 ÷ 3 = 3.3", False), ("10 ÷ 3 = 3.4", True),  # a decimal may round
    ("7 ÷ 2 = 3", True), ("7 ÷ 2 = 4", True), ("7 ÷ 2 = 3.5", False)])         # a whole number may not
def test_written_decimals_may_round(text, wrong):
    (step,) = arithmetic_steps(text)
    assert step.wrong is wrong


def test_long_or_deep_sides_are_not_read():
    chain = " + ".join(["1"] * 1500)
    assert evaluate(chain) is None or evaluate(chain) == 1500.0  # no RecursionError either way
    assert arithmetic_steps(f"x = {chain} = 5") == []
    assert evaluate("(" * 500 + "1" + ")" * 500) in (None, 1.0)


def test_wrong_steps_and_recomputed_value():
    text = "AB = AD + DB = 4 + 4 = 9. So BC = 2 × 9 ÷ 4 = 4.\nAnswer: B"
    assert wrong_steps(text) == 2
    assert recomputed_value(text) == 4.5  # the last step redone with what it was given
    assert recomputed_value("∠2 = ∠1 = 50°.") is None and wrong_steps("∠2 = ∠1 = 50°.") == 0


def test_geosynth_gold_rationales_have_no_wrong_step():
    from data_gen.geosynth import make_item

    found = 0
    for i in range(100):
        rationale = make_item(3, "train", i)[0]["rationale"]
        assert wrong_steps(rationale) == 0, rationale
        found += len(arithmetic_steps(rationale))
    assert found >= 80  # most gold rationales compute something
