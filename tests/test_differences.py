"""docs/differences.md and the code cannot drift apart: every row that names a config key states that key's
default as the code resolves it (run.py's RunConfig, else self_select_scaling.py's ScalingConfig)."""

import re
from pathlib import Path

import pytest
import yaml

from core.config import RunConfig, ScalingConfig, field_help

PAGE = Path(__file__).resolve().parents[1] / "docs" / "differences.md"
DEFAULTS = {**{k: v[1] for k, v in field_help(ScalingConfig).items()}, **{k: v[1] for k, v in field_help(RunConfig).items()}}


def table(heading: str) -> list[list[str]]:
    """The rows of the table under `heading`, as cells (the header and the rule line left out)."""
    text = PAGE.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def value(cell: str, default):
    inner = re.fullmatch(r"`(.*)`", cell)
    assert inner, f"{cell!r}: write the value in backticks"
    return inner.group(1) if isinstance(default, str) else yaml.safe_load(inner.group(1))


def keyed(rows: list[list[str]]) -> list[tuple[str, list[str]]]:
    return [(m.group(1), row) for row in rows if (m := re.fullmatch(r"`([\w.]+)`", row[0]))]


FOLLOWS = keyed(table("Defaults that follow the original"))
DIFFERS = keyed(table("Where ours differs"))


def test_the_page_has_both_tables():
    assert len(FOLLOWS) >= 20 and len(DIFFERS) >= 4
    workflow = table("The self-selection scaling workflow")
    assert [row[0] for row in workflow] == ["N", "pool", "mix", "model", "test samples", "select sets", "report", "resume"]
    assert len(table("Where ours differs")) > len(DIFFERS)  # the bug fixes without a key are rows too


@pytest.mark.parametrize("key,row", FOLLOWS, ids=[k for k, _ in FOLLOWS])
def test_a_default_said_to_follow_the_original_is_the_code_s(key, row):
    assert key in DEFAULTS, f"{key}: no such config key"
    assert value(row[1], DEFAULTS[key]) == DEFAULTS[key]


@pytest.mark.parametrize("key,row", DIFFERS, ids=[k for k, _ in DIFFERS])
def test_a_default_said_to_differ_is_the_code_s(key, row):
    assert key in DEFAULTS, f"{key}: no such config key"
    assert value(row[2], DEFAULTS[key]) == DEFAULTS[key]  # the "ours" column
    assert row[1] != row[2] and row[3] and row[4]          # an original value, a reason, a way to flip


def test_the_recommended_preset_is_what_the_page_says():
    preset = yaml.safe_load((PAGE.parents[1] / "configs" / "r3v_recommended.yaml").read_text())
    assert preset == {"sample": {"max_new_tokens": 512},
                      "mix": {"drop_no_answer": True, "drop_truncated": True, "dedupe": True}}
    text = PAGE.read_text(encoding="utf-8")
    assert "`sample.max_new_tokens: 512`" in text and "`mix.dedupe` to `true`" in text
