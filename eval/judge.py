"""Judge what the engine wrote: each sampled text's extracted answer and whether it is correct.

The engine (infer/) writes one record per request: id, prompt, predictions[K], num_tokens[K],
truncated[K] (plus the request's meta). `sample_and_judge` runs it with a `finish` step that adds
answers[K] (extracted; null = no answer) and correct[K] before the step's final file is written, so
every samples file on disk is judged, as the loop's resume check expects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from core.config import ModelConfig, SampleConfig
from data_gen.problem import Problem
from eval.answers import extract_answer, is_correct
from infer.generate import Request
from infer.sample import sample_items

# question id -> (gold letter or value, choices or None)
Golds = dict[str, tuple[str, Sequence[str] | None]]


def golds(problems: Sequence[Problem]) -> Golds:
    """The gold answer and choices of each problem, by id."""
    return {p.id: (p.answer, list(p.choices) if p.choices else None) for p in problems}


def judge_record(record: dict, answer: str, choices: Sequence[str] | None, rel_tol: float = 0.0) -> dict:
    """The record with answers[K] and correct[K] (re)computed from its predictions.

    Keys keep the order the samples files have always had (answers and correct after predictions);
    a record judged before is judged again, by the same extractor."""
    texts = record["predictions"]
    judged = {"id": record["id"], "prompt": record["prompt"], "predictions": texts,
              "answers": [extract_answer(t, choices) for t in texts],
              "correct": [is_correct(t, answer, choices, rel_tol=rel_tol) for t in texts]}
    return judged | {k: v for k, v in record.items() if k not in judged}


def judge_all(gold: Golds, rel_tol: float = 0.0) -> Callable[[list[dict]], list[dict]]:
    """A `finish` step for the engine's merge: judge every record against its question's gold."""
    def finish(records: list[dict]) -> list[dict]:
        missing = [r["id"] for r in records if r["id"] not in gold]
        if missing:
            raise KeyError(f"no gold answer for {len(missing)} sampled ids (first: {missing[:5]}): the "
                           f"requests and the problems passed to judge them differ")
        return [judge_record(r, *gold[r["id"]], rel_tol=rel_tol) for r in records]
    return finish


def sample_and_judge(requests: list[Request], gold: Golds, out: Path, *, model_cfg: ModelConfig,
                     sample_cfg: SampleConfig, checkpoint: str | None, greedy: bool = False,
                     num_samples: int | None = None, rel_tol: float = 0.0) -> list[dict]:
    """Sample (or greedily answer) every request, resumably, and judge the outputs; returns the records."""
    return sample_items(requests, out, model_cfg=model_cfg, sample_cfg=sample_cfg, checkpoint=checkpoint,
                        greedy=greedy, num_samples=num_samples, finish=judge_all(gold, rel_tol))
