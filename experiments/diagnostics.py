"""Diagnostics of the GeoSynth research: how the model's self-select answers and rationales relate to
their candidates and options (not part of R3V). Registered as metrics by name when imported; a run
lists the ones it wants (plugins=[experiments.variants] metrics=[select_vs_vote, letter_binding, ...]):

    select_vs_vote   select_diagnostics: answers outside the candidates, overridden unanimous sets,
                     departures from a clear majority and who was right then, select-only vs vote-only
                     right answers and their sign test; with pointer targets, whether the named
                     candidate is copied and is right more often than chance
    check_lines      check_diagnostics: whether check lines read the candidates right
    value_lines      value_diagnostics: whether value lines copy each candidate's value, find its option,
                     and whether the answer follows the lines
    letter_binding   how often a sampled multiple-choice rationale names another letter than the option
                     whose value it computed, and two votes that read values (rules, not part of R3V)
    arithmetic       how often the arithmetic steps of the samples are wrong, and a vote after redoing
                     each candidate's last step
    select_vs_rules  where a rule that reads each candidate's value changes the vote, which answer
                     self-select takes

Every number is recomputed from the run's JSONL files (python -m eval.evaluate outputs/<run>/iter_k).
"""

from __future__ import annotations

import re
from collections import Counter

from data_gen import prompts
from data_gen.problem import LETTERS, Problem
from eval.answers import (computed_value_text, derived_option, derived_value_matches, option_of_value,
                          option_value_texts)
from eval.evaluate import METRICS
from eval.metrics import majority_vote, sign_test_p
from experiments.arithmetic import arithmetic_steps, recomputed_value


def select_diagnostics(samples: list[dict], selects: list[dict]) -> dict:
    """Self-select answers against the candidates shown (at test time all K samples of a question).

    outside: % of select records whose answer none of the candidates gave (a select without an
    answer is not outside, but stays in the denominator); unanimous: every candidate has an answer
    and all agree; overrides: the select answer differs from a unanimous one, and how often the
    candidates were right then (their own `correct` flags). departs: the candidates' answers have
    one most frequent answer (no tie) and the select answer is another; then how often the select
    answer was right and how often that majority was (does judging beat the vote where they differ?).
    only_right: questions where the select answer is right and the vote over the same candidates
    (majority_vote: ties to the first, as MV@K; right by the winning candidate's own `correct` flag,
    which for multiple choice is MV@K's gold comparison) is wrong, and the reverse; their sign-test p
    says whether SS@K and MV@K differ by more than chance on these questions (repeats of one problem in
    the test split count as separate questions, so for GeoSynth it likely understates p).
    """
    if not selects:
        return {}
    by_id = {r["id"]: r for r in samples}
    outside = unanimous = overrides = overrides_right = departs = departs_right = departs_majority_right = 0
    select_only = vote_only = 0
    for r in selects:
        sample, pick = by_id[r["id"]], r["answers"][0]
        cands = sample["answers"]
        vote = majority_vote(cands)
        vote_right = vote is not None and bool(sample["correct"][cands.index(vote)])
        select_only += bool(r["correct"][0]) and not vote_right
        vote_only += vote_right and not r["correct"][0]
        outside += pick is not None and pick not in cands
        if None not in cands and len(set(cands)) == 1:
            unanimous += 1
            if pick != cands[0]:
                overrides += 1
                overrides_right += all(sample["correct"])
        majority = strict_majority(cands)
        if majority is not None and pick != majority:
            departs += 1
            departs_right += bool(r["correct"][0])
            departs_majority_right += bool(sample["correct"][cands.index(majority)])
    return {"select_outside_candidates_rate": 100.0 * outside / len(selects),
            "select_unanimous": unanimous, "select_overrides_unanimous": overrides,
            "select_overrides_right_unanimous": overrides_right,
            "select_departs_majority": departs, "select_departs_majority_right": departs_right,
            "select_departs_majority_vote_right": departs_majority_right,
            "select_only_right": select_only, "vote_only_right": vote_only,
            "select_vs_vote_p": sign_test_p(select_only, vote_only), **pointer_diagnostics(by_id, selects)}


POINTER = re.compile(r"\s*Prediction (\d+) is correct")


