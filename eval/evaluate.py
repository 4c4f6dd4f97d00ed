"""Per-iteration metrics from saved sample files: Test@1, MV@K, SS@K, pass@K.

Every number is recomputed from the JSONL records on disk, so anyone can check it:

    python -m eval.evaluate outputs/<run>/iter_1      # prints the iteration's metrics

Unparseable outputs count as wrong and never take part in a vote (eval/metrics.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.io import read_jsonl
from eval.answers import extract_answer
from eval.metrics import accuracy, mv_at_n, pass_at_n_score
from data_gen.problem import Problem


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
    """A records file whose ids are exactly the test questions' (else the file belongs to other data)."""
    records = read_jsonl(path)
    if sorted(r["id"] for r in records) != sorted(ids):
        raise ValueError(f"{path}: its {len(records)} records do not match the {len(ids)} test questions by id; "
                         f"the file belongs to other data. Delete it to redo that step.")
    return records


def iteration_metrics(iter_dir: Path, problems: list[Problem]) -> dict:
    """Metrics of one iteration folder from the files that exist in it."""
    ids = [p.id for p in problems]
    golds = {p.id: gold_key(p) for p in problems}
    metrics: dict = {"num_test": len(problems)}
    greedy = iter_dir / "test_greedy.jsonl"
    if greedy.is_file():
        metrics["Test@1"] = accuracy([r["correct"][0] for r in read_matched(greedy, ids)])
    samples_path = iter_dir / "test_samples.jsonl"
    samples = read_matched(samples_path, ids) if samples_path.is_file() else None
    if samples:
        metrics.update(sample_metrics(samples, golds))
    select = iter_dir / "test_select.jsonl"
    if select.is_file() and samples:
        k = len(samples[0]["predictions"])
        records = read_matched(select, ids)
        metrics[f"SS@{k}"] = accuracy([r["correct"][0] for r in records])
        metrics["select_no_answer_rate"] = 100.0 * sum(r["answers"][0] is None for r in records) / len(records)
    return metrics


def main(argv: list[str] | None = None) -> dict:
    """Recompute an iteration's metrics from its files and the run's own config and data."""
    import json

    from core.config import RunConfig, apply_yaml
    from data_gen.sources import load_problems

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m eval.evaluate outputs/<run>/iter_<k>")
    iter_dir = Path(argv[0])
    run_dir = iter_dir.resolve().parent
    if not (run_dir / "config.yaml").is_file():
        sys.exit(f"{iter_dir}: no config.yaml in {run_dir}; give an iteration folder of a run.")
    cfg = RunConfig()
    apply_yaml(cfg, run_dir / "config.yaml")
    metrics = iteration_metrics(iter_dir, load_problems(cfg.data, "test", run_dir, cfg.seed))
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
