"""Final-answer extraction and judging: the one place that decides what a model's text answers.

Public surface (others rely on these exactly, DESIGN.md §3):

    extract_answer(text, choices=None) -> str | None
        With choices: the option letter ("A".."Z", within len(choices)), or None for "no answer".
        Without: the normalised final answer (a canonical number such as "1000" or "0.5", "yes"/"no",
        or a lowercased short phrase), or None.
    is_correct(text, answer, choices=None, rel_tol=0.0) -> bool
        answer is the gold letter for multiple choice, else the gold value. Numbers compare by value,
        within rel_tol of the gold (0.05 = ChartQA's relaxed accuracy). None never matches.
    derived_value_matches(text, letter, choices) -> bool | None
        Multiple choice: whether the value a rationale computed last (after the last "=" of its
        answer line, else before its answer marker) is the value of the option `letter`; None when
        either is not a number.
    derived_option(text, choices) -> str | None
        The letter of the one option whose value the rationale computed last, or None.
    computed_value_text(text) -> str | None
        That value as the rationale wrote it ("56°"), or None.
    option_of_value(value, choices) -> str | None
        The letter of the one option whose value is the written value, or None.
    option_value_texts(choices) -> list[str]
        Each option's value written that way ("56°"), or its text where it is no number.
    normalize_number(s) -> float | None
        The number a string starts with ("1,000" -> 1000.0, "3/4" -> 0.75, "\\frac{1}{2}" -> 0.5,
        "40°" -> 40.0, "50%" -> 50.0, "12 cm" -> 12.0), or None ("2√3", "x", "3x").

Rule order (the first rule that applies decides; later rules are never consulted):

1. **Answer marker.** If the text has a marker — "answer:", "answer is", "answer should/would/must/
   will be", "answer =" (case-insensitive, so also "The answer is", "Final answer:", "**Answer:**") —
   only the first non-empty line after the LAST marker is read (so "Answer:\\n B" and the QA target
   "Answer: \\nB" read as B). If that line holds no answer the result is None: a marker followed by
   nothing usually means a truncated generation, and reaching back to an earlier marker would
   credit text the model went on to revise. "answer is correct/wrong/not/..." is a judgement, not
   a marker (self-refine outputs say it).
2. **\\boxed{...}** (no marker): the last one is read like a marker line.
3. **"the correct option is B" / "option B is correct"** (no marker, multiple choice only).
4. **A bare final line** (no marker): the last non-empty line that is only an answer — "(B)", "B.",
   "B" (upper case), a choice's exact text, a number with at most a unit, or yes/no. Anything else,
   including a free-form phrase without a marker, gives None.

Reading one answer line, multiple choice: (a) a leading option letter: "(B)", "[b]", "B.", "B)",
"B:", "B 40°", "Option B"; a bare "A"/"I" followed by a lowercase word is an English word, not an
option ("A triangle has ..."; "A is correct" still reads as A); a bare lowercase letter counts only
alone ("answer: b"); a letter outside the choices is no letter. (b) The text of a choice:
by value when both are numbers (units, "°", "%" stripped), else by exact normalised text, else a
unique choice text found whole inside the line. (c) "option C" / "(C)" inside the line.
Free-form: yes/no first, then a number (the one the line starts with; after the last "="; or after
a final "is/are/equals/be"), else the lowercased phrase up to its first sentence end.

Deliberate differences from the reference (REFERENCE.md §4, §7.10):
- No "last letter of any kind" step: the reference's metric read "...Answer: 40°" as the last
  letter of the whole text (R in REFERENCE.md §4); here "40°" is matched to the choice whose text
  is 40°.
- No standalone-letter search in free text: "A triangle has ..." is not option A.
- No random credit when nothing is found (the reference gave 75%); None is never correct.
- One extractor for labelling training samples, voting and the reported metric (the reference
  had three that disagreed, and split on a case-sensitive "answer").
- "FAILED" or garbage reads as None, never as a letter (the reference voted "FAILED" as D).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from data_gen.problem import LETTERS

# "answer" followed by a copula or ":"/"="; the lookahead drops judgements about an answer
# ("the model's answer is incorrect"), which self-refine outputs write before their own answer.
_MARKER_RE = re.compile(
    r"\banswer\b\**\s*(?:"
    r"(?:is|should\s+be|would\s+be|must\s+be|will\s+be)\b"
    r"(?!\s+(?:correct|incorrect|wrong|right|not|consistent|reasonable|valid|invalid|unclear|ambiguous)\b)"
    r"\s*\**\s*[:：]?"
    r"|[:：=])",
    re.IGNORECASE,
)
_CORRECT_OPTION_RES = (
    re.compile(r"(?i:\bcorrect\s+(?:option|choice)\s*(?:is|would\s+be|should\s+be)?)\s*:?\s*"
               r"[(\[]?([A-Z])[)\]]?(?![A-Za-z])"),
    re.compile(r"(?i:\b(?:option|choice))\s*[(\[]?([A-Z])[)\]]?\s+(?i:is\s+(?:the\s+)?correct)\b"),
)
# A leading option letter: bracketed (either case) or bare followed by a delimiter or the end.
_LEADING_LETTER_RE = re.compile(
    r"(?:(?i:option|choice)\s*)?(?:[(\[]\s*([A-Za-z])\s*[)\]]|([A-Za-z])(?=$|[\s.,:;)\]]))")
# Words after a bare "A" that still read as "option A" rather than the article ("A is correct").
_AFTER_LETTER_OK = {"is", "was", "since", "because", "as", "and", "or", "which", "from", "with"}
_INNER_LETTER_RE = re.compile(r"(?i:\b(?:option|choice))\s*[(\[]?([A-Z])[)\]]?(?![A-Za-z])|\(([A-Z])\)")
_BARE_LETTER_LINE_RE = re.compile(r"[(\[]?([A-Z])[)\]]?[.:]?")

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_LEADING_NUMBER_RE = re.compile(rf"(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?")
_LEAD_IN_RE = re.compile(r"(?:(?:approximately|approx|about|around|roughly|nearly)\b\.?|≈|~|=|:)\s*", re.IGNORECASE)
_COPULA_RE = re.compile(r"\b(?:is|are|was|were|equals|equal\s+to|be|becomes)\s+", re.IGNORECASE)
_YES_NO_RE = re.compile(r"(yes|no)\b", re.IGNORECASE)
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]*?)\s*\}\s*\{\s*([^{}]*?)\s*\}")
_TEXT_CMD_RE = re.compile(r"\\(?:text|mathrm|textbf|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


# --------------------------------------------------------------------------- text clean-up


def _boxes(s: str) -> list[tuple[int, int, int]]:
    """(start, content start, end) of each outermost \\boxed{...} / \\fbox{...}, braces balanced."""
    spans, i = [], 0
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", s):
        if m.start() < i:  # inside a box already found
            continue
        depth, j = 1, m.end()
        while j < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            j += 1
        spans.append((m.start(), m.end(), j))
        i = j
    return spans


def _box_content(s: str, span: tuple[int, int, int]) -> str:
    _, content, end = span
    return s[content:end - 1] if s[end - 1:end] == "}" else s[content:end]  # unclosed: to the end


def _strip_boxed(s: str) -> str:
    """Replace every \\boxed{X} by X (so \\boxed{\\frac{1}{2}} keeps its inner braces)."""
    out, i = [], 0
    for span in _boxes(s):
        out += [s[i:span[0]], _box_content(s, span)]
        i = span[2]
    return "".join(out) + s[i:]


def _last_boxed(text: str) -> str | None:
    spans = _boxes(text)
    return _box_content(text, spans[-1]) if spans else None


def _unwrap(s: str) -> str:
    """Remove LaTeX/markdown wrapping that does not change an answer's value."""
    s = _strip_boxed(s)
    s = _TEXT_CMD_RE.sub(r"\1", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree", "°", s)
    s = s.replace("\\%", "%").replace("−", "-").replace("\\sqrt", "√")
    s = re.sub(r"\\left|\\right|\\[,;!:]|\\quad|\\ ", "", s)
    s = re.sub(r"\\[()\[\]]|\$|\*\*|__|`", "", s)

    def frac(m: re.Match) -> str:  # \frac{a}{b} -> a/b only for plain numbers; else keep a form
        a, b = m.group(1), m.group(2)
        both = re.fullmatch(_NUM, a) and re.fullmatch(_NUM, b)
        return f"{a}/{b}" if both else f"({a})/({b})"

    return _FRAC_RE.sub(frac, s).strip()


def _first_line(s: str) -> str:
    for line in s.splitlines():
        if line.strip():
            return line.strip()
    return ""


# --------------------------------------------------------------------------- numbers


def _number_prefix(s: str) -> tuple[float, str] | None:
    """(value, rest) for the number an already-unwrapped string starts with, or None."""
    s = s.strip()
    lead_in = _LEAD_IN_RE.match(s)
    if lead_in:
        s = s[lead_in.end():]
    m = _LEADING_NUMBER_RE.match(s)
    if not m:
        return None
    value = float(m.group("num").replace(",", ""))
    if m.group("den"):
        den = float(m.group("den").replace(",", ""))
        if den == 0:
            return None
        value /= den
    rest = s[m.end():]
    # Reject a number that is only the start of an expression: "3 + 4", "1:2", "5,6", "2√3", "3x",
    # "5²", "2(3)". A unit may follow, spaced or not ("12 cm", "12cm", "40°", "50%").
    if re.match(r"\s*[-+*/×÷^]\s*[\d(√π\\]", rest) or re.match(r"[.,:]\d", rest):
        return None
    if re.match(r"[A-Za-z]{2,}", rest):
        return value, rest
    if re.match(r"[\w√π(\[{\\]", rest):
        return None
    return value, rest


def normalize_number(s: str) -> float | None:
    """The number a string starts with, as a float, or None when it does not start with one.

    Handles thousands commas, decimals, signs, "3/4", \\frac/\\dfrac, \\boxed, $...$, and a trailing
    unit, "°"/"degrees" or "%" (dropped: "50%" -> 50.0, so it equals a gold of "50" as ChartQA
    golds are written). Expressions are not numbers: "2√3", "3x", "1:2" -> None.
    """
    parsed = _number_prefix(_unwrap(s))
    return parsed[0] if parsed else None


def _answer_number(line: str) -> float | None:
    """The number an unwrapped answer line gives: leading, after the last "=", or after "is"."""
    if "=" in line:
        return normalize_number(line.rsplit("=", 1)[1])
    value = normalize_number(line)
    if value is None:
        copulas = list(_COPULA_RE.finditer(line))
        if copulas:
            value = normalize_number(line[copulas[-1].end():])
    return value


def _bare_number(line: str) -> float | None:
    """The value of a line that is only a number and maybe a unit: "40°", "12 cm", "1,000." —
    not "3 sides are equal" or "40°, and (C) is too large"."""
    parsed = _number_prefix(_unwrap(line))
    if parsed and re.fullmatch(r"\s*(?:[A-Za-z]+)?[\s.%°]*", parsed[1]):
        return parsed[0]
    return None


def _format_number(x: float) -> str:
    """A canonical string, so equal values vote together: 1000.0 -> "1000", 0.50 -> "0.5"."""
    if x.is_integer():
        return str(int(x))
    # Fixed-point, never "1e-05", so the string re-parses as a number; 10 decimals as in the tests.
    return f"{round(x, 10):.10f}".rstrip("0").rstrip(".")


def _numbers_match(pred: float, gold: float, rel_tol: float) -> bool:
    # ChartQA's relaxed accuracy is relative to the gold: |pred - gold| <= 5% |gold|. The 1e-9
    # floor absorbs the rounding of canonical strings (1/3 -> "0.3333333333").
    return abs(pred - gold) <= max(rel_tol, 1e-9) * abs(gold) + 1e-12


# --------------------------------------------------------------------------- one answer line


def _phrase(line: str) -> str | None:
    s = re.split(r"(?<=[^\s.])\.(?:\s|$)", line.strip(), maxsplit=1)[0]
    s = s.strip().strip("\"'“”‘’").rstrip(".!?,;:。").strip().lower()
    return re.sub(r"\s+", " ", s) or None


def _free_form(line: str) -> str | None:
    line = _unwrap(line)
    if not line:
        return None
    yes_no = _YES_NO_RE.match(line)
    if yes_no:
        return yes_no.group(1).lower()
    value = _answer_number(line)
    if value is not None:
        return _format_number(value)
    return _phrase(line)


def _spaced_key(s: str) -> str:
    return re.sub(r"[{}°]", "", _phrase(_unwrap(s)) or "")


def _choice_key(s: str) -> str:
    """Text key for comparing an answer with a choice: case, spaces, braces, "°" ignored."""
    return re.sub(r"\s", "", _spaced_key(s))


def _choice_texts(choices: Sequence[str]) -> list[str]:
    """Choices without a leading "(A) " / "A. " of their own letter, if a dataset kept one."""
    out = []
    for i, c in enumerate(choices):
        m = re.match(rf"\s*[(\[]?{LETTERS[i]}[)\].:]\s*", str(c))
        out.append(str(c)[m.end():] if m else str(c))
    return out


def _letter(ch: str, n_choices: int) -> str | None:
    ch = ch.upper()
    return ch if ch in LETTERS[:n_choices] else None


def _leading_letter(line: str, n_choices: int) -> str | None:
    m = _LEADING_LETTER_RE.match(line)
    if not m:
        return None
    if m.group(1):
        return _letter(m.group(1), n_choices)
    ch, rest = m.group(2), line[m.end():]
    if ch.islower():  # a lone "b" / "b." only; "a right angle" is prose
        return _letter(ch, n_choices) if not rest.strip(" .:)") else None
    word = re.match(r"\s+([a-z]\w*)", rest)
    if ch in "AI" and word and word.group(1) not in _AFTER_LETTER_OK:
        return None  # the article "A" or the pronoun "I" starting a sentence
    return _letter(ch, n_choices)


def _match_choice(line: str, choices: Sequence[str], *, whole_only: bool = False) -> str | None:
    """The letter whose choice text the line gives: by value, then exact text, then contained."""
    texts = _choice_texts(choices)
    value = _bare_number(line) if whole_only else _answer_number(line)
    if value is not None:
        hits = [i for i, c in enumerate(texts)
                if (v := normalize_number(c)) is not None and _numbers_match(v, value, 0.0)]
        if len(hits) == 1:
            return LETTERS[hits[0]]
    key = _choice_key(line)
    keys = [_choice_key(c) for c in texts]
    hits = [i for i, k in enumerate(keys) if k and k == key]
    if len(hits) == 1:
        return LETTERS[hits[0]]
    if whole_only or not key:
        return None
    # A non-numeric choice found whole inside the line ("they are perpendicular"), compared with
    # spaces kept so word boundaries hold; ambiguous -> None.
    spaced = _spaced_key(line)
    hits = [i for i, c in enumerate(texts)
            if (k := _spaced_key(c)) and normalize_number(c) is None
            and re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", spaced)]
    return LETTERS[hits[0]] if len(hits) == 1 else None


def _multiple_choice(line: str, choices: Sequence[str]) -> str | None:
    line = _unwrap(line)
    if not line:
        return None
    letter = _leading_letter(line, len(choices)) or _match_choice(line, choices)
    if letter:
        return letter
    inner = [m.group(1) or m.group(2) for m in _INNER_LETTER_RE.finditer(line)]
    return _letter(inner[-1], len(choices)) if inner else None


def _read_line(line: str, choices: Sequence[str] | None) -> str | None:
    return _multiple_choice(line, choices) if choices else _free_form(line)


def _read_bare_line(line: str, choices: Sequence[str] | None) -> str | None:
    """A final line that is nothing but an answer; anything longer is not trusted without a marker."""
    line = _unwrap(line)
    if choices:
        m = _BARE_LETTER_LINE_RE.fullmatch(line)
        if m:
            return _letter(m.group(1), len(choices))
        return _match_choice(line, choices, whole_only=True)
    if re.fullmatch(r"(yes|no)[.!]?", line, re.IGNORECASE):
        return line.rstrip(".!").lower()
    value = _bare_number(line)
    return None if value is None else _format_number(value)


# --------------------------------------------------------------------------- public


def extract_answer(text: str, choices: Sequence[str] | None = None) -> str | None:
    """The final answer in a model's text (see the module docstring for the rule order).

    choices: the option texts of a multiple-choice question (a list or tuple); empty or None means
    free-form. Returns an option letter within the choices, a normalised free-form answer, or None
    when the text gives no readable answer. Never raises on model text.
    """
    if not text or not text.strip():
        return None
    choices = list(choices) if choices else None
    markers = list(_MARKER_RE.finditer(text))
    if markers:
        return _read_line(_first_line(text[markers[-1].end():]), choices)
    boxed = _last_boxed(text)
    if boxed is not None:
        return _read_line(_first_line(boxed), choices)
    if choices:
        found = [m for r in _CORRECT_OPTION_RES for m in r.finditer(text)]
        if found:
            last = max(found, key=lambda m: m.start())
            return _letter(last.group(1), len(choices))
    lines = [line for line in text.splitlines() if line.strip()]
    return _read_bare_line(lines[-1], choices) if lines else None


# An operator between two operands ("180° - 130°", "12 cm + 3 cm", "2(3)"); a sign alone is no operator.
_EXPRESSION_RE = re.compile(r"[\w)°%²³]\s*[-+*/×÷^−]\s*[\d(√π∠\\]")
_FRACTION_RE = re.compile(r"(?<![\d.])\d+/\d+(?![\d.])")
_CLAUSE_END_RE = re.compile(r"\n|;|,(?!\d{3}\b)|(?<!\d)\.|\.(?!\d)")


def _value_clause(text: str) -> str | None:
    """The clause after the last "=" of the answer line (the first line after the last marker), else
    after the last "=" before the marker, up to the end of the clause; None without an "="."""
    markers = list(_MARKER_RE.finditer(text))
    answer_line = _first_line(text[markers[-1].end():]) if markers else ""
    body = text[:markers[-1].start()] if markers else text
    source = answer_line if "=" in answer_line else body
    if "=" not in source:
        return None
    return _CLAUSE_END_RE.split(source.rsplit("=", 1)[1], maxsplit=1)[0]


def computed_value_text(text: str) -> str | None:
    """The number a rationale computed last, as written, with a ° or % sign right after it ("... =
    180° - 124° = 56°.\nAnswer: B" -> "56°"; "= 12 because ..." -> "12"), or None where _computed_value
    reads no number. A value that is no plain number ("\\frac{1}{2}") is its whole clause."""
    clause = _value_clause(text) if text else None
    computed = _computed_value(text) if clause is not None else None
    if computed is None:
        return None
    number = re.search(r"(?<![\w.])(" + _NUM + r"(?:/\d+)?(?:\s?[°%])?)", clause)
    if number and (found := _computed_value("= " + number.group(1))) is not None and abs(found[0] - computed[0]) < 1e-9:
        return number.group(1)  # the number, without a lead-in ("about 40") or the rest of its clause
    return clause.strip()


def _computed_value(text: str) -> tuple[float, int | None] | None:
    """(value, decimals written) of the number a rationale computed last, or None.

    That number follows the last "=" of the answer line (the first line after the last marker), else
    the last "=" before the marker, and is read up to the end of its clause. An expression there
    ("= 180° - 130°") is no value. decimals is None for a fraction ("1/3": exact).
    """
    clause = _value_clause(text)
    if clause is None:
        return None
    if _EXPRESSION_RE.search(_FRACTION_RE.sub("1", clause)):
        return None
    value = normalize_number(clause)
    if value is None:
        return None
    number = re.search(_NUM + r"(/\d)?", clause)
    if number is None or number.group(1):
        return value, None
    return value, len(number.group(0).split(".")[1]) if "." in number.group(0) else 0


def _option_values(choices: Sequence[str]) -> list[tuple[float, int | None] | None]:
    """(value, decimals) of each choice that is a number ("(A) 20°" reads as 20), else None."""
    return [_computed_value("= " + c) for c in _choice_texts(choices)]


def _same_value(a: tuple[float, int | None], b: tuple[float, int | None]) -> bool:
    """Equal up to the precision the less precise of the two was written with (3.46 == 3.4641,
    0.333 == 1/3, 200 != 201)."""
    decimals = [d for d in (a[1], b[1]) if d is not None]
    if not decimals:
        return _numbers_match(a[0], b[0], 0.0)
    return abs(a[0] - b[0]) <= 0.5 * 10 ** -min(decimals) + 1e-12


def _derived_letters(text: str, choices: Sequence[str]) -> tuple[bool, list[str]]:
    """(whether the rationale computed a value, the letters of the options with that value)."""
    computed = _computed_value(text) if text else None
    if computed is None:
        return False, []
    return True, [LETTERS[i] for i, v in enumerate(_option_values(choices)) if v is not None
                  and _same_value(computed, v)]


def derived_value_matches(text: str, letter: str, choices: Sequence[str]) -> bool | None:
    """Whether a multiple-choice rationale computed the value of the option it names.

    The computed value is the number after the last "=" of the answer line, else after the last "="
    before the last answer marker ("... = 180° - 124° = 56°.\nAnswer: B" -> 56); the option's value is
    its text as a number ("56°" -> 56), equal up to the precision written. False means both are
    numbers and they differ: the last value computed is not the named option's (a lucky letter when
    it is right, or a rationale whose last "=" was a check). None means there is nothing to compare
    (no "=", an expression after it, a non-numeric option, a letter outside the choices).
    """
    if not choices:
        return None
    named = _letter(str(letter).strip().strip("()"), len(choices)) if letter else None
    if named is None or _option_values(choices)[LETTERS.index(named)] is None:
        return None
    computed, letters = _derived_letters(text, choices)
    return named in letters if computed else None


def option_of_value(value: str, choices: Sequence[str]) -> str | None:
    """The letter of the one option whose value is `value` (a number as written: "56°"), or None."""
    _, letters = _derived_letters("= " + value, choices) if choices and value else (False, [])
    return letters[0] if len(letters) == 1 else None


def option_value_texts(choices: Sequence[str]) -> list[str]:
    """Each option's value written as computed_value_text would write it ("56°"; "12 cm" -> "12"), or its
    text where it is no number."""
    return [computed_value_text("= " + c) or c.strip() for c in _choice_texts(choices)]


def derived_option(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the one option whose value the rationale computed last, or None (nothing
    computed, no option with that value, or several)."""
    if not choices:
        return None
    _, letters = _derived_letters(text, choices)
    return letters[0] if len(letters) == 1 else None


def _gold_letter(answer: str, choices: Sequence[str]) -> str:
    gold = str(answer).strip().strip("()").upper()
    if len(gold) != 1 or gold not in LETTERS[:len(choices)]:
        raise ValueError(f"gold answer {answer!r} is not an option letter A..{LETTERS[len(choices) - 1]} "
                         f"for {len(choices)} choices; pass the letter (the loader converts indices).")
    return gold


def is_correct(text: str, answer: str, choices: Sequence[str] | None = None,
               rel_tol: float = 0.0) -> bool:
    """Whether the text's final answer equals the gold answer.

    answer: the gold option letter when choices are given (ValueError if it is not one), else the
    gold value, normalised the same way as the prediction ("1,000" == "1000", "Yes" == "yes").
    rel_tol: relative tolerance for numbers, measured against the gold (0.05 = ChartQA's relaxed
    accuracy). A text without a readable answer is never correct.
    """
    if choices:
        return extract_answer(text, choices) == _gold_letter(answer, choices)
    pred = extract_answer(text)
    gold = _free_form(str(answer))
    if pred is None or gold is None:
        return False
    pred_value, gold_value = normalize_number(pred), normalize_number(gold)
    # Canonical numbers re-parse exactly; a phrase that happens to start with a digit ("3 apples")
    # was already reduced to its number on both sides, so value comparison is symmetric.
    if pred_value is not None and gold_value is not None and re.fullmatch(_NUM, pred) \
            and re.fullmatch(_NUM, gold):
        return _numbers_match(pred_value, gold_value, rel_tol)
    return pred == gold


__all__ = ["extract_answer", "is_correct", "normalize_number"]
