"""Real-size training check: one LLaMA-Factory LoRA SFT pass over an R3V mix, on 1 GPU and on N.

    # on a machine with 2 GPUs, from the repo root (the random 7b build is reused when DIR holds one)
    python -m bench.sft --build 7b --model /tmp/q7b --gpus 1,2 --json sft.json
    # CPU smoke run (tiny model, fp32, one process)
    python -m bench.sft --build tiny --questions 4 --max_steps 2 --gpus 0
    # R3V's recipe against the memory-aware plan, in one run on one card (issue #40)
    python -m bench.sft --build 7b --model /tmp/q7b --gpus 1 --compare --questions 128 --global_batch 64 \\
        --max_steps 20 --json sft_compare.json

The mix is built by the real mix builder (`mix.reflection.build_mix`, mixed-N self-select up
to 6 candidates, plus QA, CoT and self-refine items) from a synthetic sample pool: per GeoSynth
question, three right rationales (the gold one and two rewordings) and three wrong ones (the gold
steps ending in each wrong letter). The random-weight model's own samples would be noise, and this
check is about shapes: the longest item (a 6-candidate select prompt with its image) is tokenized
with the model's processor and must fit `cutoff_len`, so nothing is truncated.

Training goes through `train.sft.train`, i.e. `llamafactory-cli train` (torchrun with more than one
GPU), as run.py does. Reported per GPU count: optimizer steps, runtime, samples/s, training tokens/s
(non-padding tokens seen, from the Trainer's own counter) and the peak memory of every GPU
(`nvidia-smi` polled every 200 ms: device memory in use, CUDA context included).

--compare trains twice on the first GPU count, the same data and global batch: R3V's recipe (2 per
device, gradient checkpointing on) and the memory-aware plan (`train.per_device_batch_size=0`,
train/memory_plan.py). For each: the steady rate (training tokens/s after the first --skip_steps
optimizer steps, from LLaMA-Factory's per-step log), MFU against --peak_tflops with the FLOP count it
uses (4 x parameters per trained token for LoRA: the forward and the backward through the activations;
6 x for full; recomputation not counted), the peak memory, and the losses of the first steps of both:
the same data in the same order, so they agree up to how the loss is averaged (LLaMA-Factory averages
per micro-batch, so another per-device batch weights tokens slightly differently).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

from bench.sampler import model_parser, prepare_model

RIGHT_REWORDINGS = ("Let's solve it step by step. {r}", "{r}\nThe result matches the choice above.")


def make_parser() -> argparse.ArgumentParser:
    p = model_parser(__doc__)
    p.add_argument("--gpus", default="1,2", help="GPU counts to train on, comma-separated (0 = CPU)")
    p.add_argument("--questions", type=int, default=32, help="GeoSynth train questions in the mix")
    p.add_argument("--max_steps", type=int, default=10, help="optimizer steps per run")
    p.add_argument("--global_batch", type=int, default=16, help="samples per optimizer step")
    p.add_argument("--per_device_batch", type=int, default=2)
    p.add_argument("--lora_rank", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for data and trainings (default: a temp folder)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--compare", action="store_true", help="R3V's recipe against the memory-aware plan, one GPU count")
    p.add_argument("--skip_steps", type=int, default=3, help="--compare: optimizer steps left out of the rate")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="--compare: the card's dense bf16 peak for MFU "
                   "(H100 and H200 SXM: 989)")
    return p


def synthetic_pool(problems) -> list[tuple[int, list[dict]]]:
    """Sampler-shaped records: 3 right and 3 wrong rationales per question (iteration 0)."""
    from data_gen.problem import LETTERS

    records = []
    for p in problems:
        body = p.rationale.rsplit("\nAnswer:", 1)[0]
        right = [p.rationale] + [w.format(r=p.rationale) for w in RIGHT_REWORDINGS]
        wrong_letters = [x for x in LETTERS[:len(p.choices)] if x != p.answer][:3]
        wrong = [f"{body}\nAnswer: {x}" for x in wrong_letters]
        texts = right + wrong
        records.append({"id": p.id, "predictions": texts, "answers": [p.answer] * 3 + wrong_letters,
                        "correct": [True] * 3 + [False] * len(wrong), "truncated": [False] * len(texts)})
    return [(0, records)]


def item_tokens(model_dir: Path, item: dict, min_pixels: int, max_pixels: int) -> int:
    """Tokens of one mix item as LLaMA-Factory's qwen2_vl template feeds it (prompt, image, response)."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item["prompt"]}]},
                {"role": "assistant", "content": [{"type": "text", "text": item["response"]}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    processor.image_processor.min_pixels, processor.image_processor.max_pixels = min_pixels, max_pixels
    image = Image.open(item["image"]).convert("RGB")
    return int(processor(text=[text], images=[image], return_tensors="pt")["input_ids"].shape[1])


class MemoryPoller:
    """Peak `memory.used` (MiB) of every GPU, polled with nvidia-smi while training runs."""

    def __init__(self, period_ms: int = 200):
        self.period_ms, self.proc, self.peaks = period_ms, None, {}
        self.reader: threading.Thread | None = None

    def __enter__(self):
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits",
                 f"-lms={self.period_ms}"], stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:
            return self  # no NVIDIA driver tools (CPU): nothing to poll
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                index, used = (int(x) for x in line.split(","))
            except ValueError:
                continue
            self.peaks[index] = max(self.peaks.get(index, 0), used)

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.reader.join(timeout=5)


def steady_rate(out: Path, skip: int) -> tuple[float | None, int, float]:
    """(training tokens/s, tokens, seconds) after the first `skip` optimizer steps, from LLaMA-Factory's
    per-step log (elapsed_time, in whole seconds) and the Trainer's token counter (logging_steps=1)."""
    from core.io import read_json, read_jsonl

    state = read_json(out / "trainer_state.json") if (out / "trainer_state.json").is_file() else {}
    seen = {h["step"]: h["num_input_tokens_seen"] for h in state.get("log_history", [])
            if "step" in h and "num_input_tokens_seen" in h}
    log = read_jsonl(out / "trainer_log.jsonl", allow_partial_last_line=True) if (out / "trainer_log.jsonl").is_file() else []

    def seconds(entry: dict) -> float:
        parts = [int(x) for x in str(entry["elapsed_time"]).split(":")]
        return float(sum(x * 60 ** i for i, x in enumerate(reversed(parts))))

    elapsed = {e["current_steps"]: seconds(e) for e in log if "elapsed_time" in e}
    steps = sorted(s for s in seen if s in elapsed)
    if len(steps) < 2 or steps[-1] <= skip:
        return None, 0, 0.0
    first = max([s for s in steps if s <= skip] or [steps[0]])
    tokens, span = seen[steps[-1]] - seen[first], elapsed[steps[-1]] - elapsed[first]
    return (round(tokens / span, 1) if span > 0 else None), tokens, span


def run_one(args, model: Path, dataset_dir: Path, work: Path, gpus: int, longest: int, per_device: int | None = None,
            name: str | None = None) -> dict:
    from core.config import ModelConfig, TrainConfig
    from core.io import read_json
    from train.sft import read_train_summary, train

    mcfg = ModelConfig()
    cfg = TrainConfig(finetuning_type="lora", learning_rate=1e-4, num_train_epochs=1.0,
                      global_batch_size=args.global_batch,
                      per_device_batch_size=args.per_device_batch if per_device is None else per_device,
                      lora_rank=args.lora_rank, lora_alpha=2 * args.lora_rank, max_steps=args.max_steps,
                      num_gpus=gpus, overrides={"include_num_input_tokens_seen": "non_padding",
                                                "save_strategy": "no", "logging_steps": 1})
    iter_dir = work / (name or f"gpus{gpus}")
    shutil.rmtree(iter_dir, ignore_errors=True)  # a measurement never reuses an earlier training
    print(f"LoRA SFT on {gpus or 'CPU'} GPU(s), {args.max_steps} steps of {args.global_batch} ...", flush=True)
    with MemoryPoller() as mem:
        out = train(cfg, model_path=model, dataset_dir=dataset_dir, dataset_name="mix", iter_dir=iter_dir,
                    seed=args.seed, image_min_pixels=mcfg.min_pixels, image_max_pixels=mcfg.max_pixels)
    summary = read_train_summary(out)
    state = read_json(out / "trainer_state.json") if (out / "trainer_state.json").is_file() else {}
    seen = max((h.get("num_input_tokens_seen", 0) for h in state.get("log_history", [])), default=0)
    runtime = summary["runtime_s"] or 0.0
    samples = (summary["global_step"] or 0) * args.global_batch
    rate, steady_tokens, steady_s = steady_rate(out, args.skip_steps)
    done = read_json(iter_dir / "train_done.json")
    return {"gpus": gpus, "steps": summary["global_step"], "runtime_s": runtime, "train_loss": summary["train_loss"],
            "samples": samples, "samples_per_s": round(samples / runtime, 3) if runtime else None,
            "tokens_seen": seen, "tokens_per_s": round(seen / runtime, 1) if runtime and seen else None,
            "steady_tokens_per_s": rate, "steady_tokens": steady_tokens, "steady_seconds": steady_s,
            "first_losses": [h["loss"] for h in state.get("log_history", []) if "loss" in h][:5],
            "plan": done.get("plan"), "per_device": (done.get("plan") or {}).get("per_device", cfg.per_device_batch_size),
            "peak_memory_mib": {str(k): v for k, v in sorted(mem.peaks.items())}, "longest_item_tokens": longest}


def compare(args, model: Path, dataset_dir: Path, work: Path, gpus: int, longest: int) -> dict:
    """R3V's recipe and the memory-aware plan on the same card, data and global batch (the module docstring)."""
    from train.memory_plan import ModelShape

    reference = run_one(args, model, dataset_dir, work, gpus, longest, per_device=2, name="reference")
    planned = run_one(args, model, dataset_dir, work, gpus, longest, per_device=0, name="planned")
    flops_per_token = 4 * ModelShape.from_folder(model).params  # LoRA: forward + backward through activations
    for run in (reference, planned):
        rate = run["steady_tokens_per_s"]
        run["mfu"] = round(rate * flops_per_token / (args.peak_tflops * 1e12 * max(1, gpus)), 4) if rate else None
    speedup = (round(planned["steady_tokens_per_s"] / reference["steady_tokens_per_s"], 2)
               if planned["steady_tokens_per_s"] and reference["steady_tokens_per_s"] else None)
    return {"reference": reference, "planned": planned, "speedup": speedup, "flops_per_token": flops_per_token,
            "peak_tflops": args.peak_tflops, "skip_steps": args.skip_steps}


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.gpus.split(",") if c.strip()]
    import torch

    from core.config import MixConfig, ModelConfig, PromptConfig, TrainConfig
    from data_gen import geosynth
    from data_gen.geoqa import load_split
    from mix.llamafactory import write_dataset
    from mix.reflection import build_mix

    with ExitStack() as stack:
        model = prepare_model(args, stack)
        work = Path(args.work) if args.work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sft-")))
        data = work / "data"
        if not (data / "meta.json").is_file():
            geosynth.generate(data, args.questions, 0, seed=args.seed)
        problems = load_split(data, "train")
        mix_cfg = MixConfig(select_mixed_n=True, max_select_n=6, select_per_n=1)
        items, stats = build_mix(problems, synthetic_pool(problems), 1, args.seed, mix_cfg, PromptConfig())
        write_dataset(items, work / "dataset", "mix")
        mcfg = ModelConfig()
        # Tokenize the 8 longest by characters (all images have the same size) and keep the most tokens.
        by_chars = sorted(items, key=lambda it: len(it["prompt"]) + len(it["response"]))[-8:]
        longest = max(item_tokens(model, it, mcfg.min_pixels, mcfg.max_pixels) for it in by_chars)
        cutoff = TrainConfig().cutoff_len
        if longest > cutoff:
            raise SystemExit(f"the longest mix item has {longest} tokens > cutoff_len {cutoff}: it would be cut")
        six = sum(1 for it in items if it.get("num_candidates") == 6)
        print(f"mix: {stats['kinds']} ({six} select items with 6 candidates); longest item {longest} tokens "
              f"(cutoff_len {cutoff})", flush=True)
        card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        if args.compare:
            result = {"card": card, "torch": torch.__version__, "settings": vars(args), "mix": stats["kinds"],
                      "longest_item_tokens": longest, **compare(args, model, work / "dataset", work, counts[0], longest)}
            print_comparison(result)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2))
            return result
        runs = [run_one(args, model, work / "dataset", work, g, longest) for g in counts]
        result = {"card": card, "torch": torch.__version__, "settings": vars(args), "mix": stats["kinds"],
                  "six_candidate_items": six, "longest_item_tokens": longest, "cutoff_len": cutoff, "runs": runs}
    print(f"\nLoRA SFT (rank {args.lora_rank}) on {card}: {args.max_steps} steps x {args.global_batch} samples")
    print(f"{'GPUs':>6}{'runtime s':>11}{'samples/s':>11}{'tokens/s':>11}  peak MiB per GPU")
    for r in runs:
        tps = "n/a" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
        sps = "n/a" if r["samples_per_s"] is None else f"{r['samples_per_s']:.2f}"
        print(f"{r['gpus']:>6}{r['runtime_s']:>11.1f}{sps:>11}{tps:>11}  {r['peak_memory_mib'] or 'n/a'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def print_comparison(result: dict) -> None:
    print(f"\nLoRA SFT on {result['card']}: R3V's recipe against the memory-aware plan, {result['settings']['max_steps']} "
          f"steps of {result['settings']['global_batch']}, the first {result['skip_steps']} left out of the rate; MFU at "
          f"{result['flops_per_token'] / 1e9:.1f} GFLOP per token against {result['peak_tflops']:.0f} TFLOP/s")
    print(f"{'recipe':>10}{'per device':>12}{'ckpt':>6}{'tokens/s':>11}{'MFU':>7}  peak MiB   first losses")
    for name in ("reference", "planned"):
        r = result[name]
        ckpt = "on" if (r["plan"] or {"checkpointing": True})["checkpointing"] else "off"
        rate = "n/a" if r["steady_tokens_per_s"] is None else f"{r['steady_tokens_per_s']:,.0f}"
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"{name:>10}{r['per_device']:>12}{ckpt:>6}{rate:>11}{mfu:>7}  {r['peak_memory_mib'] or 'n/a'}  {r['first_losses']}")
    print(f"speedup: {result['speedup']}")


if __name__ == "__main__":
    main()
