"""GeoQA loader for the processed layout the seed uses (REFERENCE.md §2, DESIGN.md §3).

    <geoqa_dir>/train.jsonl, test.jsonl   one JSON array, or JSON Lines
    <geoqa_dir>/images/<id>.png           or the path in `image`, relative to <geoqa_dir>

Fields: `id`, `image` (optional: defaults to images/<id>.png), `question` (without choices),
`choices` (list of strings), `answer` (a letter, or a 0-based index into choices); optional
`rationale` (a gold solution) and `problem_key` (items with one key are one problem in other clothes:
letters, distractors, a value moved into the figure; the validation split keeps them together).
Everything downstream joins by `id`, never by list position (the reference labelled samples by
position and shifted every label after a missing item, REFERENCE.md §7.7).

Bad input raises `DataError` naming the file, the line (or array item) and the id, with the fix.
With `skip_bad=True` bad items are dropped instead and counted by reason.

    python -m data_gen.geoqa --geoqa_dir geoQA-data --split test     # validate a folder, print counts
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from core.checks import InputError
from core.io import FileError, read_text
from core.log import get_logger, log_counts
from data_gen.problem import LETTERS, Problem

log = get_logger("data")

SPLIT_FILES = ("{split}.jsonl", "{split}.json")


class DataError(InputError):
    """An input item or file that cannot be used; the message names the place and the fix.

    reason: a short label used for the skip counts ("missing image", "duplicate id", ...).
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


def find_split_file(data_dir: Path, split: str) -> Path:
    for pattern in SPLIT_FILES:
        path = data_dir / pattern.format(split=split)
        if path.is_file():
            return path
    tried = ", ".join(pattern.format(split=split) for pattern in SPLIT_FILES)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder; pass the processed data folder "
                        f"(with {tried} and images/).")
    raise DataError(f"{data_dir}: no {split} file (looked for {tried}); put the {split} split there.")


def read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield (place, raw item) from a JSON array file or a JSON Lines file.

    place is "file:line N" for JSON Lines and "file item N" for an array (1-based).
    """
    try:
        text = read_text(path, "save the file as UTF-8")  # a byte-order mark is read, not refused
    except FileError as e:
        raise DataError(str(e), "not UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; it must hold a JSON array or JSON Lines.")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:line {e.lineno}: not valid JSON ({e.msg}); the file starts "
                            f"with '[' so it is read as one JSON array.") from None
        for i, item in enumerate(items, 1):
            yield f"{path} item {i}", item
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:line {lineno}: not valid JSON ({e.msg}); each line must be one "
                            f"JSON object.") from None
        yield f"{path}:line {lineno}", item


def parse_answer_letter(answer: Any, choices: list[str], where: str) -> str:
    """A gold answer given as a letter or a 0-based index, as a letter inside the choices."""
    if isinstance(answer, bool):
        raise DataError(f"{where}: answer {answer!r} is neither a letter nor an index.", "bad answer")
    if isinstance(answer, int):
        index = answer
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        index = LETTERS.index(answer.strip().upper())
    elif isinstance(answer, str) and answer.strip().isdigit():
        index = int(answer.strip())
    else:
        raise DataError(f"{where}: answer {answer!r} is neither an option letter (A, B, ...) nor a "
                        f"0-based index; fix the item's `answer`.", "bad answer")
    if not 0 <= index < len(choices):
        raise DataError(f"{where}: answer {answer!r} is outside the {len(choices)} choices "
                        f"{choices}; fix the item's `answer` or `choices`.", "answer outside choices")
    return LETTERS[index]


def image_file_name(image: str) -> str:
    """The file name of a path written on any machine: `/home/x/geoqa/images/train-12.png` and
    `C:\\data\\images\\train-12.png` both give `train-12.png`."""
    return image.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def resolve_image(image: Any, item_id: str, data_dir: Path, where: str, by_name: Counter | None = None) -> str:
    """The absolute image path: `image` relative to data_dir, or under images/, or images/<id>.png.

    A path that does not exist as written (the original release's files hold the authors' absolute
    paths, `/home/.../images/train-12.png`, and some carry backslashes) falls back to images/<its file
    name>; `by_name` counts those, so the loader can say how many it found that way."""
    as_written: list[Path] = []
    if image:
        if not isinstance(image, str):
            raise DataError(f"{where}: `image` must be a path string, got {type(image).__name__}.", "missing image")
        p = Path(image)
        as_written = [p] if p.is_absolute() else [data_dir / p, data_dir / "images" / p]
        by_file_name = [data_dir / "images" / image_file_name(image)]
    else:
        by_file_name = [data_dir / "images" / f"{item_id}.png"]
    candidates = as_written + [c for c in by_file_name if c not in as_written]
    for c in candidates:
        if c.is_file():
            if by_name is not None and image and c not in as_written:
                by_name["image found by file name"] += 1
            return str(c.resolve())
    raise DataError(f"{where}: image for id {item_id!r} not found (looked at "
                    f"{', '.join(str(c) for c in candidates)}); add the file or fix `image`.", "missing image")


def parse_record(raw: Any, where: str, data_dir: Path, *, require_choices: bool,
                 by_name: Counter | None = None) -> Problem:
    """Validate one raw item and build its Problem (raises DataError naming `where` and the id)."""
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(raw).__name__}.")
    item_id = raw.get("id")
    if item_id is None or str(item_id).strip() == "":
        raise DataError(f"{where}: the item has no `id`; every item needs a unique id.", "missing id")
    item_id = str(item_id)
    where = f"{where} (id {item_id})"
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: missing or empty `question`.", "bad question")
    choices = raw.get("choices")
    if choices is not None and not (isinstance(choices, list) and len(choices) >= 2
                                    and all(isinstance(c, (str, int, float)) for c in choices)):
        raise DataError(f"{where}: `choices` must be a list of at least 2 strings, got {choices!r}.", "bad choices")
    if require_choices and not choices:
        raise DataError(f"{where}: missing `choices`; GeoQA items are multiple choice.", "bad choices")
    if "answer" not in raw or raw["answer"] is None or str(raw["answer"]).strip() == "":
        raise DataError(f"{where}: missing `answer`.", "bad answer")
    if choices:
        choices = [str(c) for c in choices]
        answer = parse_answer_letter(raw["answer"], choices, where)
    else:
        answer = str(raw["answer"]).strip()
    image = resolve_image(raw.get("image"), item_id, data_dir, where, by_name)
    rationale = raw.get("rationale") or ""
    problem_key = raw.get("problem_key")
    if problem_key is not None and (isinstance(problem_key, bool) or not isinstance(problem_key, (str, int))):
        raise DataError(f"{where}: `problem_key` must be a string or an integer, got {problem_key!r}.",
                        "bad problem_key")
    return Problem(id=item_id, image=image, question=question.strip(),
                   choices=tuple(choices) if choices else None, answer=answer, rationale=str(rationale),
                   problem_key="" if problem_key is None else str(problem_key).strip(), source=where)


def unreadable_images(problems: list[Problem]) -> dict[str, str]:
    """id -> why, for every problem whose image cannot be opened and verified. Done once at load, so a
    broken file is named by its id now, not as a PIL traceback after hours of sampling. Threads: the
    work is file reads and checksums (4,000 GeoSynth images: docs/pipeline.md)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def broken(p: Problem) -> str | None:
        try:
            with Image.open(p.image) as img:
                img.verify()  # the file's structure and checksums, without decoding every pixel
            return None
        except Exception as e:  # PIL raises many kinds (SyntaxError, OSError, ValueError ...) for a bad file
            return f"{p.image}: {type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
        return {p.id: why for p, why in zip(problems, pool.map(broken, problems)) if why}


