"""GeoSynth: GeoQA-style geometry multiple-choice problems with rendered diagrams.

The project's embedded default dataset: it needs no download, and it is written in the processed
GeoQA layout that `data_gen.geoqa.load_split` reads (DESIGN.md §3):

    DIR/train.jsonl, DIR/test.jsonl   id, image, question, choices, answer, rationale, family, image_only,
                                      problem_key (family/variant/numbers: the key that decides the split)
    DIR/images/<id>.png               a 224x224 diagram (black lines, lettered points, value labels)
    DIR/meta.json                     the arguments and counts; written last, so its presence means done

    python -m data_gen.geosynth --out data/geosynth --train 2000 --test 500 --seed 0
    python -m data_gen.geosynth --out /tmp/gs --train 40 --test 20 --seed 1 --difficulty 3 --image_only_share 0.5

Ten problem families (FAMILIES) cover the usual GeoQA topics. Each family builds the figure from
its numbers (a triangle drawn with its real angles, a circle with its real arcs), then measures the
asked quantity on those coordinates and refuses to emit the item if the measurement disagrees with
the closed-form answer, so every gold answer is checked geometrically.

Determinism and independence from the set size:
- every item draws from its own RNG, seeded by (seed, split, index): item i does not depend on how
  many items are generated, and train and test use different streams;
- family, correct-letter position and the image-only flag come from small shuffled blocks
  (10 families, 4 letters, 20 image-only slots) seeded by (seed, split, block), so every prefix of a
  split has family counts within 1 of each other, letter counts within 1, and an image-only share
  within one block of the request, without the three being correlated;
- a problem's numbers (family, variant, values) are hashed to a fixed split, so a test problem never
  appears in train with the same numbers, for any seed.

Difficulty 1..3 widens the number range (pairs of given angles in steps of 5° at level 1; larger
Pythagorean triples, sides and ratios), unlocks two-step variants (a bisector, a perpendicular, a
derived side) from level 2, and moves distractors from conceptual slips (the supplement, forgetting
to halve) toward near misses (10° off at level 1, 1° off at level 3).

With `image_only`, one value the solution needs is only drawn in the figure: the question says "As
shown in the figure" and omits it, and the gold rationale starts by reading it off the figure.
"""

from __future__ import annotations

import argparse
import math
import random
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from core.io import atomic_write_json, atomic_write_jsonl
from core.log import get_logger
from data_gen.problem import LETTERS

log = get_logger("geosynth")

IMAGE_SIZE = 224  # Qwen2-VL merges 28x28 pixels into one token: 224x224 is 64 visual tokens.
SUPERSAMPLE = 2  # draw at 2x and box-downsample: anti-aliased lines and text at no real cost.
NUM_CHOICES = 4
# Families given two angles (triangle sum, exterior angle) draw them in these steps; families given
# one angle draw any whole degree, or level 1 would hold only a dozen distinct problems each.
PAIR_STEP = {1: 5, 2: 1, 3: 1}
NEAR_STEP = {1: 10, 2: 5, 3: 1}  # how far near-miss angle distractors sit from the answer
SLIP_DISTRACTORS = {1: 3, 2: 2, 3: 1}  # how many of the 3 distractors are conceptual slips; the rest are near misses
TEST_BUCKET = 5  # numbers whose hash is 0 mod 5 belong to test: about a fifth of each family's problem space
IMAGE_ONLY_BLOCK = 20


# ----------------------------------------------------------------------------------------------
# Geometry on math coordinates (y up); the renderer flips to screen coordinates.

Point = tuple[float, float]


def _polar(r: float, deg: float, origin: Point = (0.0, 0.0)) -> Point:
    return origin[0] + r * math.cos(math.radians(deg)), origin[1] + r * math.sin(math.radians(deg))


def _dist(p: Point, q: Point) -> float:
    return math.hypot(q[0] - p[0], q[1] - p[1])


def _angle(p: Point, v: Point, q: Point) -> float:
    """The angle p-v-q in degrees, 0..180."""
    a = math.atan2(p[1] - v[1], p[0] - v[0]) - math.atan2(q[1] - v[1], q[0] - v[0])
    d = abs(math.degrees(a)) % 360
    return 360 - d if d > 180 else d


def _lerp(p: Point, q: Point, t: float) -> Point:
    return p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t


