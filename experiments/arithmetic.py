"""The arithmetic steps a rationale writes, recomputed.

A step is two sides of an "=" that are both plain arithmetic (numbers, + - × ÷ * / · −, brackets,
² and ³, a ° after a number), at least one of them with an operator:

    "So ∠BOC = 180° - 124° = 56°."           one step: 180 - 124 written as 56 (right)
    "So BC = DE × AB ÷ AD = 2 × 8 ÷ 4 = 3."  one step: 2 × 8 ÷ 4 written as 3 (wrong: 4)
    "AB² = 8² + 15² = 64 + 144 = 16"          two steps: 289 vs 208 and 208 vs 16 (both wrong)

A side is read only where it is whole: the left side is the arithmetic right before the "=", and
is read only where it starts the text between two "="s or follows the end of a sentence or clause
(". ", ", ", "; ", a new line), so a word, symbol or ratio it belongs to is never cut off ("180° -
∠A - 85° = ...", "sin 30° × 8 = 4", "AD : DB = 1 : 2 = ..." have no left side); the right side is the arithmetic right after the "=" up to the end of its clause, and
is not read when it goes on with a symbol ("= 2 × ∠ACB"). Nothing is evaluated but numbers and
operators (an ast walk, no eval); "1,000" reads as 1000, and a written decimal may round ("10 ÷ 3 =
3.33" is right). A step that is not read is never counted wrong: the rates are over the steps read.

Not R3V: R3V judges a rationale by its final answer only. These steps show what a judge of the
candidates would need to do after the loop has fixed the letter binding (the `arithmetic` metric,
experiments.diagnostics), and the `arith` filter (experiments.mix_variants, mix.filters=[arith])
drops correct rationales with a wrong step from the training mix.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from itertools import pairwise

_ARITH_CHARS = set("0123456789.+-−×÷*/·()²³° ")
_OPERATOR_RE = re.compile(r"[\d)²³°]\s*[-−+×÷*/·]\s*[(\d]")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# what may come before a left side that does not start its segment: the end of a sentence (or a clause: ", ")
_LEFT_BOUNDARY_RE = re.compile(r"[.\n]\s*$")
_MAX_SIDE = 200
_CLAUSE_END_RE = re.compile(r"(?:$|[,;:\n]|(?:so|then|and|which|because|since)\b)", re.IGNORECASE)
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}


@dataclass(frozen=True)
class Step:
    left: str     # the arithmetic before the "=", as written ("2 × 8 ÷ 4")
    right: str    # the arithmetic after it ("3")
    expected: float  # what the left side is
    written: float   # what the right side is

    @property
    def wrong(self) -> bool:
        """Whether the written result is not the left side's value, up to the rounding a written
        decimal allows ("10 ÷ 3 = 3.33" is right; "7 ÷ 2 = 3" is wrong)."""
        decimals = re.fullmatch(r"\s*-?\d+\.(\d+)\s*°?\s*", self.right)
        tolerance = 0.5 * 10 ** -len(decimals.group(1)) if decimals else 1e-6 * max(1.0, abs(self.expected))
        return abs(self.expected - self.written) > tolerance + 1e-12


def evaluate(expression: str) -> float | None:
    """The value of a plain arithmetic expression ("(180° - 76°) ÷ 2" -> 52.0), or None."""
    text = (expression.replace("°", "").replace("×", "*").replace("·", "*").replace("÷", "/")
            .replace("−", "-").replace("²", "**2").replace("³", "**3"))
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        return None

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            if isinstance(node.op, ast.Pow) and not (isinstance(node.right, ast.Constant) and node.right.value in (2, 3)):
                raise ValueError("only ² and ³")
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body)
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _left_side(segment: str) -> str | None:
    """The whole arithmetic at the end of the text before an "=", or None."""
    start = len(segment)
    while start > 0 and segment[start - 1] in _ARITH_CHARS:
        start -= 1
    sentence = list(re.finditer(r"\.\s", segment[start:]))
    if sentence:  # "... = 8. 2 × 8 = ...": the left side starts after the sentence's end
        start += sentence[-1].end()
    side = segment[start:].strip()
    if not side or not (side[0].isdigit() or side[0] == "(") or len(side) > _MAX_SIDE:
        return None  # empty, the tail of a longer expression with symbols ("∠A - 85°"), or too long
    before = segment[:start]
    after_clause = before.endswith((",", ";")) and segment[start:start + 1].isspace()
    if start > 0 and not (_LEFT_BOUNDARY_RE.search(before) or after_clause):
        return None  # a word, symbol or ratio before it belongs to it ("∠2", "sin 30° × 8", "1 : 2")
    return side


def _right_side(segment: str) -> str | None:
    """The whole arithmetic at the start of the text after an "=", up to the end of its clause, or None."""
    end = 0
    while end < len(segment) and segment[end] in _ARITH_CHARS:
        end += 1
    sentence = re.search(r"\.(?:\s|$)", segment[:end])
    if sentence:  # "= 8. 2 × 8 = ...": the right side ends with its sentence
        end = sentence.start() + 1
    run, rest = segment[:end], segment[end:]
    side = run.strip().rstrip(".").rstrip()
    if not side or len(side) > _MAX_SIDE:
        return None
    if not (run.rstrip().endswith(".") or _CLAUSE_END_RE.match(rest)):
        return None  # arithmetic that goes on with a symbol or a unit ("2 × ∠ACB", "12 cm")
    return side


def arithmetic_steps(text: str) -> list[Step]:
    """The steps of a rationale whose two sides are plain arithmetic, in the order written."""
    segments = _THOUSANDS_RE.sub("", text or "").split("=")
    steps = []
    for before, after in pairwise(segments):
        left, right = _left_side(before), _right_side(after)
        if left is None or right is None or not (_OPERATOR_RE.search(left) or _OPERATOR_RE.search(right)):
            continue
        if left.count("(") != left.count(")") or right.count("(") != right.count(")"):
            continue
        expected, written = evaluate(left), evaluate(right)
        if expected is not None and written is not None:
            steps.append(Step(left, right, expected, written))
    return steps


def wrong_steps(text: str) -> int:
    """How many of a rationale's arithmetic steps write a wrong result."""
    return sum(step.wrong for step in arithmetic_steps(text))


def recomputed_value(text: str) -> float | None:
    """What the left side of the rationale's last arithmetic step really is (a checker redoing that
    step), or None when it writes no step."""
    steps = arithmetic_steps(text)
    return steps[-1].expected if steps else None