def collect(records: Iterator[tuple[str, Any]], data_dir: Path, *, require_choices: bool,
            skip_bad: bool, what: str) -> list[Problem]:
    """Parse records, reject duplicate ids, and either raise on or count bad items."""
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    by_name: Counter[str] = Counter()
    for where, raw in records:
        try:
            problem = parse_record(raw, where, data_dir, require_choices=require_choices, by_name=by_name)
            if problem.id in first_seen:
                raise DataError(f"{where}: duplicate id {problem.id!r} (first at {first_seen[problem.id]}); "
                                f"ids must be unique within a split.", "duplicate id")
        except DataError as e:
            if not skip_bad:
                raise
            skipped[e.reason] += 1
            log.warning("skipped %s", e)
            continue
        first_seen[problem.id] = where
        problems.append(problem)
    unreadable = unreadable_images(problems)
    if unreadable and not skip_bad:
        listed = "\n  ".join(f"{first_seen[i]} (id {i}): {why}" for i, why in list(unreadable.items())[:20])
        more = f"\n  ... and {len(unreadable) - 20} more" if len(unreadable) > 20 else ""
        raise DataError(f"{what}: {len(unreadable)} image(s) cannot be read:\n  {listed}{more}\nReplace the files, "
                        f"or pass data.skip_bad=true to leave those items out.", "unreadable image")
    for item_id, why in unreadable.items():
        log.warning("skipped %s (id %s): unreadable image: %s", first_seen[item_id], item_id, why)
    if unreadable:
        skipped["unreadable image"] += len(unreadable)
        problems = [p for p in problems if p.id not in unreadable]
    counts = {"kept": len(problems), **skipped}
    log_counts(log, what, counts)
    if by_name:
        log.info("%s: %d images found by file name under %s (their `image` paths do not exist here, e.g. "
                 "paths from the machine the data was made on)", what, sum(by_name.values()), data_dir / "images")
    if not problems:
        raise DataError(f"{what}: no usable items" + (f" ({sum(skipped.values())} skipped as bad)" if skipped else "")
                        + "; check the file's contents.")
    return problems


def load_split(geoqa_dir: str | Path, split: str, *, skip_bad: bool = False, limit: int = 0) -> list[Problem]:
    """Load one split of a processed GeoQA folder as Problems (see the module docstring)."""
    data_dir = Path(geoqa_dir).expanduser().resolve()
    path = find_split_file(data_dir, split)
    problems = collect(read_records(path), data_dir, require_choices=True, skip_bad=skip_bad,
                       what=f"{path.name}")
    return problems[:limit] if limit else problems


def validate_cli(loader, description: str, argv: list[str] | None = None) -> None:
    """`python -m data_gen.<loader module> --data_dir DIR --split S`: load a split, print counts."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_dir", "--geoqa_dir", required=True, help="the data folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--skip_bad", action="store_true", help="skip and count bad items instead of failing")
    args = parser.parse_args(argv)
    try:
        problems = loader(args.data_dir, args.split, skip_bad=args.skip_bad)
    except DataError as e:
        sys.exit(f"error: {e}")
    kinds = Counter("multiple choice" if p.choices else "free-form" for p in problems)
    answers = Counter(p.answer for p in problems if p.choices)
    print(f"{len(problems)} problems: {dict(kinds)}; option answers {dict(sorted(answers.items()))}")


if __name__ == "__main__":
    validate_cli(load_split, "Validate a GeoQA-format folder and print counts.")