def read_pointer(output: str) -> int | None:
    """The candidate position a select output names first (experiments.select_targets' pointer target) ("Prediction 2 is correct."), if any."""
    match = POINTER.match(output)
    return int(match.group(1)) if match else None


def strict_majority(answers: list[str | None]) -> str | None:
    """The one most frequent answer (None answers do not vote); None on a tie or with no answers."""
    counts = Counter(a for a in answers if a is not None).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def shown_order(prompt: str, predictions: list[str]) -> list[int] | None:
    """Sample indices in the order the select prompt lists them (None if the prompt does not list
    exactly these samples). Each candidate's text is cut out between its label and the next one and
    compared whole, so a sample whose text starts another's is not mistaken for it."""
    labels = [prompts.candidate_label(pos) for pos in range(1, len(predictions) + 1)]
    starts, at = [], 0
    for label in labels:
        at = prompt.find(label, at)
        if at < 0:
            return None
        starts.append(at + len(label))
    order = []
    for pos, start in enumerate(starts):
        if pos + 1 < len(starts):  # the text up to the newline before the next label
            chunk = prompt[start:starts[pos + 1] - len(labels[pos + 1]) - 1]
            found = next((j for j, text in enumerate(predictions) if text == chunk), None)
        else:                      # the last one is followed by a newline and the instruction
            rest = prompt[start:]
            fits = [j for j, text in enumerate(predictions) if rest.startswith(text + "\n")]
            found = max(fits, key=lambda j: len(predictions[j]), default=None)
        if found is None:
            return None
        order.append(found)
    return order


def listed_order(select: dict, sample: dict) -> list[int] | None:
    """Sample indices in the order the select record's prompt lists them: its `shown` field
    (eval.requests writes it), else read back from the prompt (files written before it existed)."""
    if "shown" in select:
        return select["shown"]
    return shown_order(select["prompt"], sample["predictions"])


def pointer_diagnostics(samples_by_id: dict[str, dict], selects: list[dict]) -> dict:
    """Select outputs that name a candidate first (mix.select_target=pointer): does the model copy
    the named candidate's answer, and does it name a correct candidate more often than chance
    (the mean share of correct candidates, what a random pick gets)? Empty if none names one."""
    named = copies = right = 0
    chance = 0.0
    for r in selects:
        position = read_pointer(r["predictions"][0])
        sample = samples_by_id[r["id"]]
        order = listed_order(r, sample) if position else None
        if order is None or not 1 <= position <= len(order):
            continue
        j = order[position - 1]
        named += 1
        copies += r["answers"][0] is not None and r["answers"][0] == sample["answers"][j]
        right += bool(sample["correct"][j])
        chance += sum(map(bool, sample["correct"])) / len(sample["correct"])
    if not named:
        return {}
    return {"select_pointer_rate": 100.0 * named / len(selects),
            "select_pointer_copies": 100.0 * copies / named,
            "select_pointer_correct": 100.0 * right / named,
            "select_pointer_chance": 100.0 * chance / named}


CHECK_LINE = re.compile(r"^\s*Prediction (\d+): (?:computed ([^,\n]+?), ?)?answered ([^\n]+?)\.?[ \t\r]*$", re.M)
VALUE_LINE = re.compile(r"^\s*Prediction (\d+): (?:no value|((?:(?!Prediction \d).)+?) is (?:(?:option )?([A-Z])|no option))"
                        r"\.?[ \t\r]*$", re.M)
TABLE_LINE = re.compile(r"^\s*Options: (.*?)\.?[ \t\r]*$", re.M)


def options_table(values: list[str]) -> str:
    """The options listed value first, as mix.select_target=table writes them: "28° is A, 56° is B"."""
    return ", ".join(f"{v} is {LETTERS[i]}" for i, v in enumerate(values))


def _listed_lines(samples: list[dict], selects: list[dict], line: re.Pattern):
    """(select record, its question's samples, the listed order, the lines found) for each select output
    with lines of this pattern whose prompt lists the question's samples; the lines as (0-based listed
    position, the pattern's other groups...), lines naming a position outside the list left out."""
    by_id = {r["id"]: r for r in samples}
    for r in selects:
        found = line.findall(r["predictions"][0])
        sample = by_id[r["id"]]
        order = listed_order(r, sample) if found else None
        if order is not None:
            yield r, sample, order, [(int(pos) - 1, *rest) for pos, *rest in found if 1 <= int(pos) <= len(order)]


