"""Test-time self-selection scaling: SS@N (the model picks among N of its rationales) vs MV@N.

    python self_select_scaling.py --ckpt_dir outputs/<run>/iter_3/model      # default data + model
    python self_select_scaling.py --base_model /models/Qwen2-VL-7B-Instruct --geoqa_dir geoQA-data \\
        --batch_size 8 --ckpt_dir outputs/<run>/iter_3/model --max_select_num 6
    python self_select_scaling.py ... --train_select_mix true    # first train the mixed-N select model

The checkpoint in --ckpt_dir is loaded (adapter or full model; the reference ignored it). The test
set is sampled M times (num_test_samples, default 10). For N = 1..max_select_num the report gives
MV@N (majority vote), SS@N (the model reads N of its samples, shuffled, and answers greedily),
pass@N (oracle: any of the N correct) and Test@1 (greedy CoT). For N < M every number averages
over the same seeded random N-subsets of the M samples (all subsets when there are few), and the
spread over subsets is reported. SS@1 is the accuracy of the single sample (nothing to select).

No answer never counts as a vote or as correct; ties in the vote go to the answer seen first
(eval/metrics.py). Output: scaling.md / .csv / .json and scaling.png in the output folder.
Rerunning the same command resumes: finished sample and select files are reused.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from core.config import ConfigError, ScalingConfig, parse_args, to_dict
from core.io import atomic_write_json, read_jsonl
from core.log import add_file_log, get_logger
from core.proc import CommandError
from data_gen.geoqa import DataError
from data_gen.llamafactory import write_dataset
from data_gen.reflection import build_mix
from data_gen.sources import load_problems
from eval.evaluate import gold_key
from eval.metrics import accuracy, draw_subsets, mv_at_n, pass_at_n_score
from eval.report import plot_lines, write_table
from eval.select import select_items
from infer.model import ModelError, check_model_dir
from infer.sample import cot_items, sample_items

log = get_logger("scaling")


def find_run_dir(cfg: ScalingConfig) -> Path | None:
    """The self-training run folder: --run_dir, or the folder above <run>/iter_k/checkpoint."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    if cfg.ckpt_dir:
        ckpt = Path(cfg.ckpt_dir).resolve()
        for parent in ckpt.parents:
            if (parent / "config.yaml").is_file() and (parent / "iter_0").is_dir():
                return parent
    return None


