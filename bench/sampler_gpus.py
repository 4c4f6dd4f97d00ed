"""Data-parallel sampling: the real sampler (`infer.sample`, `accelerate launch`) on 1 GPU and on N.

    # on a machine with 2 GPUs, from the repo root (the 7b build is reused when DIR holds one)
    python -m bench.sampler_gpus --build 7b --model /tmp/q7b --gpus 1,2 --json sampler_gpus.json
    # CPU smoke run: two CPU processes against one (seconds)
    python -m bench.sampler_gpus --build tiny --questions 8 --batch 2 --new_tokens 8 --gpus 1,2

For each process count P the same job (same GeoSynth questions, per-question seeds, batches) is
launched exactly as run.py launches it: `accelerate launch --num_processes P -m infer.sample`, one
rank per GPU, each writing its own shard, merged by question id. Every sequence generates exactly
`new_tokens` tokens (min_new_tokens = max_new_tokens), so a random model cannot stop early.

Timing comes from the ranks' own stats (`<out>.stats.json`): sampling time of the slowest rank,
model loading excluded, tokens read back from the outputs. Speed-up = tokens/s with P processes /
tokens/s with the first P given. The merged records of every P are compared with the first: data
parallelism must not change a single sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.sampler import model_parser, prepare_model


def make_parser() -> argparse.ArgumentParser:
    p = model_parser(__doc__)
    p.add_argument("--gpus", default="1,2", help="process counts to compare, comma-separated; the first is the baseline")
    p.add_argument("--questions", type=int, default=384, help="GeoSynth test questions")
    p.add_argument("--batch", type=int, default=96, help="questions per generate call (x K sequences)")
    p.add_argument("--k", type=int, default=3, help="samples per question")
    p.add_argument("--new_tokens", type=int, default=128, help="tokens generated per sequence (forced)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the data and samples (default: a temp folder)")
    p.add_argument("--json", default=None, help="write the results here")
    return p


def make_job(args, model: Path, data: Path, out: Path):
    from core.config import ModelConfig, PromptConfig
    from data_gen.geoqa import load_split
    from eval.requests import cot_items
    from infer.sample import SampleJob

    items = cot_items(load_split(data, "test"), PromptConfig(), args.seed, "bench")
    model_cfg = ModelConfig(base_model=str(model))
    params = dict(num_samples=args.k, greedy=False, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                  min_pixels=model_cfg.min_pixels, max_pixels=model_cfg.max_pixels)
    return SampleJob(out=str(out), model=dataclasses.asdict(model_cfg), checkpoint=None, params=params,
                     batch_size=args.batch, items=items)


def run_one(args, model: Path, data: Path, work: Path, processes: int) -> tuple[dict, list[dict]]:
    from core.io import atomic_write_json, read_json
    from core.proc import run_logged
    from infer.sample import accelerate_command, merge, stats_path

    out = work / f"p{processes}" / "samples.jsonl"
    shutil.rmtree(out.parent, ignore_errors=True)  # a measurement never resumes an earlier one
    out.parent.mkdir(parents=True)
    job = make_job(args, model, data, out)
    job_path = out.with_name("samples.job.json")
    atomic_write_json(job_path, dataclasses.asdict(job))
    print(f"sampling {len(job.items)} questions x K={args.k} on {processes} process(es) ...", flush=True)
    run_logged(accelerate_command(job_path, processes), out.with_name("samples.log"))
    records = merge(job)
    return read_json(stats_path(out)), records


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.gpus.split(",") if c.strip()]
    if not counts or min(counts) < 1:
        parser.error(f"--gpus {args.gpus!r}: give process counts >= 1, e.g. 1,2")
    import torch

    if torch.cuda.is_available() and max(counts) > torch.cuda.device_count():
        parser.error(f"--gpus {args.gpus}: only {torch.cuda.device_count()} GPU(s) visible")
    from data_gen import geosynth

    with ExitStack() as stack:
        model = prepare_model(args, stack)
        work = Path(args.work) if args.work else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-sampler-gpus-")))
        data = work / "data"
        if not (data / "meta.json").is_file():
            geosynth.generate(data, 0, args.questions, seed=args.seed)
        runs, base_records = {}, None
        for p in counts:
            stats, records = run_one(args, model, data, work, p)
            same = None if base_records is None else records == base_records
            base_records = records if base_records is None else base_records
            runs[p] = dict(stats, identical_to_baseline=same)
        base = runs[counts[0]]["tokens_per_s"]
        for p in counts:
            runs[p]["speedup"] = round(runs[p]["tokens_per_s"] / base, 3)
        card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        result = {"card": card, "torch": torch.__version__, "settings": {k: v for k, v in vars(args).items()},
                  "runs": {str(p): r for p, r in runs.items()}}
    print(f"\ndata-parallel sampling on {card}: {args.questions} questions, K={args.k}, {args.new_tokens} tokens, "
          f"batch {args.batch}")
    print(f"{'processes':>10}{'tokens/s':>12}{'questions/s':>13}{'seconds':>10}{'peak GiB':>10}{'speed-up':>10}"
          f"{'same samples':>14}")
    for p in counts:
        r = runs[p]
        peak = "n/a" if r["peak_gpu_memory_gib"] is None else f"{r['peak_gpu_memory_gib']:.1f}"
        same = "baseline" if r["identical_to_baseline"] is None else str(r["identical_to_baseline"])
        print(f"{p:>10}{r['tokens_per_s']:>12,.0f}{r['questions_per_s']:>13.2f}{r['seconds']:>10.1f}{peak:>10}"
              f"{r['speedup']:>9.2f}x{same:>14}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