def check_diagnostics(samples: list[dict], selects: list[dict], problems: list[Problem]) -> dict:
    """Select outputs with check lines (mix.select_target=check, experiments.select_targets): how
    often a line states the listed candidate's answer, and (multiple choice) the option whose value
    it computed, correctly, and how many of the listed candidates get a line (coverage). computed_copy:
    how often the computed option is the answer the candidate gave, which is what a line would score
    by repeating the answered letter instead of reading the value. Outputs whose prompt does not list
    the question's samples are left out. Empty if no output has check lines."""
    choices = {p.id: p.choices for p in problems}
    with_lines = lines = answered = computed = computed_lines = copy = 0
    covered = 0.0
    for r, sample, order, found in _listed_lines(samples, selects, CHECK_LINE):
        with_lines += 1
        covered += len({at for at, _, _ in found}) / len(order)
        for at, said_computed, said_answered in found:
            j = order[at]
            lines += 1
            answered += said_answered == (sample["answers"][j] or "nothing")
            if choices.get(r["id"]) and said_computed:
                computed_lines += 1
                truth = derived_option(sample["predictions"][j], choices[r["id"]]) or "no option"
                computed += said_computed == truth
                copy += truth == sample["answers"][j]
    if not with_lines:
        return {}
    return {"select_check_rate": 100.0 * with_lines / len(selects),
            "select_check_answered_acc": 100.0 * answered / lines if lines else None,
            "select_check_computed_acc": 100.0 * computed / computed_lines if computed_lines else None,
            "select_check_computed_copy": 100.0 * copy / computed_lines if computed_lines else None,
            "select_check_coverage": 100.0 * covered / with_lines}


def value_diagnostics(samples: list[dict], selects: list[dict], problems: list[Problem]) -> dict:
    """Select outputs with value lines (mix.select_target=value or table, experiments.select_targets), on
    multiple-choice questions. Per line of a listed candidate: value_acc, the written value (or "no
    value") is the one the candidate computed last, as written; option_acc (lines of candidates that
    computed a value), the option named is that value's option ("no option" where none has it), against
    option_copy, what naming the candidate's answered letter would score; lookup_acc (lines with a
    value), the option named is the written value's option, right or wrong value; differs (count), the
    lines whose written value has an option that is not the letter the candidate gave, and there
    differs_option / differs_letter, % naming the value's option / the candidate's letter (a lookup
    against a copy of the letter). Per output:
    coverage, the share of the listed candidates with a line; follows_lines, the answer is the vote
    of the options the lines name (outputs whose lines name one); lines_vote_acc, that vote is the gold
    answer; table_acc (mix.select_target=table), the first line lists the options as the target does
    (outputs with an "Options:" line); rate, the share of multiple-choice select outputs with value
    lines. Empty if no output has value lines."""
    by_id = {p.id: p for p in problems if p.choices}
    outputs = lines = value_right = option_lines = option_right = copy = lookup_lines = lookup_right = 0
    voted = follows = vote_right = tables = table_right = differs = differs_option = differs_letter = 0
    covered = 0.0
    selects = [s for s in selects if s["id"] in by_id]
    for r, sample, order, found in _listed_lines(samples, selects, VALUE_LINE):
        choices = by_id[r["id"]].choices
        outputs += 1
        covered += len({at for at, _, _ in found}) / len(order)
        table = TABLE_LINE.search(r["predictions"][0])
        if table:
            tables += 1
            table_right += table.group(1) == options_table(option_value_texts(choices))
        named = []
        for at, written, option in found:
            j = order[at]
            truth = computed_value_text(sample["predictions"][j])
            lines += 1
            value_right += (written or None) == truth
            if truth is not None:
                option_lines += 1
                true_option = option_of_value(truth, choices)
                option_right += (option or None) == true_option
                copy += true_option is not None and true_option == sample["answers"][j]
            if written:
                lookup_lines += 1
                lookup = option_of_value(written, choices)
                lookup_right += (option or None) == lookup
                if lookup is not None and lookup != sample["answers"][j]:
                    differs += 1
                    differs_option += option == lookup
                    differs_letter += option == sample["answers"][j]
            named.append(option or None)
        lines_vote = majority_vote(named)
        if lines_vote is not None:
            voted += 1
            follows += (r["answers"][0] if r["answers"] else None) == lines_vote
            vote_right += lines_vote == by_id[r["id"]].answer
    if not outputs:
        return {}
    def share(part: int, whole: int) -> float | None:
        return 100.0 * part / whole if whole else None

    return {"select_value_rate": 100.0 * outputs / len(selects),
            "select_value_coverage": 100.0 * covered / outputs,
            "select_value_value_acc": share(value_right, lines),
            "select_value_option_acc": share(option_right, option_lines),
            "select_value_option_copy": share(copy, option_lines),
            "select_value_lookup_acc": share(lookup_right, lookup_lines),
            "select_value_follows_lines": share(follows, voted),
            "select_value_lines_vote_acc": share(vote_right, voted),
            "select_value_table_acc": share(table_right, tables),
            "select_value_differs": differs, "select_value_differs_option": share(differs_option, differs),
            "select_value_differs_letter": share(differs_letter, differs)}


