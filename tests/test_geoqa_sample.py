"""40 real GeoQA questions in the original release's layout (tests/data/geoqa_sample, from the project's
shared notes): JSON arrays, letters, `image` file names; blank placeholder images. The loader reads them
as they are and as the authors' files name them (absolute paths from their machine, backslashes), and
the CoT prompt of each question is the original's text with its choices."""

import json
import shutil
from pathlib import Path

import pytest

from core.config import PromptConfig
from data_gen import prompts
from data_gen.geoqa import DataError, image_file_name, load_split

SAMPLE = Path(__file__).resolve().parent / "data" / "geoqa_sample"


def raw(split: str) -> list[dict]:
    return json.loads((SAMPLE / f"{split}.jsonl").read_text())


@pytest.mark.parametrize("split,count", [("train", 30), ("test", 10)])
def test_the_release_layout_loads(split, count):
    problems = load_split(SAMPLE, split)
    assert len(problems) == count and [p.id for p in problems] == [r["id"] for r in raw(split)]
    for p, r in zip(problems, raw(split)):
        assert Path(p.image) == (SAMPLE / "images" / r["image"]).resolve()
        assert p.choices == tuple(r["choices"]) and p.answer == r["answer"] and p.question == r["question"]


def test_each_cot_prompt_is_the_original_text_with_its_choices():
    for p, r in zip(load_split(SAMPLE, "train"), raw("train")):
        options = "\n".join(f"({letter}) {c}" for letter, c in zip("ABCD", r["choices"]))
        assert prompts.cot_prompt(p, PromptConfig()) == (
            f"{r['question']}\nChoices:\n{options}\nAnswer the question with Chain-of-Thought.")


@pytest.mark.parametrize("written", ["/home/nfs03/someone/vlm-cot/custom_data/geoQA-data/images/{name}",
                                     "D:\\data\\geoQA-data\\images\\{name}", "images\\{name}"],
                         ids=["authors-absolute", "windows", "relative-backslash"])
def test_image_paths_from_another_machine_fall_back_to_images_by_file_name(tmp_path, written, caplog):
    folder = tmp_path / "geoqa"
    shutil.copytree(SAMPLE, folder)
    records = raw("train")
    for r in records:
        r["image"] = written.format(name=r["image"])
    (folder / "train.jsonl").write_text(json.dumps(records))
    with caplog.at_level("INFO"):
        problems = load_split(folder, "train")
    assert [Path(p.image).name for p in problems] == [f"{r['id']}.png" for r in records]
    assert "30 images found by file name" in caplog.text
    # a file that is not there under its name either is still an error naming the item
    (folder / "images" / "train-3.png").unlink()
    with pytest.raises(DataError, match=r"train.jsonl item 4 \(id train-3\): image for id 'train-3' not found"):
        load_split(folder, "train")


def test_file_names_of_any_machine():
    assert image_file_name("/home/x/images/train-12.png") == "train-12.png"
    assert image_file_name("C:\\data\\images\\train-12.png") == "train-12.png"
    assert image_file_name("train-12.png") == "train-12.png"
