"""Per-iteration metrics from saved sample files: Test@1, MV@K, SS@K, pass@K, and any listed in `metrics`.

Every number is recomputed from the JSONL records on disk, so anyone can check it:

    python -m eval.evaluate outputs/<run>/iter_1      # prints the iteration's metrics

Unparseable outputs count as wrong and never take part in a vote (eval/metrics.py). R3V's metrics are
always computed; more are looked up by name in METRICS (the config key `metrics`), which plugins fill
(experiments/diagnostics.py: how self-select answers relate to their candidates, letter binding,
arithmetic steps). With data.val_questions the validation split gets the same metrics under val_ keys.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from core.io import read_jsonl
from core.registry import Registry
from core.rundir import RUN_CONFIG_FILE, in_order
from data_gen.problem import Problem
from eval.answers import extract_answer
from eval.metrics import accuracy, mv_at_n, pass_at_n_score


def gold_key(problem: Problem) -> str | None:
    """The gold answer in the extractor's canonical form (letters for multiple choice)."""
    if problem.choices:
        return problem.answer
    return extract_answer(f"Answer: {problem.answer}")


def sample_metrics(records: list[dict], golds: dict[str, str | None], *, num_subsets: int = 1,
                   seed: int = 0, prefix: str = "") -> dict:
    """MV@K and pass@K over all K samples of every record, plus format counts."""
    if not records:
        return {}
    k = len(records[0]["predictions"])
    answers = [r["answers"] for r in records]
    flat = [a for r in records for a in r["answers"]]
    truncated = [t for r in records for t in r["truncated"]]
    return {
        f"{prefix}MV@{k}": mv_at_n(answers, [golds[r["id"]] for r in records], k, num_subsets, seed)[0],
        f"{prefix}pass@{k}": pass_at_n_score([r["correct"] for r in records], k, num_subsets, seed)[0],
        f"{prefix}sample_acc": accuracy([c for r in records for c in r["correct"]]),
        f"{prefix}no_answer_rate": 100.0 * sum(a is None for a in flat) / len(flat),
        f"{prefix}truncated_rate": 100.0 * sum(truncated) / len(truncated),
        f"{prefix}mean_tokens": sum(n for r in records for n in r["num_tokens"]) / len(flat),
    }


def read_matched(path: Path, ids: list[str]) -> list[dict]:
    """A records file in the split's order; refused unless its ids are exactly the split's questions."""
    return in_order(read_jsonl(path), ids, path)


# metrics: f(samples, select records or None, problems) -> {key: value}, merged into metrics.json
METRICS = Registry("metrics")


def check_metrics(names: Sequence[str]) -> None:
    """Refuse a metric name that no imported module registered (before any work starts)."""
    for name in names:
        METRICS.get(name)


def iteration_metrics(iter_dir: Path, problems: list[Problem], split: str = "test",
                      metrics: Sequence[str] = ()) -> dict:
    """Metrics of one iteration folder from the files of one split (test, or val: data.val_questions)
    that exist in it. The keys are the same for both splits (Test@1 is greedy accuracy on it).
    metrics: names of more metrics (METRICS) to compute beside R3V's."""
    ids = [p.id for p in problems]
    golds = {p.id: gold_key(p) for p in problems}
    result: dict = {f"num_{split}": len(problems)}
    greedy = iter_dir / f"{split}_greedy.jsonl"
    if greedy.is_file():
        result["Test@1"] = accuracy([r["correct"][0] for r in read_matched(greedy, ids)])
    samples_path = iter_dir / f"{split}_samples.jsonl"
    samples = read_matched(samples_path, ids) if samples_path.is_file() else None
    if samples:
        result.update(sample_metrics(samples, golds))
    select = iter_dir / f"{split}_select.jsonl"
    records = None
    if select.is_file() and samples:
        k = len(samples[0]["predictions"])
        records = read_matched(select, ids)
        result[f"SS@{k}"] = accuracy([r["correct"][0] for r in records])
        result["select_no_answer_rate"] = 100.0 * sum(r["answers"][0] is None for r in records) / len(records)
    if samples:
        for name in metrics:
            result.update(METRICS.get(name)(samples, records, problems))
    return result


def validation_metrics(iter_dir: Path, val: list[Problem], metrics: Sequence[str] = ()) -> dict:
    """The validation split's metrics, each key prefixed with val_ (val_Test@1, val_MV@3, ...)."""
    return {key if key == "num_val" else f"val_{key}": value
            for key, value in iteration_metrics(iter_dir, val, "val", metrics).items()}


def main(argv: list[str] | None = None) -> dict:
    """Recompute an iteration's metrics from its files and the run's own config and data."""
    import json

    from core.config import RunConfig, apply_yaml
    from core.registry import load_plugins
    from data_gen.sources import load_problems

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m eval.evaluate outputs/<run>/iter_<k>")
    iter_dir = Path(argv[0])
    run_dir = iter_dir.resolve().parent
    if not (run_dir / RUN_CONFIG_FILE).is_file():
        sys.exit(f"{iter_dir}: no {RUN_CONFIG_FILE} in {run_dir}; give an iteration folder of a run.")
    cfg = RunConfig()
    apply_yaml(cfg, run_dir / RUN_CONFIG_FILE, saved=True)
    load_plugins(cfg.plugins)  # the run's own, as saved
    check_metrics(cfg.metrics)
    metrics = iteration_metrics(iter_dir, load_problems(cfg.data, "test", run_dir, cfg.seed), metrics=cfg.metrics)
    val = load_problems(cfg.data, "val", run_dir, cfg.seed)
    if val:
        metrics.update(validation_metrics(iter_dir, val, cfg.metrics))
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