def consistent_vote(record: dict, problem: Problem) -> str | None:
    """The majority vote over a question's samples whose computed value is not another option's value
    (eval.answers.derived_value_matches is not False); over all K when none is. Not an R3V method: what
    a judge that drops candidates whose value and letter disagree could get."""
    consistent = [answer for text, answer in zip(record["predictions"], record["answers"])
                  if answer is not None and derived_value_matches(text, answer, problem.choices) is not False]
    return majority_vote(consistent or record["answers"])


def value_vote(record: dict, problem: Problem) -> str | None:
    """The majority vote after each answered sample is moved to the option whose value it computed
    (eval.answers.derived_option; its own letter when its value is no option's). Not an R3V method: what
    a judge that reads each candidate's value and finds its option could get."""
    return majority_vote([(derived_option(text, problem.choices) or answer) if answer is not None else None
                          for text, answer in zip(record["predictions"], record["answers"])])


def letter_binding(samples: list[dict], problems: list[Problem]) -> dict:
    """Sampled multiple-choice rationales whose last computed value is an option's value, and the
    percentage of those that then name another letter (eval.answers.derived_option); and the accuracy
    of consistent_vote and value_vote over the multiple-choice questions."""
    by_id = {p.id: p for p in problems if p.choices}
    bound = mismatched = consistent_right = value_right = voted = 0
    for r in samples:
        problem = by_id.get(r["id"])
        if problem is None:
            continue
        for text, answer in zip(r["predictions"], r["answers"]):
            option = derived_option(text, problem.choices) if answer is not None else None
            if option is not None:
                bound += 1
                mismatched += option != answer
        voted += 1
        consistent_right += consistent_vote(r, problem) == problem.answer
        value_right += value_vote(r, problem) == problem.answer
    return {"value_is_option": bound,
            "letter_mismatch_rate": 100.0 * mismatched / bound if bound else None,
            "consistent_vote_acc": 100.0 * consistent_right / voted if voted else None,
            "value_vote_acc": 100.0 * value_right / voted if voted else None}


def recompute_vote(record: dict, problem: Problem) -> str | None:
    """The majority vote after each answered sample is moved to the option whose value its last
    arithmetic step really gives (experiments.arithmetic.recomputed_value), else to the option whose value it
    computed (derived_option), else kept at its letter. Not an R3V method: what a judge that redoes
    each candidate's last step could get."""
    moved = []
    for text, answer in zip(record["predictions"], record["answers"]):
        value = recomputed_value(text) if answer is not None else None
        option = option_of_value(f"{value:.10g}", problem.choices) if value is not None else None
        moved.append(None if answer is None else option or derived_option(text, problem.choices) or answer)
    return majority_vote(moved)