def _foot(p: Point, a: Point, b: Point) -> Point:
    """The foot of the perpendicular from p to line ab."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)
    return a[0] + t * dx, a[1] + t * dy


def _triangle(angle_first: float, angle_second: float, base: float = 6.0) -> tuple[Point, Point, Point]:
    """Vertices P=(0,0), Q=(base,0) and R above, with the given interior angles at P and Q."""
    third = 180 - angle_first - angle_second
    pr = base * math.sin(math.radians(angle_second)) / math.sin(math.radians(third))
    return (0.0, 0.0), (base, 0.0), _polar(pr, angle_first)


def _check(measured: float, expected: float, what: str) -> None:
    """Refuse an item whose figure does not measure what its answer claims (a generator bug)."""
    if abs(measured - expected) > 1e-6 * max(1.0, abs(expected)):
        raise AssertionError(f"geosynth: {what} measures {measured:.6f} on the figure, but the "
                             f"answer says {expected}; this is a bug in the family's construction.")


def _pick(rng: random.Random, lo: int, hi: int, step: int) -> int:
    """A multiple of step in [lo, hi]."""
    return rng.randrange(-(-lo // step) * step, hi + 1, step)


# ----------------------------------------------------------------------------------------------
# Figures and drafts

class Side(NamedTuple):
    """A length label beside segment pq, on the side away from `away` (default: the figure's centre)."""

    p: str
    q: str
    label: str
    away: str = ""
    at: float = 0.5  # where along pq, from p


@dataclass
class Figure:
    """What to draw. Angles are (ray end, vertex, ray end, label); label "" draws the arc only."""

    points: dict[str, Point]
    segments: list[tuple[str, str]] = field(default_factory=list)
    dashed: list[tuple[str, str]] = field(default_factory=list)
    circles: list[tuple[str, float]] = field(default_factory=list)  # (centre point, radius)
    angles: list[tuple[str, str, str, str]] = field(default_factory=list)
    rights: list[tuple[str, str, str]] = field(default_factory=list)  # right-angle squares
    sides: list[Side] = field(default_factory=list)
    ticks: list[tuple[str, str]] = field(default_factory=list)  # equal-length marks

    def transform(self, rng: random.Random, max_rotation: float, flip: bool = True) -> None:
        """A random rotation (and mirror) so that the same numbers do not always look the same."""
        turn = math.radians(rng.uniform(-max_rotation, max_rotation))
        mirror = -1.0 if flip and rng.random() < 0.5 else 1.0
        c, s = math.cos(turn), math.sin(turn)
        self.points = {n: (c * x * mirror - s * y, s * x * mirror + c * y) for n, (x, y) in self.points.items()}


@dataclass
class Draft:
    """One problem before letters are assigned.

    context: facts stated in the text always ("in △ABC", "AB = AC").
    givens:  values drawn in the figure; in an image-only item one of them is left out of the text.
    slips:   candidate distractors from typical mistakes; invalid or duplicate ones are dropped.
    key:     what the text and the answer reveal (variant, values); decides the split, so train and
             test never share a problem that reads the same and has the same answer.
    """

    variant: str
    context: list[str]
    givens: list[str]
    ask: str
    steps: list[str]
    answer: int
    unit: str
    slips: list[float]
    figure: Figure
    key: tuple
    step: int = 1
    upper: int | None = 180  # choices stay below this (angles); None for lengths and areas
    max_rotation: float = 20.0


Family = Callable[[random.Random, int, bool], Draft]
FAMILIES: dict[str, Family] = {}


def _family(name: str) -> Callable[[Family], Family]:
    def register(fn: Family) -> Family:
        FAMILIES[name] = fn
        return fn
    return register


def _variant(rng: random.Random, table: dict[str, int], difficulty: int, exclude: tuple[str, ...] = ()) -> str:
    """A variant allowed at this difficulty; table maps variant -> minimum difficulty."""
    return rng.choice([v for v, level in table.items() if level <= difficulty and v not in exclude])


# ----------------------------------------------------------------------------------------------
# Families. Each returns a Draft whose answer it has measured on its own figure.

@_family("triangle_angle_sum")
def _triangle_angle_sum(rng: random.Random, d: int, image_only: bool) -> Draft:
    s = PAIR_STEP[d]
    variant = _variant(rng, {"third": 1, "bisector": 2}, d)
    while True:
        a, b = _pick(rng, 30, 100, s), _pick(rng, 30, 100, s)
        c = 180 - a - b
        if c >= 25 and (variant == "third" or c % 2 == 0):
            break
    A, B, C = _triangle(a, b)
    fig = Figure({"A": A, "B": B, "C": C}, segments=[("A", "B"), ("B", "C"), ("C", "A")],
                 angles=[("C", "A", "B", f"{a}°"), ("A", "B", "C", f"{b}°")])
    givens = [f"∠A = {a}°", f"∠B = {b}°"]
    _check(_angle(A, C, B), c, "∠ACB")
    if variant == "third":
        fig.angles.append(("A", "C", "B", "?"))
        return Draft(variant, ["in △ABC"], givens, "then the degree of ∠C is ()",
                     ["The three interior angles of a triangle sum to 180°.",
                      f"So ∠C = 180° - ∠A - ∠B = 180° - {a}° - {b}° = {c}°."],
                     c, "°", [a + b, 90 - c, abs(a - b), 180 - a, 180 - b], fig, (variant, a, b), NEAR_STEP[d])
    # The bisector meets AB at D with AD:DB = CA:CB (angle-bisector theorem).
    ca, cb = _dist(C, A), _dist(C, B)
    D = _lerp(A, B, ca / (ca + cb))
    fig.points["D"] = D
    fig.segments.append(("C", "D"))
    fig.angles.append(("A", "C", "D", "?"))
    _check(_angle(A, C, D), c / 2, "∠ACD")
    return Draft(variant, ["in △ABC", "CD bisects ∠ACB and meets AB at D"], givens,
                 "then the degree of ∠ACD is ()",
                 [f"In △ABC, ∠ACB = 180° - ∠A - ∠B = 180° - {a}° - {b}° = {c}°.",
                  f"Since CD bisects ∠ACB, ∠ACD = {c}° ÷ 2 = {c // 2}°."],
                 c // 2, "°", [c, (a + b) / 2, 180 - c // 2, a / 2, b / 2], fig, (variant, a, b), NEAR_STEP[d])


@_family("isosceles_base_angles")
def _isosceles(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {"apex_to_base": 1, "base_to_apex": 1, "altitude": 2}, d)
    b = rng.randint(50 if variant == "altitude" else 25, 75)
    apex = 180 - 2 * b
    B, C = (-3.0, 0.0), (3.0, 0.0)
    A = (0.0, 3.0 * math.tan(math.radians(b)))
    fig = Figure({"A": A, "B": B, "C": C}, segments=[("A", "B"), ("B", "C"), ("C", "A")],
                 ticks=[("A", "B"), ("A", "C")])
    context = ["in △ABC", "AB = AC"]
    _check(_angle(A, B, C), b, "∠ABC")
    _check(_angle(B, A, C), apex, "∠BAC")
    if variant == "apex_to_base":
        fig.angles += [("B", "A", "C", f"{apex}°"), ("A", "B", "C", "?")]
        return Draft(variant, context, [f"∠A = {apex}°"], "then the degree of ∠B is ()",
                     ["Since AB = AC, the base angles are equal: ∠B = ∠C.",
                      f"So ∠B = (180° - ∠A) ÷ 2 = (180° - {apex}°) ÷ 2 = {b}°."],
                     b, "°", [180 - apex, apex, 90 - apex, 180 - b, 90 - b], fig, (variant, b), NEAR_STEP[d])
    if variant == "base_to_apex":
        fig.angles += [("A", "B", "C", f"{b}°"), ("B", "A", "C", "?")]
        return Draft(variant, context, [f"∠B = {b}°"], "then the degree of ∠A is ()",
                     [f"Since AB = AC, ∠C = ∠B = {b}°.",
                      f"So ∠A = 180° - 2 × {b}° = {apex}°."],
                     apex, "°", [180 - b, 90 - b, b, 2 * b, apex / 2], fig, (variant, b), NEAR_STEP[d])
    D = _foot(B, A, C)
    fig.points["D"] = D
    fig.segments.append(("B", "D"))
    fig.rights.append(("A", "D", "B"))
    fig.angles += [("B", "A", "C", f"{apex}°"), ("D", "B", "C", "?")]
    _check(_angle(D, B, C), 90 - b, "∠DBC")
    return Draft(variant, context + ["BD ⊥ AC at D"], [f"∠A = {apex}°"], "then the degree of ∠DBC is ()",
                 [f"Since AB = AC, ∠C = (180° - {apex}°) ÷ 2 = {b}°.",
                  "Since BD ⊥ AC, ∠BDC = 90°.",
                  f"So ∠DBC = 90° - ∠C = 90° - {b}° = {90 - b}°."],
                 90 - b, "°", [b, apex, 90 - apex, 180 - b, 2 * apex], fig, (variant, b), NEAR_STEP[d])


# Angle 1 at G (on AB) and angle 2 at H (on CD), as (ray end, vertex, ray end); x = ∠EGB.
PARALLEL_VARIANTS: dict[str, tuple[tuple[str, str, str], tuple[str, str, str], int]] = {
    "corresponding": (("E", "G", "B"), ("G", "H", "D"), 1),
    "alternate": (("A", "G", "H"), ("G", "H", "D"), 1),
    "co_interior": (("B", "G", "H"), ("G", "H", "D"), 1),
    "supplement_then_corresponding": (("A", "G", "E"), ("G", "H", "D"), 2),
    "corresponding_then_supplement": (("E", "G", "B"), ("C", "H", "G"), 2),
}


@_family("parallel_lines")
def _parallel_lines(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {k: v[2] for k, v in PARALLEL_VARIANTS.items()}, d)
    while True:  # keep clear of 90°, where the figure could not tell the angles apart
        x = rng.randint(25, 155)
        if abs(x - 90) >= 15:
            break
    cot = 1 / math.tan(math.radians(x))
    G, H = (cot, 1.0), (-cot, -1.0)
    direction = _polar(1.3, x)
    pts = {"A": (-3.5, 1.0), "B": (3.5, 1.0), "C": (-3.5, -1.0), "D": (3.5, -1.0), "G": G, "H": H,
           "E": (G[0] + direction[0], G[1] + direction[1]), "F": (H[0] - direction[0], H[1] - direction[1])}
    one, two, _ = PARALLEL_VARIANTS[variant]
    g = round(_angle(*(pts[n] for n in one)))
    ans = round(_angle(*(pts[n] for n in two)))
    _check(_angle(*(pts[n] for n in one)), g, "∠1")
    _check(_angle(*(pts[n] for n in two)), ans, "∠2")
    equal = variant in ("corresponding", "alternate")
    _check(ans, g if equal else 180 - g, "the parallel-line relation")
    fig = Figure(pts, segments=[("A", "B"), ("C", "D"), ("E", "F")],
                 angles=[(*one, f"{g}°" if image_only else "1"), (*two, "2")])
    steps = {
        "corresponding": ["Since AB ∥ CD, ∠1 and ∠2 are corresponding angles, so they are equal.",
                          f"So ∠2 = ∠1 = {g}°."],
        "alternate": ["Since AB ∥ CD, ∠1 and ∠2 are alternate interior angles, so they are equal.",
                      f"So ∠2 = ∠1 = {g}°."],
        "co_interior": ["Since AB ∥ CD, ∠1 and ∠2 are same-side interior angles, so ∠1 + ∠2 = 180°.",
                        f"So ∠2 = 180° - {g}° = {ans}°."],
        "supplement_then_corresponding": [
            f"∠1 and ∠EGB lie on the straight line AB, so ∠EGB = 180° - {g}° = {ans}°.",
            f"Since AB ∥ CD, ∠2 and ∠EGB are corresponding angles, so ∠2 = {ans}°."],
        "corresponding_then_supplement": [
            f"Since AB ∥ CD, ∠GHD and ∠1 are corresponding angles, so ∠GHD = {g}°.",
            f"∠2 and ∠GHD lie on the straight line CD, so ∠2 = 180° - {g}° = {ans}°."],
    }[variant]
    return Draft(variant, ["AB ∥ CD", "line EF meets AB at G and CD at H"], [f"∠1 = {g}°"],
                 "then the degree of ∠2 is ()", steps, ans, "°",
                 [180 - ans, 90 - ans, ans / 2, 2 * ans, ans + 90], fig, ("angles", g, ans), NEAR_STEP[d],
                 max_rotation=12)


@_family("supplementary_angles")
def _supplementary(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {"supplement": 1, "bisector": 2, "perpendicular": 2}, d)
    while True:
        x = rng.randint(20, 70 if variant == "perpendicular" else 160)  # x = ∠AOC
        if x != 90 and (variant != "bisector" or x % 2 == 0):
            break
    theta = 180 - x  # ∠BOC
    A, O, B, C = (-3.0, 0.0), (0.0, 0.0), (3.0, 0.0), _polar(2.6, theta)
    fig = Figure({"A": A, "O": O, "B": B, "C": C}, segments=[("A", "B"), ("O", "C")],
                 angles=[("A", "O", "C", f"{x}°")])
    context = ["points A, O, B lie on a straight line"]
    givens = [f"∠AOC = {x}°"]
    _check(_angle(A, O, C), x, "∠AOC")
    if variant == "supplement":
        fig.angles.append(("C", "O", "B", "?"))
        _check(_angle(C, O, B), theta, "∠BOC")
        return Draft(variant, context, givens, "then the degree of ∠BOC is ()",
                     ["A, O, B lie on one straight line, so ∠AOC + ∠BOC = 180°.",
                      f"So ∠BOC = 180° - {x}° = {theta}°."],
                     theta, "°", [x, abs(90 - x), 90 + x, theta / 2, 360 - theta], fig, (variant, x), NEAR_STEP[d])
    if variant == "bisector":
        D = _polar(2.6, theta / 2)
        fig.points["D"] = D
        fig.segments.append(("O", "D"))
        fig.angles.append(("D", "O", "B", "?"))
        _check(_angle(D, O, B), theta / 2, "∠BOD")
        return Draft(variant, context + ["OD bisects ∠BOC"], givens, "then the degree of ∠BOD is ()",
                     [f"A, O, B lie on one straight line, so ∠BOC = 180° - {x}° = {theta}°.",
                      f"Since OD bisects ∠BOC, ∠BOD = {theta}° ÷ 2 = {theta // 2}°."],
                     theta // 2, "°", [theta, x, x / 2, 180 - theta // 2, 90 - x], fig, (variant, x), NEAR_STEP[d])
    D = _polar(2.6, theta - 90)
    fig.points["D"] = D
    fig.segments.append(("O", "D"))
    fig.rights.append(("C", "O", "D"))
    fig.angles.append(("D", "O", "B", "?"))
    _check(_angle(C, O, D), 90, "∠COD")
    _check(_angle(D, O, B), 90 - x, "∠BOD")
    return Draft(variant, context + ["OD ⊥ OC"], givens, "then the degree of ∠BOD is ()",
                 ["Since OD ⊥ OC, ∠COD = 90°.",
                  "A, O, B lie on one straight line, so ∠AOC + ∠COD + ∠BOD = 180°.",
                  f"So ∠BOD = 180° - {x}° - 90° = {90 - x}°."],
                 90 - x, "°", [x, theta, 90 + x, 180 - 2 * x, x / 2], fig, (variant, x), NEAR_STEP[d])


@_family("vertical_angles")
def _vertical(rng: random.Random, d: int, image_only: bool) -> Draft:
    # "sum" states ∠AOC + ∠BOD, which has no place in the figure: never image-only.
    variant = _variant(rng, {"vertical": 1, "adjacent": 1, "sum": 2, "perpendicular": 2}, d,
                       exclude=("sum",) if image_only else ())
    while True:
        x = rng.randint(20, 70 if variant == "perpendicular" else 160)  # x = ∠AOC = ∠BOD
        if x != 90:
            break
    phi = 180 - x  # direction of OC
    O = (0.0, 0.0)
    pts = {"A": (-3.0, 0.0), "B": (3.0, 0.0), "C": _polar(3.0, phi), "D": _polar(3.0, phi + 180), "O": O}
    fig = Figure(pts, segments=[("A", "B"), ("C", "D")])
    _check(_angle(pts["A"], O, pts["C"]), x, "∠AOC")
    _check(_angle(pts["B"], O, pts["D"]), x, "∠BOD")
    context = ["lines AB and CD intersect at O"]
    if variant == "vertical":
        fig.angles += [("A", "O", "C", f"{x}°"), ("B", "O", "D", "?")]
        return Draft(variant, context, [f"∠AOC = {x}°"], "then the degree of ∠BOD is ()",
                     ["∠AOC and ∠BOD are vertical angles, so they are equal.",
                      f"So ∠BOD = ∠AOC = {x}°."],
                     x, "°", [180 - x, abs(90 - x), x / 2, 2 * x, 180 - x / 2], fig, (variant, x), NEAR_STEP[d])
    if variant == "adjacent":
        fig.angles += [("A", "O", "C", f"{x}°"), ("A", "O", "D", "?")]
        _check(_angle(pts["A"], O, pts["D"]), 180 - x, "∠AOD")
        return Draft(variant, context, [f"∠AOC = {x}°"], "then the degree of ∠AOD is ()",
                     ["∠AOC and ∠AOD together make the straight angle ∠COD, so ∠AOC + ∠AOD = 180°.",
                      f"So ∠AOD = 180° - {x}° = {180 - x}°."],
                     180 - x, "°", [x, abs(90 - x), 90 + x, 360 - 2 * x, x / 2], fig, (variant, x), NEAR_STEP[d])
    if variant == "sum":
        fig.angles += [("A", "O", "C", ""), ("B", "O", "D", ""), ("C", "O", "B", "?")]
        _check(_angle(pts["C"], O, pts["B"]), 180 - x, "∠BOC")
        return Draft(variant, context + [f"∠AOC + ∠BOD = {2 * x}°"], [], "then the degree of ∠BOC is ()",
                     ["∠AOC and ∠BOD are vertical angles, so they are equal.",
                      f"So ∠AOC = {2 * x}° ÷ 2 = {x}°.",
                      f"∠BOC = 180° - ∠AOC = 180° - {x}° = {180 - x}°."],
                     180 - x, "°", [x, 2 * x, 180 - 2 * x, 360 - 2 * x, 90 + x], fig, (variant, x), NEAR_STEP[d])
    pts["E"] = (0.0, 2.6)
    fig.segments.append(("O", "E"))
    fig.rights.append(("E", "O", "B"))
    fig.angles += [("B", "O", "D", f"{x}°"), ("C", "O", "E", "?")]
    _check(_angle(pts["C"], O, pts["E"]), 90 - x, "∠COE")
    return Draft(variant, context + ["OE ⊥ AB"], [f"∠BOD = {x}°"], "then the degree of ∠COE is ()",
                 [f"∠AOC and ∠BOD are vertical angles, so ∠AOC = {x}°.",
                  "Since OE ⊥ AB, ∠AOE = 90°.",
                  f"So ∠COE = 90° - {x}° = {90 - x}°."],
                 90 - x, "°", [x, 180 - x, 90 + x, 180 - 2 * x, 2 * x], fig, (variant, x), NEAR_STEP[d])


@_family("exterior_angle")
def _exterior(rng: random.Random, d: int, image_only: bool) -> Draft:
    s = PAIR_STEP[d]
    variant = _variant(rng, {"exterior": 1, "remote_interior": 2}, d)
    while True:
        a, b = _pick(rng, 25, 95, s), _pick(rng, 25, 95, s)
        if a + b <= 155 and a != b:
            break
    e = a + b
    B, C, A = _triangle(b, 180 - a - b)
    D = (C[0] + 3.0, 0.0)
    fig = Figure({"A": A, "B": B, "C": C, "D": D}, segments=[("A", "B"), ("B", "D"), ("C", "A")])
    _check(_angle(A, C, D), e, "∠ACD")
    _check(_angle(B, A, C), a, "∠BAC")
    context = ["in △ABC", "D is on the extension of BC"]
    if variant == "exterior":
        fig.angles += [("B", "A", "C", f"{a}°"), ("A", "B", "C", f"{b}°"), ("A", "C", "D", "?")]
        return Draft(variant, context, [f"∠A = {a}°", f"∠B = {b}°"], "then the degree of ∠ACD is ()",
                     ["An exterior angle of a triangle equals the sum of the two interior angles not adjacent to it.",
                      f"So ∠ACD = ∠A + ∠B = {a}° + {b}° = {e}°."],
                     e, "°", [180 - e, abs(a - b), 180 - a, 180 - b, e / 2], fig, (variant, a, b), NEAR_STEP[d])
    fig.angles += [("B", "A", "C", f"{a}°"), ("A", "C", "D", f"{e}°"), ("A", "B", "C", "?")]
    return Draft(variant, context, [f"∠ACD = {e}°", f"∠A = {a}°"], "then the degree of ∠B is ()",
                 ["The exterior angle ∠ACD equals the sum of the interior angles ∠A and ∠B.",
                  f"So ∠B = ∠ACD - ∠A = {e}° - {a}° = {b}°."],
                 b, "°", [180 - e, e + a, 180 - b, 180 - e + a, a], fig, (variant, a, b), NEAR_STEP[d])


PRIMITIVE_TRIPLES = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (12, 35, 37), (9, 40, 41)]


def _triples(d: int) -> list[tuple[int, int, int]]:
    """Pythagorean triples per difficulty: small multiples of 3-4-5 first, larger primitives later."""
    primitives, largest = {1: (PRIMITIVE_TRIPLES[:4], 50), 2: (PRIMITIVE_TRIPLES[:5], 75),
                           3: (PRIMITIVE_TRIPLES, 100)}[d]
    return [(a * k, b * k, c * k) for a, b, c in primitives for k in range(1, 21) if c * k <= largest]


@_family("pythagoras")
def _pythagoras(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {"hypotenuse": 1, "leg": 1, "perimeter": 2, "area": 2}, d)
    a, b, c = rng.choice(_triples(d))
    if rng.random() < 0.5:
        a, b = b, a
    # BC = a (horizontal leg), AC = b (vertical leg), AB = c.
    A, B, C = (0.0, float(b)), (float(a), 0.0), (0.0, 0.0)
    _check(_dist(A, B), c, "AB")
    fig = Figure({"A": A, "B": B, "C": C}, segments=[("A", "B"), ("B", "C"), ("C", "A")],
                 rights=[("A", "C", "B")])
    context = ["in Rt△ABC", "∠C = 90°"]
    key = (variant, a, b)
    if variant == "hypotenuse":
        fig.sides += [Side("A", "C", str(b)), Side("B", "C", str(a)), Side("A", "B", "?")]
        return Draft(variant, context, [f"AC = {b}", f"BC = {a}"], "then the length of AB is ()",
                     ["By the Pythagorean theorem, AB² = AC² + BC².",
                      f"AB² = {b}² + {a}² = {b * b} + {a * a} = {c * c}, so AB = {c}."],
                     c, "", [a + b, c * c, abs(a - b), 2 * c], fig, key, upper=None, max_rotation=30)
    fig.sides += [Side("A", "C", str(b)), Side("A", "B", str(c))]
    givens = [f"AB = {c}", f"AC = {b}"]
    leg = [f"By the Pythagorean theorem, BC² = AB² - AC² = {c}² - {b}² = {c * c - b * b}, so BC = {a}."]
    if variant == "leg":
        fig.sides.append(Side("B", "C", "?"))
        return Draft(variant, context, givens, "then the length of BC is ()",
                     ["By the Pythagorean theorem, BC² = AB² - AC².",
                      f"BC² = {c}² - {b}² = {c * c} - {b * b} = {a * a}, so BC = {a}."],
                     a, "", [c - b, c + b, a * a, b], fig, key, upper=None, max_rotation=30)
    if variant == "perimeter":
        p = a + b + c
        return Draft(variant, context, givens, "then the perimeter of △ABC is ()",
                     leg + [f"The perimeter is AB + AC + BC = {c} + {b} + {a} = {p}."],
                     p, "", [b + c, a * b / 2, 2 * c + b, 2 * (b + c)], fig, key, upper=None,
                     max_rotation=30)
    area = a * b // 2  # one leg of every Pythagorean triple is even
    return Draft(variant, context, givens, "then the area of △ABC is ()",
                 leg + [f"The area is AC × BC ÷ 2 = {b} × {a} ÷ 2 = {area}."],
                 area, "", [a * b, b * c / 2, b * c, a + b + c], fig, key, upper=None, max_rotation=30)


@_family("inscribed_angle")
def _inscribed(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {"central_to_inscribed": 1, "inscribed_to_central": 1, "isosceles_oab": 2,
                             "diameter": 2}, d)
    near = NEAR_STEP[d]
    R = 2.5
    O = (0.0, 0.0)
    if variant == "diameter":
        y = rng.randint(20, 70)  # ∠ABC; the inscribed ∠ABC = half the central ∠AOC
        A, B, C = (-R, 0.0), (R, 0.0), _polar(R, 180 - 2 * y)
        fig = Figure({"O": O, "A": A, "B": B, "C": C}, segments=[("A", "B"), ("B", "C"), ("C", "A")],
                     circles=[("O", R)], angles=[("A", "B", "C", f"{y}°"), ("C", "A", "B", "?")])
        _check(_angle(A, B, C), y, "∠ABC")
        _check(_angle(C, A, B), 90 - y, "∠BAC")
        return Draft(variant, ["AB is a diameter of circle O", "point C is on circle O"], [f"∠ABC = {y}°"],
                     "then the degree of ∠BAC is ()",
                     ["Since AB is a diameter, the inscribed angle ∠ACB = 90°.",
                      f"So ∠BAC = 90° - ∠ABC = 90° - {y}° = {90 - y}°."],
                     90 - y, "°", [y, 180 - y, 2 * y, 90 + y, 180 - 2 * y], fig, (variant, y), near, max_rotation=30)
    if variant == "isosceles_oab":
        y = rng.randint(15, 70)  # ∠OAB
        x = 90 - y
    else:
        x = rng.randint(15, 80)  # ∠ACB; the central ∠AOB = 2x
    # A and B below the centre, C on the major arc above, so ∠ACB is half of ∠AOB.
    A, B = _polar(R, 270 - x), _polar(R, 270 + x)
    C = _polar(R, 90 + rng.uniform(-0.5, 0.5) * (150 - x))
    fig = Figure({"O": O, "A": A, "B": B, "C": C}, segments=[("O", "A"), ("O", "B"), ("C", "A"), ("C", "B")],
                 circles=[("O", R)])
    _check(_angle(A, O, B), 2 * x, "∠AOB")
    _check(_angle(A, C, B), x, "∠ACB")
    context = ["points A, B, C are on circle O"]
    if variant == "central_to_inscribed":
        fig.angles += [("A", "O", "B", f"{2 * x}°"), ("A", "C", "B", "?")]
        return Draft(variant, context, [f"∠AOB = {2 * x}°"], "then the degree of ∠ACB is ()",
                     ["∠ACB is an inscribed angle and ∠AOB is the central angle on the same arc AB.",
                      f"So ∠ACB = ∠AOB ÷ 2 = {2 * x}° ÷ 2 = {x}°."],
                     x, "°", [2 * x, 180 - x, 90 - x, x / 2, 180 - 2 * x], fig, (variant, x), near, max_rotation=30)
    if variant == "inscribed_to_central":
        fig.angles += [("A", "C", "B", f"{x}°"), ("A", "O", "B", "?")]
        return Draft(variant, context, [f"∠ACB = {x}°"], "then the degree of ∠AOB is ()",
                     ["∠AOB is the central angle and ∠ACB the inscribed angle on the same arc AB.",
                      f"So ∠AOB = 2 × ∠ACB = 2 × {x}° = {2 * x}°."],
                     2 * x, "°", [x, 180 - x, 180 - 2 * x, x / 2, 90 + x], fig, (variant, x), near, max_rotation=30)
    fig.segments.append(("A", "B"))
    fig.angles += [("O", "A", "B", f"{y}°"), ("A", "C", "B", "?")]
    _check(_angle(O, A, B), y, "∠OAB")
    return Draft(variant, context, [f"∠OAB = {y}°"], "then the degree of ∠ACB is ()",
                 [f"OA = OB, so ∠OBA = ∠OAB = {y}°.",
                  f"So ∠AOB = 180° - 2 × {y}° = {180 - 2 * y}°.",
                  f"The inscribed angle ∠ACB = ∠AOB ÷ 2 = {180 - 2 * y}° ÷ 2 = {x}°."],
                 x, "°", [180 - 2 * y, y, 180 - y, 90 + y, x / 2], fig, (variant, y), near, max_rotation=30)


# (height, horizontal offset of the slanted side, slanted side): integer sides for the parallelogram.
# Offsets stay below about 4/3 of the height, or the parallelogram gets too flat to read.
HEIGHT_TRIPLES = {1: [(4, 3, 5), (3, 4, 5), (8, 6, 10), (6, 8, 10)],
                  2: [(4, 3, 5), (3, 4, 5), (8, 6, 10), (6, 8, 10), (12, 5, 13), (9, 12, 15), (12, 9, 15)],
                  3: [(4, 3, 5), (3, 4, 5), (8, 6, 10), (6, 8, 10), (12, 5, 13), (9, 12, 15), (12, 9, 15),
                      (15, 8, 17), (16, 12, 20), (12, 16, 20)]}
SIDE_RANGE = {1: (2, 9), 2: (3, 15), 3: (4, 24)}


@_family("area_perimeter")
def _area_perimeter(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {"rect_area": 1, "rect_perimeter": 1, "para_perimeter": 1, "para_area": 1,
                             "rect_area_from_perimeter": 2}, d)
    lo, hi = SIDE_RANGE[d]
    while True:
        w, h = rng.randint(lo, hi), rng.randint(lo, hi)
        if w != h:
            break
    if variant.startswith("rect"):
        # A top-left, B bottom-left, C bottom-right, D top-right (GeoQA's usual lettering); AB = h, BC = w.
        pts = {"A": (0.0, float(h)), "B": (0.0, 0.0), "C": (float(w), 0.0), "D": (float(w), float(h))}
        fig = Figure(pts, segments=[("A", "B"), ("B", "C"), ("C", "D"), ("D", "A")], rights=[("A", "B", "C")])
        _check(_dist(pts["A"], pts["B"]) * _dist(pts["B"], pts["C"]), w * h, "the rectangle's area")
        fig.sides.append(Side("A", "B", str(h)))
        if variant == "rect_area_from_perimeter":
            p = 2 * (w + h)
            return Draft(variant, [f"the perimeter of rectangle ABCD is {p}"], [f"AB = {h}"],
                         "then the area of rectangle ABCD is ()",
                         [f"AB + BC = {p} ÷ 2 = {p // 2}, so BC = {p // 2} - {h} = {w}.",
                          f"So the area = AB × BC = {h} × {w} = {w * h}."],
                         w * h, "", [h * (p // 2), h * (p - h), p, w * h + h, (w + 1) * h], fig,
                         (variant, w, h), upper=None)
        fig.sides.append(Side("B", "C", str(w)))
        givens = [f"AB = {h}", f"BC = {w}"]
        if variant == "rect_area":
            return Draft(variant, [], givens, "then the area of rectangle ABCD is ()",
                         ["The area of a rectangle is length × width.",
                          f"So the area = AB × BC = {h} × {w} = {w * h}."],
                         w * h, "", [2 * (w + h), w + h, (w + 1) * h, w * (h + 1), w * h / 2], fig,
                         (variant, w, h), upper=None)
        return Draft(variant, [], givens, "then the perimeter of rectangle ABCD is ()",
                     ["The perimeter of a rectangle is 2 × (length + width).",
                      f"So the perimeter = 2 × ({h} + {w}) = {2 * (w + h)}."],
                     2 * (w + h), "", [w * h, w + h, 2 * w + h, w + 2 * h, 4 * w], fig, (variant, w, h), upper=None)
    if variant == "para_perimeter":
        side = h
        A = _polar(side, rng.uniform(55, 75))
    else:
        height, offset, side = rng.choice(HEIGHT_TRIPLES[d])
        if w < offset + 3:  # the foot E must fall inside BC, clear of C
            w = offset + 3 + rng.randrange(5)
        A = (float(offset), float(height))
    pts = {"A": A, "B": (0.0, 0.0), "C": (float(w), 0.0), "D": (A[0] + w, A[1])}
    fig = Figure(pts, segments=[("A", "B"), ("B", "C"), ("C", "D"), ("D", "A")])
    _check(_dist(pts["A"], pts["B"]), side, "AB")
    fig.sides.append(Side("A", "B", str(side)))
    if variant == "para_perimeter":
        fig.sides.append(Side("B", "C", str(w)))
        return Draft(variant, ["in parallelogram ABCD"], [f"AB = {side}", f"BC = {w}"],
                     "then the perimeter of parallelogram ABCD is ()",
                     ["Opposite sides of a parallelogram are equal: CD = AB and AD = BC.",
                      f"So the perimeter = 2 × (AB + BC) = 2 × ({side} + {w}) = {2 * (side + w)}."],
                     2 * (side + w), "", [side * w, side + w, 2 * side + w, side + 2 * w, 4 * w], fig,
                     (variant, w, side), upper=None)
    E = (float(offset), 0.0)
    fig.points["E"] = E
    fig.dashed.append(("A", "E"))
    fig.rights.append(("A", "E", "C"))
    fig.sides.append(Side("A", "E", str(height), away="B"))  # away from the slanted AB
    # BC's label goes in the middle of the longer of BE and EC, clear of E's letter.
    fig.sides.append(Side("B", "C", str(w), at=offset / (2 * w) if 2 * offset > w else (offset + w) / (2 * w)))
    _check(_angle(A, E, pts["C"]), 90, "∠AEC")
    return Draft(variant, ["in parallelogram ABCD", f"AB = {side}", "AE ⊥ BC at E"],
                 [f"BC = {w}", f"AE = {height}"], "then the area of parallelogram ABCD is ()",
                 ["The area of a parallelogram is base × height.",
                  f"With base BC = {w} and height AE = {height}, the area = {w} × {height} = {w * height}."],
                 w * height, "", [w * side, 2 * (w + side), w * height / 2, (w + offset) * height, w * height + w],
                 fig, (variant, w, height, offset), upper=None)


SIMILAR_RATIOS = {1: [(1, 2), (1, 3), (2, 3)],
                  2: [(1, 2), (1, 3), (2, 3), (3, 4), (2, 5), (3, 5)],
                  3: [(1, 2), (1, 3), (2, 3), (3, 4), (2, 5), (3, 5), (3, 7), (4, 7), (5, 8), (3, 8)]}
SIMILAR_UNITS = {1: (1, 5), 2: (1, 6), 3: (2, 8)}


@_family("similar_triangles")
def _similar(rng: random.Random, d: int, image_only: bool) -> Draft:
    variant = _variant(rng, {"find_bc": 1, "find_de": 1, "find_db": 2}, d)
    m, n = rng.choice(SIMILAR_RATIOS[d])  # AD : AB = DE : BC = m : n
    while True:
        u, v = rng.randint(*SIMILAR_UNITS[d]), rng.randint(*SIMILAR_UNITS[d])
        if max(u, v) <= 2.5 * min(u, v):  # keeps the triangle from being a sliver
            break
    ad, db, ab, de, bc = m * u, (n - m) * u, n * u, m * v, n * v
    B, C = (0.0, 0.0), (float(bc), 0.0)
    A = _polar(ab, rng.uniform(50, 75))
    D, E = _lerp(A, B, m / n), _lerp(A, C, m / n)
    pts = {"A": A, "B": B, "C": C, "D": D, "E": E}
    _check(_dist(A, D), ad, "AD")
    _check(_dist(D, E), de, "DE")
    fig = Figure(pts, segments=[("A", "B"), ("B", "C"), ("C", "A"), ("D", "E")])
    labels = {"AD": str(ad), "DB": str(db), "DE": str(de), "BC": str(bc)}
    asked = {"find_bc": "BC", "find_de": "DE", "find_db": "DB"}[variant]
    labels[asked] = "?"
    fig.sides += [Side(name[0], name[1], text) for name, text in labels.items()]
    context = ["in △ABC", "D and E are on AB and AC", "DE ∥ BC"]
    similar = "Since DE ∥ BC, △ADE ∽ △ABC, so AD : AB = DE : BC."
    key = (variant, m, n, u, v)
    if variant == "find_bc":
        return Draft(variant, context, [f"AD = {ad}", f"DB = {db}", f"DE = {de}"], "then the length of BC is ()",
                     [similar, f"AB = AD + DB = {ad} + {db} = {ab}.",
                      f"So BC = DE × AB ÷ AD = {de} × {ab} ÷ {ad} = {bc}."],
                     bc, "", [de + db, de * db / ad, de * ab / db, 2 * de, bc - ad], fig, key, upper=None)
    if variant == "find_de":
        return Draft(variant, context, [f"AD = {ad}", f"DB = {db}", f"BC = {bc}"], "then the length of DE is ()",
                     [similar, f"AB = AD + DB = {ad} + {db} = {ab}.",
                      f"So DE = BC × AD ÷ AB = {bc} × {ad} ÷ {ab} = {de}."],
                     de, "", [bc - db, bc * ad / db, bc * db / ab, bc / 2, bc - ad], fig, key, upper=None)
    return Draft(variant, context, [f"AD = {ad}", f"DE = {de}", f"BC = {bc}"], "then the length of DB is ()",
                 [similar, f"So AB = AD × BC ÷ DE = {ad} × {bc} ÷ {de} = {ab}.",
                  f"DB = AB - AD = {ab} - {ad} = {db}."],
                 db, "", [ab, bc - de, ad * de / bc, ad, ab + ad], fig, key, upper=None)


# ----------------------------------------------------------------------------------------------
# Choices

def _distractors(rng: random.Random, draft: Draft, difficulty: int) -> list[int]:
    """Three distinct wrong values: conceptual slips first at level 1, near misses at level 3.

    Near misses sit one to three steps from the answer *or* from the first slip: were they always
    around the answer, "pick the middle of the cluster" would beat the question.
    """
    def valid(v: float) -> bool:
        return (float(v).is_integer() and v > 0 and v != draft.answer
                and (draft.upper is None or v < draft.upper))

    slips = list(dict.fromkeys(int(v) for v in draft.slips if valid(v)))
    rng.shuffle(slips)
    chosen = slips[:SLIP_DISTRACTORS[difficulty]]
    offsets = [sign * k * draft.step for k in (1, 2, 3) for sign in (1, -1)]
    centres = [draft.answer] + chosen[:1]
    near = [c + o for c in centres for o in offsets]
    rng.shuffle(near)
    far = [draft.answer + sign * k * draft.step for k in range(4, 40) for sign in (1, -1)]
    for v in near + slips + far:
        if len(chosen) == NUM_CHOICES - 1:
            break
        if valid(v) and v not in chosen:
            chosen.append(v)
    if len(chosen) < NUM_CHOICES - 1:
        raise AssertionError(f"geosynth: found only {chosen} as distractors for {draft.answer}; widen the range.")
    return chosen


# ----------------------------------------------------------------------------------------------
# Rendering

_FONTS: dict[int, ImageFont.ImageFont | ImageFont.FreeTypeFont] = {}


def _font(size: int):
    """Pillow's built-in font: FreeType Aileron at any size (Pillow >= 10.1), else the bitmap font."""
    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except TypeError:  # older Pillow: one fixed-size bitmap font
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def _unit(dx: float, dy: float) -> tuple[float, float]:
    n = math.hypot(dx, dy) or 1.0
    return dx / n, dy / n


def _direction(p: Point, q: Point) -> float:
    return math.degrees(math.atan2(q[1] - p[1], q[0] - p[0])) % 360


def _gap_direction(blocked: list[float]) -> float:
    """The direction (degrees) farthest from every blocked direction: where a label fits best."""
    if not blocked:
        return 315.0
    def clearance(t: float) -> float:
        return min(abs((t - b + 180) % 360 - 180) for b in blocked)
    return max(range(0, 360, 5), key=clearance)


def _text(draw: ImageDraw.ImageDraw, center: Point, text: str, font, size: int) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x = min(max(center[0], w / 2 + 2), size - w / 2 - 2)
    y = min(max(center[1], h / 2 + 2), size - h / 2 - 2)
    draw.text((x - w / 2 - left, y - h / 2 - top), text, fill=0, font=font)


def render(fig: Figure, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw a figure: white background, black lines, lettered points, value labels."""
    k = SUPERSAMPLE
    S = size * k
    xs = [x for x, _ in fig.points.values()]
    ys = [y for _, y in fig.points.values()]
    for centre, r in fig.circles:
        cx, cy = fig.points[centre]
        xs += [cx - r, cx + r]
        ys += [cy - r, cy + r]
    margin = 26 * k  # room for labels outside the outermost points
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    scale = (S - 2 * margin) / span
    ox = S / 2 - scale * (max(xs) + min(xs)) / 2
    oy = S / 2 + scale * (max(ys) + min(ys)) / 2
    P = {n: (ox + scale * x, oy - scale * y) for n, (x, y) in fig.points.items()}  # screen: y down

    img = Image.new("L", (S, S), 255)
    draw = ImageDraw.Draw(img)
    width = 2 * k
    font = _font(13 * k)
    for centre, r in fig.circles:
        cx, cy = P[centre]
        rr = r * scale
        draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), outline=0, width=width)
    for p, q in fig.segments:
        draw.line((P[p], P[q]), fill=0, width=width)
    for p, q in fig.dashed:
        (x0, y0), (x1, y1) = P[p], P[q]
        length = math.hypot(x1 - x0, y1 - y0)
        dash, gap = 6 * k, 4 * k
        t = 0.0
        while t < length:
            t1 = min(t + dash, length)
            draw.line(((x0 + (x1 - x0) * t / length, y0 + (y1 - y0) * t / length),
                       (x0 + (x1 - x0) * t1 / length, y0 + (y1 - y0) * t1 / length)), fill=0, width=width)
            t += dash + gap

    # Directions already taken at each point, so that point letters go into the widest free gap.
    blocked: dict[str, list[float]] = {n: [] for n in P}
    for p, q in fig.segments + fig.dashed:
        for n, v in P.items():
            if n in (p, q):
                blocked[n].append(_direction(v, P[q if n == p else p]))
                continue
            (x0, y0), (x1, y1) = P[p], P[q]
            cross = (x1 - x0) * (v[1] - y0) - (y1 - y0) * (v[0] - x0)
            dot = (v[0] - x0) * (x1 - x0) + (v[1] - y0) * (y1 - y0)
            if abs(cross) < 1e-6 * S * S and 0 < dot < (x1 - x0) ** 2 + (y1 - y0) ** 2:  # inside the segment
                blocked[n] += [_direction(v, P[p]), _direction(v, P[q])]
    for centre, r in fig.circles:
        for n, v in P.items():
            if abs(math.hypot(v[0] - P[centre][0], v[1] - P[centre][1]) - r * scale) < 1e-6 * S:
                inward = _direction(v, P[centre])
                blocked[n] += [inward, inward + 90, inward - 90]

    for p, v, q in fig.rights:
        a, b = _unit(P[p][0] - P[v][0], P[p][1] - P[v][1]), _unit(P[q][0] - P[v][0], P[q][1] - P[v][1])
        e = 9 * k
        x, y = P[v]
        draw.line(((x + a[0] * e, y + a[1] * e), (x + (a[0] + b[0]) * e, y + (a[1] + b[1]) * e),
                   (x + b[0] * e, y + b[1] * e)), fill=0, width=k)
        blocked[v].append(_direction((0, 0), (a[0] + b[0], a[1] + b[1])))

    for p, v, q, label in fig.angles:
        t1, t2 = _direction(P[v], P[p]), _direction(P[v], P[q])
        start, end = (t1, t2) if (t2 - t1) % 360 < 180 else (t2, t1)  # PIL arcs run clockwise on screen
        sweep = (end - start) % 360
        r = 13 * k
        x, y = P[v]
        draw.arc((x - r, y - r, x + r, y + r), start, start + sweep, fill=0, width=k)
        mid = math.radians(start + sweep / 2)
        blocked[v].append(math.degrees(mid) % 360)
        if label:
            # Narrow angles push the label out until it clears both rays.
            reach = max(r + 12 * k, min(44 * k, 9 * k / max(math.sin(math.radians(sweep / 2)), 1e-3)))
            _text(draw, (x + reach * math.cos(mid), y + reach * math.sin(mid)), label, font, S)

    for p, q in fig.ticks:
        (x0, y0), (x1, y1) = P[p], P[q]
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        nx, ny = _unit(-(y1 - y0), x1 - x0)
        e = 5 * k
        draw.line(((mx - nx * e, my - ny * e), (mx + nx * e, my + ny * e)), fill=0, width=width)

    cx = sum(x for x, _ in P.values()) / len(P)
    cy = sum(y for _, y in P.values()) / len(P)
    for p, q, label, away, at in fig.sides:
        (x0, y0), (x1, y1) = P[p], P[q]
        mx, my = x0 + (x1 - x0) * at, y0 + (y1 - y0) * at
        nx, ny = _unit(-(y1 - y0), x1 - x0)
        fx, fy = P[away] if away else (cx, cy)
        if nx * (fx - mx) + ny * (fy - my) > 0:
            nx, ny = -nx, -ny
        _text(draw, (mx + nx * 11 * k, my + ny * 11 * k), label, font, S)

    for n, (x, y) in P.items():
        best = _gap_direction(blocked[n])
        clearance = min((abs((best - b + 180) % 360 - 180) for b in blocked[n]), default=180)
        # A letter squeezed between lines sits farther out, until it clears them.
        reach = min(22 * k, max(12 * k, 7 * k / max(math.sin(math.radians(min(clearance, 90))), 1e-3)))
        t = math.radians(best)
        _text(draw, (x + reach * math.cos(t), y + reach * math.sin(t)), n, font, S)
    return img.reduce(k)


# ----------------------------------------------------------------------------------------------
# Items and splits

def _shuffled(tag: str, n: int) -> list[int]:
    order = list(range(n))
    random.Random(tag).shuffle(order)
    return order


def _family_of(seed: int, split: str, index: int) -> str:
    names = list(FAMILIES)
    block, pos = divmod(index, len(names))
    return names[_shuffled(f"{seed}-{split}-families-{block}", len(names))[pos]]


def _answer_position(seed: int, split: str, index: int) -> int:
    block, pos = divmod(index, NUM_CHOICES)
    return _shuffled(f"{seed}-{split}-letters-{block}", NUM_CHOICES)[pos]


def _is_image_only(seed: int, split: str, index: int, share: float) -> bool:
    block, pos = divmod(index, IMAGE_ONLY_BLOCK)
    # Bresenham: block b holds floor((b+1)·20·share) - floor(b·20·share) image-only slots.
    count = (math.floor((block + 1) * IMAGE_ONLY_BLOCK * share + 1e-9)
             - math.floor(block * IMAGE_ONLY_BLOCK * share + 1e-9))
    return _shuffled(f"{seed}-{split}-image-only-{block}", IMAGE_ONLY_BLOCK)[pos] < count


def problem_key(family: str, key: tuple) -> str:
    """The record's `problem_key`: items that share it are one problem (the same numbers and answer with
    other letters, distractors, figure turn, or a value only in the figure)."""
    return "/".join([family, *(str(part) for part in key)])


def split_of_key(family: str, key: tuple) -> str:
    """The split a problem's numbers belong to, the same for every seed."""
    return "test" if zlib.crc32(repr((family, key)).encode()) % TEST_BUCKET == 0 else "train"


def make_item(seed: int, split: str, index: int, difficulty: int = 1,
              image_only_share: float = 0.3) -> tuple[dict, Figure]:
    """One record (without writing its image) and its figure; depends only on its arguments."""
    family = _family_of(seed, split, index)
    image_only = _is_image_only(seed, split, index, image_only_share)
    rng = random.Random(f"{seed}-{split}-{index}")
    for _ in range(1000):
        draft = FAMILIES[family](rng, difficulty, image_only)
        if split_of_key(family, draft.key) == split:
            break
    else:
        raise AssertionError(f"geosynth: family {family} found no {split} problem at difficulty {difficulty}.")
    context, givens, steps = list(draft.context), list(draft.givens), list(draft.steps)
    if image_only:
        hidden = givens.pop(rng.randrange(len(givens)))
        steps.insert(0, f"From the figure, {hidden}.")
    question = ", ".join(["As shown in the figure", *context, *givens, draft.ask])

    wrong = _distractors(rng, draft, difficulty)
    position = _answer_position(seed, split, index)
    values = wrong[:position] + [draft.answer] + wrong[position:]
    choices = [f"{v}{draft.unit}" for v in values]
    answer = LETTERS[position]
    draft.figure.transform(rng, draft.max_rotation)
    item_id = f"{split}-{index}"
    record = {"id": item_id, "image": f"images/{item_id}.png", "question": question, "choices": choices,
              "answer": answer, "rationale": " ".join(steps) + f"\nAnswer: {answer}",
              "family": family, "image_only": image_only, "problem_key": problem_key(family, draft.key)}
    return record, draft.figure


def _validate_args(num_train: int, num_test: int, seed: int, difficulty: int, image_only_share: float) -> None:
    for name, value in (("num_train", num_train), ("num_test", num_test), ("seed", seed)):
        if not isinstance(value, int):
            raise TypeError(f"geosynth: {name}={value!r}; pass an integer.")
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 0:
            raise ValueError(f"geosynth: {name}={value!r}; pass a count >= 0.")
    if difficulty not in (1, 2, 3):
        raise ValueError(f"geosynth: difficulty={difficulty!r}; use 1, 2 or 3.")
    if not 0.0 <= image_only_share <= 1.0:
        raise ValueError(f"geosynth: image_only_share={image_only_share!r}; use a fraction in [0, 1].")


def generate(out_dir: str | Path, num_train: int, num_test: int, seed: int, difficulty: int = 1,
             image_only_share: float = 0.3) -> dict:
    """Write train.jsonl, test.jsonl, images/ and (last) meta.json under out_dir; return the meta."""
    _validate_args(num_train, num_test, seed, difficulty, image_only_share)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    meta: dict = {"generator": "data_gen.geosynth",
                  "args": {"num_train": num_train, "num_test": num_test, "seed": seed, "difficulty": difficulty,
                           "image_only_share": image_only_share, "image_size": IMAGE_SIZE},
                  "splits": {}}
    for split, count in (("train", num_train), ("test", num_test)):
        records = []
        for index in range(count):
            record, figure = make_item(seed, split, index, difficulty, image_only_share)
            render(figure).save(out / record["image"], format="PNG")
            records.append(record)
        atomic_write_jsonl(out / f"{split}.jsonl", records)
        meta["splits"][split] = {
            "count": count,
            "families": {name: n for name in FAMILIES if (n := sum(r["family"] == name for r in records))},
            "answers": dict(sorted(Counter(r["answer"] for r in records).items())),
            "image_only": sum(r["image_only"] for r in records),
        }
    atomic_write_json(out / "meta.json", meta)  # last: its presence means the folder is complete
    return meta


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Output folder (created if missing).")
    parser.add_argument("--train", type=int, default=400, help="Number of train problems.")
    parser.add_argument("--test", type=int, default=200, help="Number of test problems.")
    parser.add_argument("--seed", type=int, default=0, help="Seed; the same arguments give the same bytes.")
    parser.add_argument("--difficulty", type=int, default=1, choices=(1, 2, 3),
                        help="1: one-step problems, small numbers, distractors from typical slips; "
                             "2: adds two-step variants and larger numbers; 3: largest numbers, "
                             "distractors mostly 1° or 1 unit off.")
    parser.add_argument("--image_only_share", type=float, default=0.3,
                        help="Fraction of problems where one needed value is given only in the figure.")
    args = parser.parse_args(argv)
    meta = generate(args.out, args.train, args.test, args.seed, args.difficulty, args.image_only_share)
    for split, stats in meta["splits"].items():
        log.info("%s: %d problems (%d image-only) in %s; families %s; answers %s", split, stats["count"],
                 stats["image_only"], args.out, stats["families"], stats["answers"])
    return meta


if __name__ == "__main__":
    main()
