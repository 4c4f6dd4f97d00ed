"""eval/requests.py: CoT and select requests, and the order a select prompt lists its candidates in.

Select prompts must stay byte-identical to those written before the order was recorded (finished select
files of saved runs stay valid): the old builder shuffled the texts, the new one shuffles the indices
with the same RNG; shuffle moves positions by the list's length alone, so both list the same texts.
"""

import random

import pytest

from core.config import PromptConfig
from data_gen import prompts
from data_gen.problem import Problem
from eval.requests import cot_items, select_items
from infer.generate import Request
from infer.sampling import stable_seed


def problems(n: int = 30) -> list[Problem]:
    return [Problem(f"q{i}", f"/img/{i}.png", f"angle {i}?", ("10°", "20°", "30°", "40°"), "ABCD"[i % 4])
            for i in range(n)]


def sample_records(ps: list[Problem], k: int = 6) -> dict[str, dict]:
    # distinct texts per question, so the old prompt parser can tell them apart
    return {p.id: {"id": p.id, "predictions": [f"{p.id} try {j}: x = {10 * j}°.\nAnswer: {'ABCD'[j % 4]}"
                                               for j in range(k)]} for p in ps}


def old_select_items(ps, records, indices, seed, tag, prompt_cfg):
    """The builder as it was before `shown` (eval/select.py at 41b6ae0): it shuffled the texts."""
    out = []
    for p in ps:
        record = records[p.id]
        chosen = [record["predictions"][i] for i in (indices if indices is not None else range(len(record["predictions"])))]
        random.Random(f"{seed}-select-{tag}-{p.id}").shuffle(chosen)
        out.append((p.id, prompts.select_prompt(p, chosen, prompt_cfg), stable_seed(seed, tag, p.id)))
    return out


@pytest.mark.parametrize("seed,tag,indices", [(42, "iter1", None), (7, "iter2/val-select", None),
                                              (42, "scaling-n3-s0", (0, 2, 5)), (3, "scaling-n2-s1", (4, 1))])
def test_select_prompts_are_byte_identical_to_before_and_record_the_shown_order(seed, tag, indices):
    ps = problems()
    records = sample_records(ps)
    new = select_items(ps, records, indices, seed, tag, PromptConfig())
    assert [(r.id, r.prompt, r.seed) for r in new] == old_select_items(ps, records, indices, seed, tag, PromptConfig())
    problem = {p.id: p for p in ps}
    for r in new:
        shown = r.meta["shown"]
        assert sorted(shown) == sorted(indices if indices is not None else range(6))
        # `shown` is the order the prompt lists the samples in
        listed = [records[r.id]["predictions"][i] for i in shown]
        assert r.prompt == prompts.select_prompt(problem[r.id], listed, PromptConfig())
    assert sum(r.meta["shown"] != sorted(r.meta["shown"]) for r in new) > len(new) // 2  # really shuffled


def test_select_requests_need_the_question_samples():
    with pytest.raises(KeyError, match="no samples for question 'q1'"):
        select_items(problems(2), sample_records(problems(1)), None, 1, "t", PromptConfig())


def test_cot_requests_carry_the_prompt_and_a_seed_per_question_and_tag():
    ps = problems(3)
    reqs = cot_items(ps, PromptConfig(), 42, "iter0/train")
    assert all(isinstance(r, Request) and r.meta is None for r in reqs)
    assert [r.prompt for r in reqs] == [prompts.cot_prompt(p, PromptConfig()) for p in ps]
    assert [r.seed for r in reqs] == [stable_seed(42, "iter0/train", p.id) for p in ps]
    assert cot_items(ps, PromptConfig(), 42, "iter0/test")[0].seed != reqs[0].seed
