"""Probe: can a model learn self-select's check when it is supervised directly?

Self-select beats majority voting only where the model can tell a right candidate from a wrong one.
The small GeoSynth model's commonest error is binding: it computes the right value, then names
another option (experiments/results_log.md). Judge items (experiments.mix_variants.judge_items) isolate that check:
three candidates, each the gold rationale or a copy of it whose last line names another option; the
target is the gold answer. Voting gets a set right only when the gold letter holds the majority (or,
in a three-way tie, is listed first); a model that reads each candidate's computed value and finds its option gets every set right.

The probe fine-tunes a model folder on judge items from GeoSynth train problems (experiments/pretrain.py,
loss on the answer), then answers judge items from test problems greedily, before and after, and
reports accuracy by candidate pattern beside voting's. It also measures greedy zero-shot CoT Test@1
before and after (does learning to judge cost solving?).

    python -m experiments.select_judge_probe --model models/geosynth-small --steps 1500 --lr 3e-4   # one GPU
    python -m experiments.select_judge_probe --work /tmp/p --train 16 --test 12 --steps 2 --batch 4 --eval_every 2 \\
        --workers 1 --cot_questions 3                                                       # CPU smoke run
    python -m experiments.select_judge_probe --model outputs/<run>/iter_3/model --work /tmp/p3 --train 16 --steps 0 \\
        --cot_questions 0                                                  # judge items only, no training

Not part of R3V: a diagnostic. Results: experiments/results_log.md ("Session 7").
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from core.config import ModelConfig, PromptConfig, SampleConfig
from core.io import atomic_write_json, read_json
from core.log import get_logger
from data_gen import geosynth
from data_gen import prompts
from data_gen.geoqa import load_split
from eval.judge import sample_and_judge
from eval.metrics import accuracy, majority_vote
from experiments.geosynth_model import cot_answers, evaluate, save_bf16
from experiments.mix_variants import judge_items
from experiments.pretrain import PretrainConfig, pretrain, step_dir
from infer.generate import Request

log = get_logger("select_judge_probe")
PATTERNS = ("3 right", "2 right", "1 right, two wrong letters", "1 right, wrong majority")


def pattern(answers: list[str], gold: str) -> str:
    """Which of the four candidate patterns of a judge item this is."""
    wrong = [a for a in answers if a != gold]
    if len(wrong) < 2:
        return PATTERNS[len(wrong)]
    return PATTERNS[3] if wrong[0] == wrong[1] else PATTERNS[2]


def judge(model_dir: Path, items: list[dict], choices: dict[str, list[str]], out: Path, batch: int) -> dict[str, bool]:
    """Greedy select answer per judge item: id -> correct."""
    requests = [Request(it["id"], it["image"], it["prompt"]) for it in items]
    gold = {it["id"]: (it["response"].split()[-1], choices[it["id"]]) for it in items}
    records = sample_and_judge(requests, gold, out, model_cfg=ModelConfig(base_model=str(model_dir), max_pixels=224 * 224),
                               sample_cfg=SampleConfig(max_new_tokens=8, batch_size=batch), checkpoint=None, greedy=True)
    return {r["id"]: bool(r["correct"][0]) for r in records}


def table(items: list[dict], results: dict[str, dict[str, bool]]) -> list[dict]:
    """Accuracy (%) per candidate pattern, for voting and for each model, plus a row for all items."""
    groups = defaultdict(list)
    for it in items:
        gold = it["response"].split()[-1]
        groups[pattern(it["answers"], gold)].append(it)
    rows = []
    for name in [*PATTERNS, "all"]:
        group = items if name == "all" else groups.get(name, [])
        row = {"pattern": name, "items": len(group),
               "majority_vote": accuracy([majority_vote(it["answers"]) == it["response"].split()[-1] for it in group])}
        for model, correct in results.items():
            row[model] = accuracy([correct[it["id"]] for it in group])
        rows.append(row)
    return rows


def check_work(work: Path, settings: dict) -> None:
    """A --work folder holds one probe's data and saves: refuse other settings (a rerun resumes)."""
    path = work / "probe_settings.json"
    if path.is_file():
        held = read_json(path)
        if held != settings:
            diff = ", ".join(f"{k}: {held.get(k)!r} there, {v!r} now" for k, v in settings.items() if held.get(k) != v)
            raise SystemExit(f"{path} was written by a probe with other settings ({diff}): pass another --work "
                             "or the same settings")
    else:
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, settings)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/geosynth-small", help="model folder to fine-tune")
    parser.add_argument("--work", default="outputs/select_judge_probe", help="data, saves and answers")
    parser.add_argument("--train", type=int, default=6000, help="GeoSynth train problems = judge items trained on")
    parser.add_argument("--test", type=int, default=1000, help="GeoSynth test problems = judge items answered")
    parser.add_argument("--data_seed", type=int, default=11, help="GeoSynth seed of the probe's data")
    parser.add_argument("--steps", type=int, default=1500,
                        help="training steps; 0 = no training, only answer with --model (e.g. a loop's iteration model)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval_every", type=int, default=250, help="steps between saves (a killed run resumes)")
    parser.add_argument("--max_minutes", type=float, default=0.0, help="stop at the first save after this much training")
    parser.add_argument("--workers", type=int, default=4, help="processes that encode the items")
    parser.add_argument("--cot_questions", type=int, default=300, help="test questions for CoT Test@1 (0 = skip)")
    parser.add_argument("--answer_batch", type=int, default=64)
    parser.add_argument("--self_cot", type=int, default=0,
                        help="also train on the model's own greedy CoT answers to this many train problems, right or "
                             "wrong (self-distillation), so that judge training keeps its solving as it was; "
                             "judge items alone wreck it (experiments/results_log.md)")
    parser.add_argument("--self_cot_temperature", type=float, default=0.0,
                        help="sample those answers at this temperature (top-p and top-k off; 1.0 = the model's own "
                             "distribution) instead of greedily (session 8: with greedy ones its pass@3 fell "
                             "from 60.3 to 47.3)")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--save", default=None, help="also save the tuned model here in bf16 (~16 MB for the small "
                                                     "model: small enough to bring back from a GPU machine)")
    args = parser.parse_args(argv)
    if args.steps == 0 and args.save:
        parser.error("--save needs a trained model: give --steps > 0, or leave --save out")
    if args.self_cot_temperature < 0:
        parser.error(f"--self_cot_temperature {args.self_cot_temperature}: give 0 (greedy) or a positive temperature")

    work, model = Path(args.work), Path(args.model)
    check_work(work, {"model": str(model), "train": args.train, "test": args.test, "data_seed": args.data_seed,
                      "lr": args.lr, "batch": args.batch, "self_cot": args.self_cot,
                      # only when set, so a folder from before the option still matches at greedy
                      **({"self_cot_temperature": args.self_cot_temperature} if args.self_cot_temperature else {})})
    data = work / "data"
    if not (data / "meta.json").is_file():
        geosynth.generate(data, args.train, args.test, seed=args.data_seed)
    train, test = load_split(data, "train"), load_split(data, "test")
    train_items = judge_items(train, PromptConfig(), args.train, seed=1)
    test_items = judge_items(test, PromptConfig(), args.test, seed=2)
    if args.self_cot:  # the model's own answers as CoT targets, whatever their correctness
        tag = f"self_cot{args.self_cot}" + (f"_t{args.self_cot_temperature:g}" if args.self_cot_temperature else "")
        own = cot_answers(model, train[:args.self_cot], work / f"{tag}.jsonl", args.answer_batch,
                          temperature=args.self_cot_temperature)
        by_train = {p.id: p for p in train}
        train_items += [{"kind": "cot", "id": f"self-cot-{r['id']}", "image": by_train[r["id"]].image,
                         "prompt": prompts.cot_prompt(by_train[r["id"]], PromptConfig()), "response": r["predictions"][0]}
                        for r in own if not r["truncated"][0] and r["predictions"][0].strip()]
    by_id = {p.id: list(p.choices) for p in test}
    choices = {it["id"]: by_id[it["id"].split("-", 2)[2]] for it in test_items}

    cfg = PretrainConfig(lr=args.lr, batch=args.batch, warmup_steps=10, max_steps=args.steps,
                         eval_every=args.eval_every, seed=1, workers=args.workers)

    def on_save(step: int, folder: Path, entry: dict) -> bool:
        log.info("step %d: loss %.4f (%.0f s of training)", step, entry["loss"], entry["seconds"])
        return args.max_minutes > 0 and entry["seconds"] >= args.max_minutes * 60

    started = time.time()
    models = {"base": (model, "base")}
    history, step = [], 0
    if args.steps:  # --steps 0: only answer with the given model (e.g. a loop's iteration model)
        history = pretrain(model, train_items, work / "steps", cfg, on_save)
        # the save at --steps (a rerun with fewer --steps than the folder holds evaluates that save, if kept)
        step = max((h["step"] for h in history
                    if h["step"] <= args.steps and step_dir(work / "steps", h["step"]).is_dir()),
                   default=history[-1]["step"])
        if step != args.steps:
            log.warning("evaluating the save of step %d (--steps %d has no save in %s)", step, args.steps,
                        work / "steps")
        models["tuned"] = (step_dir(work / "steps", step), f"step{step}")
    # answers are kept per model (a longer rerun of the same --work answers with its newer save)
    results = {name: judge(path, test_items, choices, work / f"judge_{tag}.jsonl", args.answer_batch)
               for name, (path, tag) in models.items()}
    cot = {}
    if args.cot_questions:
        for name, (path, tag) in models.items():
            cot[name] = evaluate(path, test[:args.cot_questions], work / f"cot{args.cot_questions}_{tag}.jsonl",
                                 args.answer_batch)
    result = {"model": str(model), "lr": args.lr, "batch": args.batch, "steps": step,
              "train_items": len(train_items), "self_cot": args.self_cot,
              "self_cot_temperature": args.self_cot_temperature, "test_items": len(test_items), "data_seed": args.data_seed,
              "loss": [(h["step"], h["loss"]) for h in history], "seconds": round(time.time() - started, 1),
              "rows": table(test_items, results), "cot_test_at_1": cot, "cot_questions": args.cot_questions}
    if args.save and "tuned" in models:
        result["saved"] = {"path": args.save, "weight_bytes": save_bf16(models["tuned"][0], Path(args.save))}
        atomic_write_json(Path(args.save) / "select_judge_probe.json", result)
    print(markdown(result), flush=True)
    if args.json:
        atomic_write_json(Path(args.json), result)
    return result


def markdown(result: dict) -> str:
    models = [m for m in ("base", "tuned") if m in result["rows"][0]]
    head = f"| pattern | items | majority vote | {' | '.join(models)} |\n|---|---|---|{'---|' * len(models)}\n"
    rows = "".join(f"| {r['pattern']} | {r['items']} | {r['majority_vote']:.1f} | "
                   + " | ".join(f"{r[m]:.1f}" for m in models) + " |\n" for r in result["rows"])
    cot = result["cot_test_at_1"]
    tail = (f"\nCoT Test@1 on {result['cot_questions']} test questions: "
            + ", ".join(f"{m} {cot[m]:.1f}" for m in models) + "\n" if cot else "")
    return (f"select judge probe: {result['model']}, {result['steps']} steps of {result['batch']} at lr {result['lr']}, "
            f"{result['train_items']} train / {result['test_items']} test items\n\n" + head + rows + tail)


if __name__ == "__main__":
    main()