def arithmetic_diagnostics(samples: list[dict], problems: list[Problem]) -> dict:
    """How often the sampled rationales' arithmetic steps are wrong (experiments.arithmetic), over all answered
    rationales and over the correct ones (right letter, wrong work: what mix.filters=[arith] drops), and
    the accuracy of recompute_vote over the multiple-choice questions."""
    by_id = {p.id: p for p in problems}
    steps = wrong = rationales = wrong_rationales = correct = correct_wrong = voted = recompute_right = 0
    for r in samples:
        problem = by_id.get(r["id"])
        if problem is None:
            continue
        for text, answer, right in zip(r["predictions"], r["answers"], r["correct"]):
            if answer is None:
                continue
            found = arithmetic_steps(text)
            bad = sum(step.wrong for step in found)
            steps += len(found)
            wrong += bad
            rationales += 1
            wrong_rationales += bad > 0
            correct += bool(right)
            correct_wrong += bool(right) and bad > 0
        if problem.choices:
            voted += 1
            recompute_right += recompute_vote(r, problem) == problem.answer
    return {"arith_steps": steps,
            "arith_step_error_rate": 100.0 * wrong / steps if steps else None,
            "arith_wrong_rationale_rate": 100.0 * wrong_rationales / rationales if rationales else None,
            "arith_wrong_among_correct": 100.0 * correct_wrong / correct if correct else None,
            "recompute_vote_acc": 100.0 * recompute_right / voted if voted else None}


RULES = {"check": consistent_vote, "value": value_vote, "recompute": recompute_vote}


def select_vs_rules(samples: list[dict], selects: list[dict], problems: list[Problem]) -> dict:
    """For each rule (check = consistent_vote, value = value_vote, recompute = recompute_vote): the multiple-choice questions where
    the rule and the plain vote differ over the same K samples (<rule>_decides), and there how often the
    self-select answer is the rule's (<rule>_decides_select_rule) or the vote's
    (<rule>_decides_select_vote), and how often each of the two is right (<rule>_decides_rule_right,
    <rule>_decides_vote_right). A model that judges its candidates that way takes the rule's answer. A
    select without an answer counts in <rule>_decides and in neither of the two takes."""
    by_id = {p.id: p for p in problems if p.choices}
    chosen = {r["id"]: r["answers"][0] if r["answers"] else None for r in selects}
    counts = Counter()
    for r in samples:
        problem = by_id.get(r["id"])
        if problem is None or r["id"] not in chosen:
            continue
        vote = majority_vote(r["answers"])
        for name, rule in RULES.items():
            answer = rule(r, problem)
            if answer == vote:
                continue
            counts[f"{name}_decides"] += 1
            counts[f"{name}_decides_select_rule"] += chosen[r["id"]] == answer
            counts[f"{name}_decides_select_vote"] += chosen[r["id"]] == vote
            counts[f"{name}_decides_rule_right"] += answer == problem.answer
            counts[f"{name}_decides_vote_right"] += vote == problem.answer
    return {f"{name}_{key}": counts[f"{name}_{key}"] for name in RULES
            for key in ("decides", "decides_select_rule", "decides_select_vote", "decides_rule_right",
                        "decides_vote_right")}


# --------------------------------------------------------------------------- as named metrics


@METRICS.register("select_vs_vote")
def _select_vs_vote(samples: list[dict], selects: list[dict] | None, problems: list[Problem]) -> dict:
    return select_diagnostics(samples, selects) if selects else {}


@METRICS.register("check_lines")
def _check_lines(samples: list[dict], selects: list[dict] | None, problems: list[Problem]) -> dict:
    return check_diagnostics(samples, selects, problems) if selects else {}


@METRICS.register("value_lines")
def _value_lines(samples: list[dict], selects: list[dict] | None, problems: list[Problem]) -> dict:
    return value_diagnostics(samples, selects, problems) if selects else {}


@METRICS.register("select_vs_rules")
def _select_vs_rules(samples: list[dict], selects: list[dict] | None, problems: list[Problem]) -> dict:
    return select_vs_rules(samples, selects, problems) if selects else {}


@METRICS.register("letter_binding")
def _letter_binding(samples: list[dict], selects: list[dict] | None, problems: list[Problem]) -> dict:
    return letter_binding(samples, problems)


@METRICS.register("arithmetic")
def _arithmetic(samples: list[dict], selects: list[dict] | None, problems: list[Problem]) -> dict:
    return arithmetic_diagnostics(samples, problems)


# Every diagnostic, in the order metrics.json held them before they became optional.
ALL = ["letter_binding", "arithmetic", "select_vs_vote", "check_lines", "value_lines", "select_vs_rules"]
