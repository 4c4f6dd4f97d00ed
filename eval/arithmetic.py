"""The arithmetic steps a rationale writes, recomputed.

A step is two sides of an "=" that are both plain arithmetic (numbers, + - × ÷ * / · −, brackets,
² and ³, a ° after a number), at least one of them with an operator:

    "So ∠BOC = 180° - 124° = 56°."           one step: 180 - 124 written as 56 (right)
    "So BC = DE × AB ÷ AD = 2 × 8 ÷ 4 = 3."  one step: 2 × 8 ÷ 4 written as 3 (wrong: 4)
    "AB² = 8² + 15² = 64 + 144 = 16"          two steps: 289 vs 208 and 208 vs 16 (both wrong)

A side is read only where it is whole: the left side is the arithmetic right before the "=", and
is not read when symbols come before it that it belongs to ("180° - ∠A - 85° = ..." has no
left side); the right side is the arithmetic right after the "=" up to the end of its clause, and
is not read when it goes on with a symbol ("= 2 × ∠ACB"). Nothing is evaluated but numbers and
operators (an ast walk, no eval).

Not R3V: R3V judges a rationale by its final answer only. These steps show what a judge of the
candidates would need to do after the loop has fixed the letter binding (eval.evaluate
`arithmetic_diagnostics`), and `mix.arith_check` drops correct rationales with a wrong step from
the training mix.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from itertools import pairwise

_ARITH_CHARS = set("0123456789.+-−×÷*/·()²³° ")
_OPERATOR_RE = re.compile(r"[\d)²³°]\s*[-−+×÷*/·]\s*[(\d]")
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
        return abs(self.expected - self.written) > 1e-6 * max(1.0, abs(self.expected))


def evaluate(expression: str) -> float | None:
    """The value of a plain arithmetic expression ("(180° - 76°) ÷ 2" -> 52.0), or None."""
    text = (expression.replace("°", "").replace("×", "*").replace("·", "*").replace("÷", "/")
            .replace("−", "-").replace("²", "**2").replace("³", "**3"))
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
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
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _left_side(segment: str) -> str | None:
    """The whole arithmetic at the end of the text before an "=", or None."""
    start = len(segment)
    while start > 0 and segment[start - 1] in _ARITH_CHARS:
        start -= 1
    run = segment[start:]
    side = run.strip()
    if not side or not (side[0].isdigit() or side[0] == "("):
        return None  # empty, or the tail of a longer expression with symbols ("∠A - 85°")
    if start > 0 and not run[0].isspace() and segment[start - 1] not in ",;:":
        return None  # glued to a symbol ("∠2", "AB²")
    return side


def _right_side(segment: str) -> str | None:
    """The whole arithmetic at the start of the text after an "=", up to the end of its clause, or None."""
    end = 0
    while end < len(segment) and segment[end] in _ARITH_CHARS:
        end += 1
    run, rest = segment[:end], segment[end:]
    side = run.strip().rstrip(".").rstrip()
    if not side:
        return None
    if not (run.rstrip().endswith(".") or _CLAUSE_END_RE.match(rest)):
        return None  # arithmetic that goes on with a symbol or a unit ("2 × ∠ACB", "12 cm")
    return side


def arithmetic_steps(text: str) -> list[Step]:
    """The steps of a rationale whose two sides are plain arithmetic, in the order written."""
    segments = (text or "").split("=")
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
