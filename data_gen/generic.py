"""Bring your own data: JSON Lines or a Hugging Face dataset saved on disk.

    <dir>/{train,test}.jsonl       fields: id, image, question, answer, optional choices
    <dir>/ (a DatasetDict saved with `save_to_disk`), same columns; `image` may be a path or an
                                   image feature (then it is written once to <dir>/.images/)

Items without `choices` are free-form: the gold `answer` is a number or short text, judged by
`eval.answers.is_correct` (numbers by value). Items with `choices` behave as GeoQA items.

    python -m data_gen.generic --data_dir my-data --split test     # validate, print counts
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from data_gen.geoqa import DataError, collect, find_split_file, read_records, validate_cli
from data_gen.problem import Problem


def _is_saved_dataset(data_dir: Path) -> bool:
    return (data_dir / "dataset_dict.json").is_file() or (data_dir / "dataset_info.json").is_file()


def _hf_records(data_dir: Path, split: str) -> Iterator[tuple[str, Any]]:
    """Rows of a saved HF dataset as raw items; image features are written out as PNG files."""
    import datasets

    loaded = datasets.load_from_disk(str(data_dir))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{data_dir}: the saved dataset has no split {split!r} "
                            f"(it has {list(loaded)}); save one named {split!r}.")
        ds = loaded[split]
    else:
        ds = loaded
    image_dir = data_dir / ".images" / split
    for i, row in enumerate(ds):
        row = dict(row)
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            # An Image feature decodes to a PIL image: write it once, keep the path.
            image_dir.mkdir(parents=True, exist_ok=True)
            path = image_dir / f"{row.get('id', i)}.png"
            if not path.is_file():
                tmp = path.with_name(f".{path.name}.tmp")
                image.convert("RGB").save(tmp, format="PNG")
                tmp.replace(path)  # a killed run never leaves a truncated image behind
            row["image"] = str(path)
        yield f"{data_dir}[{split}] row {i}", row


def load_split(data_dir: str | Path, split: str, *, skip_bad: bool = False, limit: int = 0) -> list[Problem]:
    """Load one split of a generic dataset folder as Problems."""
    data_dir = Path(data_dir).expanduser().resolve()
    if _is_saved_dataset(data_dir):
        records, what = _hf_records(data_dir, split), f"{data_dir.name}[{split}]"
    else:
        path = find_split_file(data_dir, split)
        records, what = read_records(path), path.name
    problems = collect(records, data_dir, require_choices=False, skip_bad=skip_bad, what=what)
    return problems[:limit] if limit else problems


if __name__ == "__main__":
    validate_cli(load_split, "Validate a generic dataset folder and print counts.")
