"""GeoSynth: families, balance, determinism, gold answers re-derived from the text, images, splits."""

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from data_gen import geosynth
from eval.answers import extract_answer, is_correct

SHARE = 0.3


def read_split(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[int, tuple[Path, dict[str, list[dict]]]]:
    """One generated folder per difficulty (about 2 s in all)."""
    out = {}
    for difficulty in (1, 2, 3):
        folder = tmp_path_factory.mktemp(f"geosynth-d{difficulty}")
        geosynth.generate(folder, 200, 60, seed=0, difficulty=difficulty, image_only_share=SHARE)
        out[difficulty] = folder, {split: read_split(folder, split) for split in ("train", "test")}
    return out


def all_items(sets) -> list[tuple[int, dict]]:
    return [(d, r) for d, (_, splits) in sets.items() for records in splits.values() for r in records]


# ---------------------------------------------------------------------------------------------
# An independent solver: re-derives every gold value from the question text (plus, for an
# image-only item, the value its rationale reads off the figure), without the generator's code.

VALUE_RE = re.compile(r"(∠[A-Z]+|∠\d|\b[A-Z]{2}\b) = (\d+)")


def given_values(record: dict) -> dict[str, int]:
    values = {name: int(v) for name, v in VALUE_RE.findall(record["question"])}
    if record["image_only"]:
        first = record["rationale"].split(". ")[0]
        assert first.startswith("From the figure, "), record
        hidden = first.removeprefix("From the figure, ").rstrip(".")
        assert hidden not in record["question"], f"{record['id']}: the hidden value is in the text"
        name, v = VALUE_RE.fullmatch(hidden.rstrip("°")).groups()
        values[name] = int(v)
    return values


def solve(record: dict) -> float | set[float]:
    q, v = record["question"], given_values(record)
    kind, what = re.search(r"then the (\w+) of (.+) is \(\)$", q).groups()
    family = record["family"]
    if family == "triangle_angle_sum":
        c = 180 - v["∠A"] - v["∠B"]
        return c / 2 if "bisects" in q else c
    if family == "isosceles_base_angles":
        return {"∠DBC": lambda: v["∠A"] / 2, "∠B": lambda: (180 - v["∠A"]) / 2,
                "∠A": lambda: 180 - 2 * v["∠B"]}[what]()
    if family == "parallel_lines":
        # Which of the two relations holds depends on where ∠1 and ∠2 sit in the figure; the
        # generator measures that on its coordinates. Here: one of the two, nothing else.
        return {v["∠1"], 180 - v["∠1"]}
    if family == "supplementary_angles":
        x = v["∠AOC"]
        return (180 - x) / 2 if "bisects" in q else 90 - x if "⊥" in q else 180 - x
    if family == "vertical_angles":
        if "+" in q:
            return 180 - int(re.search(r"∠AOC \+ ∠BOD = (\d+)", q).group(1)) / 2
        return {"∠BOD": lambda: v["∠AOC"], "∠AOD": lambda: 180 - v["∠AOC"],
                "∠COE": lambda: 90 - v["∠BOD"]}[what]()
    if family == "exterior_angle":
        return v["∠A"] + v["∠B"] if what == "∠ACD" else v["∠ACD"] - v["∠A"]
    if family == "pythagoras":
        if what == "AB":
            return math.hypot(v["AC"], v["BC"])
        bc = math.sqrt(v["AB"] ** 2 - v["AC"] ** 2)
        return {"BC": bc, "△ABC": v["AB"] + v["AC"] + bc if kind == "perimeter" else v["AC"] * bc / 2}[what]
    if family == "inscribed_angle":
        if "diameter" in q:
            return 90 - v["∠ABC"]
        if what == "∠AOB":
            return 2 * v["∠ACB"]
        return v["∠AOB"] / 2 if "∠AOB" in v else 90 - v["∠OAB"]
    if family == "area_perimeter":
        if stated := re.search(r"perimeter of rectangle ABCD is (\d+)", q):
            return v["AB"] * (int(stated.group(1)) / 2 - v["AB"])
        if kind == "perimeter":
            return 2 * (v["AB"] + v["BC"])
        return v["BC"] * v["AE"] if "parallelogram" in what else v["AB"] * v["BC"]
    if family == "similar_triangles":
        if what == "BC":
            return v["DE"] * (v["AD"] + v["DB"]) / v["AD"]
        if what == "DE":
            return v["BC"] * v["AD"] / (v["AD"] + v["DB"])
        return v["AD"] * v["BC"] / v["DE"] - v["AD"]
    raise AssertionError(f"no solver for family {family}")


def test_the_solver_covers_every_family():
    assert len(geosynth.FAMILIES) >= 9
    for name in geosynth.FAMILIES:
        assert f'family == "{name}"' in Path(__file__).read_text(encoding="utf-8"), name


def test_gold_answers_match_the_independent_solver(sets):
    for d, r in all_items(sets):
        expected = solve(r)
        gold = r["choices"]["ABCD".index(r["answer"])]
        value = float(gold.rstrip("°"))
        ok = value in expected if isinstance(expected, set) else math.isclose(value, expected)
        assert ok, f"difficulty {d}, {r['id']}: gold {gold}, solver {expected}: {r['question']}"
        assert value.is_integer() and value > 0, r
        if gold.endswith("°"):
            assert value < 180, r


def test_every_gold_rationale_is_judged_correct(sets):
    for _, r in all_items(sets):
        assert r["rationale"].endswith(f"\nAnswer: {r['answer']}"), r["rationale"]
        assert is_correct(r["rationale"], r["answer"], r["choices"]), r
        wrong = "ABCD"[("ABCD".index(r["answer"]) + 1) % 4]
        assert not is_correct(r["rationale"], wrong, r["choices"])  # the judge is not trivially true
        # 2 to 5 sentences of reasoning before the answer line (a figure reading adds one).
        assert 2 <= r["rationale"].split("\n")[0].count(". ") + 1 <= 5, r["rationale"]


# ---------------------------------------------------------------------------------------------
# Shape of the data

def test_families_present_with_near_equal_shares(sets):
    for d, (_, splits) in sets.items():
        counts = Counter(r["family"] for r in splits["train"])
        assert set(counts) == set(geosynth.FAMILIES) and len(counts) >= 9
        assert max(counts.values()) - min(counts.values()) <= 1, (d, counts)


def test_answer_letters_are_balanced_per_split(sets):
    for d, (_, splits) in sets.items():
        for split, records in splits.items():
            counts = Counter(r["answer"] for r in records)
            assert set(counts) == set("ABCD")
            assert max(counts.values()) - min(counts.values()) <= 1, (d, split, counts)
            # No family always gets the same letter (letters and families come from separate blocks).
            by_family = Counter((r["family"], r["answer"]) for r in records)
            assert all(len({a for f, a in by_family if f == fam}) >= 2 for fam in geosynth.FAMILIES)


ANGLE_CHOICE = re.compile(r"[1-9]\d*°")
NUMBER_CHOICE = re.compile(r"[1-9]\d*")


def test_choices_are_four_distinct_consistently_formatted(sets):
    for _, r in all_items(sets):
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4, r
        pattern = ANGLE_CHOICE if r["choices"][0].endswith("°") else NUMBER_CHOICE
        assert all(pattern.fullmatch(c) for c in r["choices"]), r["choices"]
        assert r["answer"] in "ABCD" and len(r["answer"]) == 1
        # Every choice text maps back to its own letter through the project's judge.
        for letter, text in zip("ABCD", r["choices"]):
            assert extract_answer(f"Answer: {text}", r["choices"]) == letter


@pytest.mark.parametrize("split", ["train", "test"])
def test_image_only_share_and_text(sets, split):
    for d, (_, splits) in sets.items():
        records = splits[split]
        hidden = sum(r["image_only"] for r in records)
        # Blocks of 20 hold exactly round(20 * share) image-only items: off by less than one block.
        assert abs(hidden - SHARE * len(records)) <= 20 * SHARE, (d, split, hidden)
        for r in records:
            assert r["question"].startswith("As shown in the figure")
            assert r["rationale"].startswith("From the figure, ") == r["image_only"], r


def test_ids_unique_and_images_open_at_the_expected_size(sets):
    folder, splits = sets[1]
    ids = [r["id"] for records in splits.values() for r in records]
    assert len(ids) == len(set(ids))
    assert [r["id"] for r in splits["test"][:3]] == ["test-0", "test-1", "test-2"]
    for r in splits["train"][:40] + splits["test"][:20]:
        path = folder / r["image"]
        assert r["image"] == f"images/{r['id']}.png"
        assert path.stat().st_size < 12_000  # a few KB: a tiny vision model reads these
        with Image.open(path) as im:
            im.load()
            assert im.size == (geosynth.IMAGE_SIZE, geosynth.IMAGE_SIZE)
            assert im.getextrema() == (0, 255)  # black drawing on white


def test_train_and_test_never_share_a_stated_problem(sets):
    def stated(records):  # question and gold text; image-only questions omit a value, so skip them
        return {(r["question"], r["choices"]["ABCD".index(r["answer"])]) for r in records if not r["image_only"]}

    for d, (_, splits) in sets.items():
        train, test = stated(splits["train"]), stated(splits["test"])
        assert not train & test, (d, sorted(train & test)[:3])


def test_problem_key_names_the_problem_and_splits_train_from_test(sets):
    """problem_key is the generator's split key: no key is in both splits, and items that state the same
    solution (an image-only item's rationale opens by reading its hidden value off the figure) share it."""
    def solution(r):  # the steps, without the opening figure reading of an image-only item or the letter
        steps = r["rationale"].rsplit("\nAnswer:", 1)[0]
        return r["family"], re.sub(r"^From the figure, [^.]*\. ", "", steps)

    for d, (_, splits) in sets.items():
        keys = {split: {r["problem_key"] for r in records} for split, records in splits.items()}
        assert not keys["train"] & keys["test"], d
        by_solution: dict = {}
        for r in splits["train"]:
            assert r["problem_key"].startswith(r["family"] + "/")
            by_solution.setdefault(solution(r), set()).add(r["problem_key"])
        assert all(len(k) == 1 for k in by_solution.values()), d
        twins = [k for k in by_solution if len({r["image_only"] for r in splits["train"] if solution(r) == k}) == 2]
        assert twins, d  # a stated item and its image-only twin: the case the key exists for does occur


def test_difficulty_changes_numbers_and_unlocks_variants(sets):
    def given_angles(d: int) -> list[int]:  # the two angles a triangle-sum problem states
        return [int(v) for r in sets[d][1]["train"] if r["family"] == "triangle_angle_sum"
                for v in re.findall(r"∠[AB] = (\d+)°", r["question"])]

    def questions(d: int) -> str:
        return " ".join(r["question"] for r in sets[d][1]["train"])

    assert all(a % 5 == 0 for a in given_angles(1)) and any(a % 5 for a in given_angles(3))
    for two_step in ("bisects", "⊥ AC", "diameter"):
        assert two_step not in questions(1) and two_step in questions(3), two_step


def test_loads_through_the_geoqa_loader(sets):
    from data_gen import geoqa

    folder, splits = sets[2]
    problems = geoqa.load_split(folder, "test")
    assert [p.id for p in problems] == [r["id"] for r in splits["test"]]
    assert problems[0].rationale and Path(problems[0].image).is_file()


# ---------------------------------------------------------------------------------------------
# Determinism

def test_same_arguments_give_the_same_bytes_and_another_seed_differs(tmp_path):
    args = {"num_train": 24, "num_test": 8, "seed": 7, "difficulty": 2, "image_only_share": 0.5}
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    geosynth.generate(a, **args)
    geosynth.main(["--out", str(b), "--train", "24", "--test", "8", "--seed", "7", "--difficulty", "2",
                   "--image_only_share", "0.5"])
    geosynth.generate(c, **{**args, "seed": 8})
    for name in ["train.jsonl", "test.jsonl", "meta.json"] + [f"images/{s}-{i}.png" for s in ("train", "test")
                                                              for i in range(8)]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()
    assert (a / "images/train-0.png").read_bytes() != (c / "images/train-0.png").read_bytes()


def test_item_does_not_depend_on_the_number_generated(tmp_path, sets):
    folder, splits = sets[1]
    geosynth.generate(tmp_path, 7, 3, seed=0, difficulty=1, image_only_share=SHARE)
    assert read_split(tmp_path, "train") == splits["train"][:7]
    assert read_split(tmp_path, "test") == splits["test"][:3]
    assert (tmp_path / "images/train-6.png").read_bytes() == (folder / "images/train-6.png").read_bytes()


def test_meta_is_written_with_counts(sets):
    folder, splits = sets[1]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["args"] == {"num_train": 200, "num_test": 60, "seed": 0, "difficulty": 1,
                            "image_only_share": SHARE, "image_size": geosynth.IMAGE_SIZE}
    assert meta["splits"]["train"]["families"] == dict(Counter(r["family"] for r in splits["train"]))
    assert sum(meta["splits"]["test"]["families"].values()) == 60


@pytest.mark.parametrize("kwargs, fragment", [
    ({"difficulty": 4}, "difficulty=4"),
    ({"image_only_share": 1.5}, "image_only_share=1.5"),
    ({"num_train": -1}, "num_train=-1"),
])
def test_bad_arguments_name_the_value(tmp_path, kwargs, fragment):
    args = {"num_train": 2, "num_test": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=re.escape(fragment)):
        geosynth.generate(tmp_path, **args)
