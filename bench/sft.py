"""Real-size training check: one LLaMA-Factory LoRA SFT pass over an R3V mix, on 1 GPU and on N.

    # on a machine with 2 GPUs, from the repo root (the random 7b build is reused when DIR holds one)
    python -m bench.sft --build 7b --model /tmp/q7b --gpus 1,2 --json sft.json
    # CPU smoke run (tiny model, fp32, one process)
    python -m bench.sft --build tiny --questions 4 --max_steps 2 --gpus 0

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


def run_one(args, model: Path, dataset_dir: Path, work: Path, gpus: int, longest: int) -> dict:
    from core.config import ModelConfig, TrainConfig
    from core.io import read_json
    from train.sft import read_train_summary, train

    mcfg = ModelConfig()
    cfg = TrainConfig(finetuning_type="lora", learning_rate=1e-4, num_train_epochs=1.0,
                      global_batch_size=args.global_batch, per_device_batch_size=args.per_device_batch,
                      lora_rank=args.lora_rank, lora_alpha=2 * args.lora_rank, max_steps=args.max_steps,
                      num_gpus=gpus, overrides={"include_num_input_tokens_seen": "non_padding",
                                                "save_strategy": "no", "logging_steps": 1})
    iter_dir = work / f"gpus{gpus}"
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
    return {"gpus": gpus, "steps": summary["global_step"], "runtime_s": runtime, "train_loss": summary["train_loss"],
            "samples": samples, "samples_per_s": round(samples / runtime, 3) if runtime else None,
            "tokens_seen": seen, "tokens_per_s": round(seen / runtime, 1) if runtime and seen else None,
            "peak_memory_mib": {str(k): v for k, v in sorted(mem.peaks.items())}, "longest_item_tokens": longest}


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
        runs = [run_one(args, model, work / "dataset", work, g, longest) for g in counts]
        card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
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


if __name__ == "__main__":
    main()