def output_dir(cfg: ScalingConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    run_dir = find_run_dir(cfg)
    name = Path(cfg.ckpt_dir).resolve().parent.name if cfg.ckpt_dir else "base"
    if run_dir is not None:
        return run_dir / f"scaling_{name}"
    return Path("outputs") / f"scaling-{name}"


def train_select_model(cfg: ScalingConfig, out: Path, train_problems) -> str:
    """Train the mixed-N select model from the run's train-sample pool (a fresh adapter on the base)."""
    from train.sft import DONE_FILE, MODEL_DIR, train

    run_dir = find_run_dir(cfg)
    if run_dir is None:
        raise ConfigError("--train_select_mix needs the self-training run folder: pass run_dir=PATH "
                          "(the folder with iter_0/, iter_1/, ...).")
    pool = [(int(p.parent.name.split("_")[1]), read_jsonl(p))
            for p in sorted(run_dir.glob("iter_*/train_samples.jsonl"))]
    if not pool:
        raise FileNotFoundError(f"{run_dir}: no iter_*/train_samples.jsonl to build the select mix from.")
    work = out / "select_mix"
    if not (work / DONE_FILE).is_file():
        mix_cfg = dataclasses.replace(cfg.mix, select_mixed_n=True, max_select_n=cfg.max_select_num)
        items, stats = build_mix(train_problems, pool, max(i for i, _ in pool) + 1, cfg.seed, mix_cfg, cfg.prompt)
        log.info("select-mix data: %s", stats["kinds"])
        write_dataset(items, work / "sft_data", "r3v_select_mix")
        atomic_write_json(work / "sft_data" / "mix_stats.json", stats)
        train(cfg.train, model_path=cfg.model.base_model, dataset_dir=work / "sft_data",
              dataset_name="r3v_select_mix", iter_dir=work, seed=cfg.seed,
              image_min_pixels=cfg.model.min_pixels, image_max_pixels=cfg.model.max_pixels)
    ckpt = work / MODEL_DIR
    return str(ckpt)


def scaling_table(samples: list[dict], greedy: list[dict], select: dict[tuple[int, int], list[dict]],
                  golds: list, cfg: ScalingConfig) -> list[dict]:
    """One row per N from the saved records (recomputable from the files alone)."""
    answers = [r["answers"] for r in samples]
    correct = [r["correct"] for r in samples]
    m = len(answers[0])
    test1 = accuracy([r["correct"][0] for r in greedy])
    rows = []
    for n in range(1, cfg.max_select_num + 1):
        mv, mv_sd = mv_at_n(answers, golds, n, cfg.num_subsets, cfg.seed + n)
        oracle, oracle_sd = pass_at_n_score(correct, n, cfg.num_subsets, cfg.seed + n)
        subsets = draw_subsets(m, n, cfg.num_subsets, cfg.seed + n)
        if n == 1:
            ss_scores = [accuracy([c[s[0]] for c in correct]) for s in subsets]
        else:
            ss_scores = [accuracy([r["correct"][0] for r in select[(n, j)]]) for j in range(len(subsets))]
        ss = sum(ss_scores) / len(ss_scores)
        ss_sd = (sum((x - ss) ** 2 for x in ss_scores) / len(ss_scores)) ** 0.5
        rows.append({"N": n, "SS@N": ss, "SS_std": ss_sd, "MV@N": mv, "MV_std": mv_sd,
                     "pass@N": oracle, "pass_std": oracle_sd, "Test@1": test1, "subsets": len(subsets)})
    return rows


def main(cfg: ScalingConfig) -> list[dict]:
    if cfg.num_test_samples < cfg.max_select_num:
        raise ConfigError(f"num_test_samples={cfg.num_test_samples} < max_select_num={cfg.max_select_num}: "
                          f"N candidates need at least N samples; raise num_test_samples.")
    check_model_dir(cfg.model.base_model)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    add_file_log(out / "scaling.log")
    log.info("config: %s", to_dict(cfg))
    data_root = find_run_dir(cfg) or out
    test = load_problems(cfg.data, "test", data_root, cfg.seed)
    ckpt = cfg.ckpt_dir or None
    if cfg.train_select_mix:
        ckpt = train_select_model(cfg, out, load_problems(cfg.data, "train", data_root, cfg.seed))

    def run(items, name, **kw):
        return sample_items(items, out / name, model_cfg=cfg.model, sample_cfg=cfg.sample, checkpoint=ckpt, **kw)

    samples = run(cot_items(test, cfg.prompt, cfg.seed, "scaling/test"), "test_samples.jsonl",
                  num_samples=cfg.num_test_samples)
    greedy = run(cot_items(test, cfg.prompt, cfg.seed, "scaling/test"), "test_greedy.jsonl", greedy=True)
    by_id = {r["id"]: r for r in samples}
    select: dict[tuple[int, int], list[dict]] = {}
    for n in range(2, cfg.max_select_num + 1):
        for j, subset in enumerate(draw_subsets(cfg.num_test_samples, n, cfg.num_subsets, cfg.seed + n)):
            items = select_items(test, by_id, subset, cfg.seed, f"scaling-n{n}-s{j}", cfg.prompt)
            select[(n, j)] = run(items, f"select_n{n}_s{j}.jsonl", greedy=True)
    rows = scaling_table(samples, greedy, select, [gold_key(p) for p in test], cfg)
    atomic_write_json(out / "scaling.json", {"checkpoint": ckpt, "num_test": len(test),
                                             "num_test_samples": cfg.num_test_samples, "rows": rows})
    table = write_table(rows, ["N", "SS@N", "SS_std", "MV@N", "MV_std", "pass@N", "pass_std", "Test@1", "subsets"],
                        out / "scaling", title=f"Self-selection vs majority vote ({len(test)} test questions, %)")
    ns = [r["N"] for r in rows]
    plot_lines(ns, {"self-select SS@N": [r["SS@N"] for r in rows], "majority vote MV@N": [r["MV@N"] for r in rows],
                    "oracle pass@N": [r["pass@N"] for r in rows]},
               out / "scaling.png", xlabel="N (candidates / votes)", ylabel="test accuracy (%)",
               title="Test-time self-selection scaling", hlines={"Test@1 (greedy)": rows[0]["Test@1"]},
               errors={"self-select SS@N": [r["SS_std"] for r in rows], "majority vote MV@N": [r["MV_std"] for r in rows]})
    print(table)
    log.info("wrote %s", out)
    return rows


if __name__ == "__main__":
    try:
        main(parse_args(ScalingConfig, prog="self_select_scaling.py", doc=__doc__).config)
    except (ConfigError, DataError, ModelError, FileNotFoundError, CommandError) as e:
        sys.exit(f"error: {e}")
