"""Sampler benchmark: the reference R3V sampler's shape against ours, same card, same process.

    # on the GPU machine, from the repo root (builds the random-weight 7B, ~17 GB, into a temp folder)
    python -m bench.sampler --build 7b --json bench_sampler.json
    # keep the built model for later runs (reused when DIR already holds a 7b build)
    python -m bench.sampler --build 7b --model /tmp/qwen2-vl-7b-random --json bench_sampler.json
    # any Qwen2-VL folder, ours only
    python -m bench.sampler --model /models/Qwen2-VL-7B-Instruct --skip_reference
    # CPU smoke test (seconds)
    python -m bench.sampler --build tiny --questions 4 --k 2 --new_tokens 8 --ref_questions 4

Both paths answer GeoSynth test questions (the CoT prompt, the image beside it) and generate exactly
`new_tokens` tokens per sequence (min_new_tokens = max_new_tokens), so a random model's EOS cannot
shorten a run; the token counts reported are read back from the outputs and checked.

- reference: REFERENCE.md §1 — batches of `ref_batch` questions, K separate passes over the data,
  one sequence per prompt, stock `transformers` sampling (top_k 50, top_p 0.95, temperature 0.9),
  through `model.generate` directly. Slow, so it runs on the first `ref_questions` questions:
  tokens/s is a rate, so a subset is a fair measure of it.
- ours: `infer.generate.generate_batch` — one generate call per batch of `our_batch` questions with
  num_return_sequences=K and the seeded top-k-then-top-p sampler (infer/sampling.py).

Each path gets an untimed warm-up (its first batch, `warmup_tokens` tokens: CUDA init, kernels) and an
input+prefill measurement (its first batch, 1 token), then the timed run (torch.cuda.synchronize
around every batch). Timings include building the inputs (chat template, image loading and
resizing) and decoding the texts, as the real sampler does.

Memory-bandwidth floor: a decode step must read every weight the text model uses once (the vision
tower is not read while decoding, nor the input embedding table except a few rows) plus the whole
KV cache. floor_step_s = (decode_param_bytes + sequences * kv_bytes_per_token * mean_length) /
peak_bandwidth, with mean_length = mean unpadded prompt length + new_tokens / 2; floor tokens/s =
sequences / floor_step_s. The peak bandwidth comes from the card name (`--bandwidth` overrides).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import statistics
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch

# Peak HBM bandwidth by card name, bytes/s (NVIDIA datasheets). Checked in order: the first substring
# of the device name that matches wins, so the specific variants come before plain "H100".
PEAK_BANDWIDTH = (
    ("H200", 4.8e12),        # H200 SXM / NVL, HBM3e 141 GB
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),       # H100 SXM5 80 GB HBM3 ("NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2.039e12),
    ("A100-SXM4-40GB", 1.555e12),
)

# REFERENCE.md §1: do_sample, top_k=50, top_p=0.95, temperature=0.9.
REF_SAMPLING = dict(top_k=50, top_p=0.95, temperature=0.9)


def model_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser with the model options that prepare_model reads (--model, --build, --arch)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--model", default=None, help="Qwen2-VL model folder; with --build, where to build "
                   "(an earlier build of the same size there is reused)")
    p.add_argument("--build", default=None, choices=("tiny", "2b", "3b", "7b"),
                   help="build a random-weight model with infer.build_model first (temp folder unless --model)")
    p.add_argument("--arch", default="qwen2_vl", choices=("qwen2_vl", "qwen2_5_vl"), help="architecture for --build")
    return p


def make_parser() -> argparse.ArgumentParser:
    p = model_parser(__doc__)
    p.add_argument("--questions", type=int, default=96, help="GeoSynth test questions for our path")
    p.add_argument("--ref_questions", type=int, default=32,
                   help="first N of those questions for the (slow) reference path; tokens/s is a rate")
    p.add_argument("--k", type=int, default=3, help="samples per question (R3V: 3)")
    p.add_argument("--new_tokens", type=int, default=128, help="tokens generated per sequence (forced)")
    p.add_argument("--ref_batch", type=int, default=4, help="questions per generate call, reference (R3V: 4)")
    p.add_argument("--our_batch", type=int, default=96, help="questions per generate call, ours (x K sequences)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per path; the median tokens/s is reported")
    p.add_argument("--warmup_tokens", type=int, default=4, help="tokens of the untimed warm-up batch")
    p.add_argument("--bandwidth", type=float, default=None, help="peak memory bandwidth in bytes/s "
                   "(default: from the card name; H100 SXM 3.35e12, H200 4.8e12)")
    p.add_argument("--attn_implementation", default="auto", help="auto (flash_attention_2 if installed, else sdpa), sdpa, eager")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), bfloat16, float16, float32")
    p.add_argument("--seed", type=int, default=0, help="GeoSynth seed, sampling seeds")
    p.add_argument("--skip_reference", action="store_true", help="time ours only")
    p.add_argument("--kfold_prefill", action="store_true", help="ours without prefill-once: num_return_sequences "
                   "copies each prompt and image K times before encoding (the earlier path)")
    p.add_argument("--ablate", action="store_true", help="also time ours without prefill-once, without the "
                   "preallocated KV cache and with transformers' SDPA decode (same process, same questions): what "
                   "each of them brings")
    p.add_argument("--dynamic_cache", action="store_true", help="ours with transformers' DynamicCache (torch.cat "
                   "every step) instead of infer/kv_cache.py's preallocated one")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--profile", default=None, help="also profile one call of ours (torch.profiler) and write "
                   "its op tables to this text file")
    p.add_argument("--profile_tokens", type=int, default=16, help="tokens generated in the profiled call")
    return p


# --------------------------------------------------------------------------- measuring


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return result, time.perf_counter() - start


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def count_tokens(row: list[int], stops: list[int]) -> int:
    """Generated tokens of one row, counted as generate_batch counts them: up to and with the first stop."""
    end = next((i for i, t in enumerate(row) if t in stops), None)
    return len(row) if end is None else end + 1


def reference_generate(loaded, requests, params) -> list[int]:
    """The reference sampler's call: one sequence per prompt, HF's own top-k/top-p sampling."""
    from infer.generate import build_inputs, stop_token_ids

    inputs = build_inputs(loaded, requests, params).to(loaded.device)
    prompt_length = inputs["input_ids"].shape[1]
    stops = stop_token_ids(loaded)
    pad_id = loaded.processor.tokenizer.pad_token_id
    with torch.inference_mode():
        out = loaded.model.generate(
            **inputs, do_sample=True, num_return_sequences=1, **REF_SAMPLING,
            max_new_tokens=params.max_new_tokens, min_new_tokens=params.min_new_tokens or None,
            eos_token_id=stops, pad_token_id=pad_id if pad_id is not None else stops[0])
    rows = out[:, prompt_length:].tolist()
    loaded.processor.tokenizer.batch_decode(rows, skip_special_tokens=True)  # the reference decodes too
    return [count_tokens(row, stops) for row in rows]


def ours_generate(loaded, requests, params) -> list[int]:
    from infer.generate import generate_batch

    return [o.num_tokens for outputs in generate_batch(loaded, requests, params) for o in outputs]


def run_path(name: str, loaded, batches: list[list], passes: int, params, args) -> dict:
    """Warm-up, input+prefill timing and `repeats` timed runs of one path; counts read from outputs."""
    from dataclasses import replace

    step = reference_generate if name == "reference" else ours_generate
    seqs_per_question = 1 if name == "reference" else params.num_samples
    step(loaded, batches[0], replace(params, min_new_tokens=args.warmup_tokens, max_new_tokens=args.warmup_tokens))
    _, prefill_s = timed(lambda: step(loaded, batches[0], replace(params, min_new_tokens=1, max_new_tokens=1)))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    runs = []
    for _ in range(args.repeats):
        counts, seconds, batch_seconds = [], 0.0, []
        for _ in range(passes):
            for batch in batches:
                got, s = timed(lambda batch=batch: step(loaded, batch, params))
                counts += got
                seconds += s
                batch_seconds.append(s)
        runs.append(dict(tokens=sum(counts), sequences=len(counts), seconds=seconds,
                         tokens_per_s=sum(counts) / seconds,
                         rows_not_new_tokens=sum(c != args.new_tokens for c in counts),
                         first_batch_s=batch_seconds[0], median_batch_s=statistics.median(batch_seconds)))
    questions = sum(len(b) for b in batches)
    expected = questions * passes * seqs_per_question * args.new_tokens
    first = runs[0]
    batch_sequences = len(batches[0]) * seqs_per_question
    # Decode time per step: (median call time of the first run - input+prefill time) / (n - 1). The median,
    # not the first call: a path with many calls (the reference's 24) pays one-off costs in its first.
    decode_step_s = ((first["median_batch_s"] - prefill_s) / (args.new_tokens - 1)) if args.new_tokens > 1 else None
    return dict(
        questions=questions, passes=passes, questions_per_call=len(batches[0]),
        sequences_per_call=batch_sequences, generate_calls=passes * len(batches),
        tokens=first["tokens"], sequences=first["sequences"], expected_tokens=expected,
        forced_length_ok=all(r["tokens"] == expected and r["rows_not_new_tokens"] == 0 for r in runs),
        rows_not_new_tokens=max(r["rows_not_new_tokens"] for r in runs),
        seconds=statistics.median(r["seconds"] for r in runs),
        tokens_per_s=statistics.median(r["tokens_per_s"] for r in runs),
        runs=runs, prefill_s_per_call=prefill_s, decode_step_s_est=decode_step_s,
        peak_memory_bytes=torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    )


# --------------------------------------------------------------------------- the bandwidth floor


def peak_bandwidth(card: str | None, override: float | None) -> float | None:
    if override:
        return override
    if not card:
        return None
    return next((bw for key, bw in PEAK_BANDWIDTH if key in card), None)


def decode_bytes(model) -> dict:
    """Bytes a decode step reads once per step (text weights) and per cached token (K and V)."""
    inner = getattr(model, "model", model)  # transformers >= 4.52: model.model.visual; older: model.visual
    visual = getattr(inner, "visual", None)
    visual = visual if visual is not None else getattr(model, "visual", None)
    skip = {id(p) for p in visual.parameters()} if visual is not None else set()
    embed_in = model.get_input_embeddings().weight
    embed_out = model.get_output_embeddings().weight
    if embed_in is not embed_out:  # untied: only a few rows of the input table are read per step
        skip.add(id(embed_in))
    params = list(model.parameters())  # unique tensors (tied weights appear once)
    text = [p for p in params if id(p) not in skip]
    cfg = getattr(model.config, "text_config", model.config)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    element = next(iter(text)).element_size()
    return dict(
        parameters=sum(p.numel() for p in params),
        decode_parameters=sum(p.numel() for p in text),
        decode_param_bytes=sum(p.numel() * p.element_size() for p in text),
        kv_bytes_per_token=2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * element,
    )


def floor(sizes: dict, sequences: int, mean_length: float, bandwidth: float | None) -> dict:
    step_bytes = sizes["decode_param_bytes"] + sequences * sizes["kv_bytes_per_token"] * mean_length
    if not bandwidth:
        return dict(step_bytes=step_bytes, step_s=None, tokens_per_s=None)
    step_s = step_bytes / bandwidth
    return dict(step_bytes=step_bytes, step_s=step_s, tokens_per_s=sequences / step_s)


# --------------------------------------------------------------------------- setup


def prepare_model(args, stack: ExitStack) -> Path:
    if args.build is None:
        if not args.model:
            raise SystemExit("error: pass --model DIR (a Qwen2-VL folder) or --build tiny|2b|7b")
        return Path(args.model)
    from infer.build_model import build

    out = Path(args.model) if args.model else Path(stack.enter_context(
        tempfile.TemporaryDirectory(prefix="bench-sampler-model-"))) / f"{args.arch}-{args.build}"
    info_file = out / "build_info.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        if (info.get("arch"), info.get("size")) == (args.arch, args.build):
            print(f"reusing the {args.arch} {args.build} build in {out}")
            return out
    print(f"building a random-weight {args.arch} {args.build} model in {out} ...", flush=True)
    _, seconds = timed(lambda: build(out, arch=args.arch, size=args.build, seed=args.seed))
    print(f"built in {seconds:.0f} s", flush=True)
    gc.collect()  # the builder's copy of the weights
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def make_requests(args, stack: ExitStack) -> list:
    from core.config import PromptConfig
    from data_gen import geosynth
    from data_gen.geoqa import load_split
    from data_gen.prompts import cot_prompt
    from infer.generate import Request
    from infer.sampling import stable_seed

    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sampler-data-")))
    geosynth.generate(data, 0, max(args.questions, args.ref_questions), seed=args.seed)
    prompt_cfg = PromptConfig()
    return [Request(p.id, p.image, cot_prompt(p, prompt_cfg), stable_seed(args.seed, "bench", p.id))
            for p in load_split(data, "test")]


def check_args(parser, args) -> None:
    for name in ("questions", "ref_questions", "k", "new_tokens", "ref_batch", "our_batch", "repeats", "warmup_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: must be at least 1")


# --------------------------------------------------------------------------- report


def fmt(value, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def print_table(result: dict) -> None:
    paths = list(result["paths"])
    rows = [
        ("questions", lambda r: fmt(r["questions"], ",")),
        ("passes over the questions", lambda r: fmt(r["passes"], ",")),
        ("sequences per generate call", lambda r: fmt(r["sequences_per_call"], ",")),
        ("generate calls per run", lambda r: fmt(r["generate_calls"], ",")),
        ("tokens per run (from outputs)", lambda r: f"{r['tokens']:,}" + ("" if r["forced_length_ok"] else " (!)")),
        ("seconds per run (median)", lambda r: fmt(r["seconds"], ".2f")),
        ("tokens/s (median)", lambda r: fmt(r["tokens_per_s"], ",.1f")),
        ("input+prefill s per call", lambda r: fmt(r["prefill_s_per_call"], ".3f")),
        ("decode ms per step (est.)", lambda r: fmt(r["decode_step_s_est"] and r["decode_step_s_est"] * 1e3, ".1f")),
        ("floor ms per step", lambda r: fmt(r["floor"]["step_s"] and r["floor"]["step_s"] * 1e3, ".2f")),
        ("floor tokens/s", lambda r: fmt(r["floor"]["tokens_per_s"], ",.0f")),
        ("fraction of floor", lambda r: fmt(r["fraction_of_floor"], ".2%")),
        ("peak memory GiB", lambda r: fmt(r["peak_memory_bytes"] and r["peak_memory_bytes"] / 2**30, ".1f")),
    ]
    s, m = result["settings"], result["model"]
    print()
    print(f"sampler benchmark on {result['card']} (torch {result['torch']}, transformers {result['transformers']}, "
          f"{m['dtype']}, {m['attn_implementation']})")
    bandwidth = fmt(result["peak_bandwidth"] and result["peak_bandwidth"] / 1e12, ".2f", "n/a")
    print(f"model {m['path']}: {human(m['parameters'])} parameters; a decode step reads "
          f"{human(m['decode_param_bytes'])}B of weights + {m['kv_bytes_per_token']:,} B per cached token; "
          f"K={s['k']}, {s['new_tokens']} new tokens forced; peak bandwidth (TB/s) {bandwidth}")
    width = max(len(r[0]) for r in rows) + 2
    print("".ljust(width) + "".join(("reference (HF)" if p == "reference" else p).rjust(22) for p in paths))
    for label, get in rows:
        print(label.ljust(width) + "".join(get(result["paths"][p]).rjust(22) for p in paths))
    if result.get("ratio") is not None:
        print(f"ours / reference tokens/s: {result['ratio']:.2f}x (reference measured on "
              f"{result['paths']['reference']['questions']} questions)")
    for p in paths:
        if not result["paths"][p]["forced_length_ok"]:
            print(f"WARNING: {p}: {result['paths'][p]['rows_not_new_tokens']} rows did not have exactly "
                  f"{s['new_tokens']} tokens; tokens/s uses the measured count")


# --------------------------------------------------------------------------- main


def profile_ours(loaded, batch, params, new_tokens: int, path: str) -> dict:
    """One call of ours under torch.profiler (CPU and CUDA); the op tables go to `path`.

    Shows where a decode step's wall time goes (DESIGN.md §5: mostly CPU-side overhead), so each
    speed change can be aimed and then checked with the same command.
    """
    from dataclasses import replace

    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if loaded.device.type == "cuda" else [])
    short = replace(params, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    ours_generate(loaded, batch, short)  # warm
    sync()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        ours_generate(loaded, batch, short)
        sync()
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=40)]
    if loaded.device.type == "cuda":
        tables.append(averages.table(sort_by="self_cuda_time_total", row_limit=25))
    Path(path).write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    gpu_us = sum(getattr(e, "self_device_time_total", 0) or 0 for e in averages)
    return {"new_tokens": new_tokens, "sequences": len(batch) * params.num_samples, "wall_s": wall,
            "wall_ms_per_token_step": 1000 * wall / new_tokens,
            "gpu_kernel_ms_per_token_step": gpu_us / 1000 / new_tokens if gpu_us else None, "tables": str(path)}


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    args.ref_questions = min(args.ref_questions, args.questions)
    import transformers

    from core.config import ModelConfig
    from infer.generate import GenParams, build_inputs
    from infer.masks import stock_decode_attention
    from infer.model import load

    with ExitStack() as stack:
        model_dir = prepare_model(args, stack)
        requests = make_requests(args, stack)
        model_cfg = ModelConfig(base_model=str(model_dir), dtype=args.dtype, attn_implementation=args.attn_implementation)
        loaded = load(model_cfg)
        params = GenParams(num_samples=args.k, temperature=REF_SAMPLING["temperature"], top_p=REF_SAMPLING["top_p"],
                           top_k=REF_SAMPLING["top_k"], max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, min_pixels=model_cfg.min_pixels,
                           max_pixels=model_cfg.max_pixels, prefill_once=not args.kfold_prefill,
                           growing_cache=not args.dynamic_cache)
        card = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else None
        bandwidth = peak_bandwidth(card, args.bandwidth)
        sizes = decode_bytes(loaded.model)

        def mean_prompt_length(batch) -> float:
            mask = build_inputs(loaded, batch, params)["attention_mask"]
            return mask.sum().item() / mask.shape[0]

        torch.manual_seed(args.seed)  # HF's sampling draws from the global RNG
        paths = {}
        ours = chunks(requests[:args.questions], args.our_batch)
        plans = {"ours": (ours, 1, params, nullcontext)}
        if args.ablate:
            plans["ours, k-fold prefill"] = (ours, 1, dataclasses.replace(params, prefill_once=False), nullcontext)
            plans["ours, DynamicCache"] = (ours, 1, dataclasses.replace(params, growing_cache=False), nullcontext)
            plans["ours, HF SDPA decode"] = (ours, 1, params, stock_decode_attention)
        if not args.skip_reference:
            plans = {"reference": (chunks(requests[:args.ref_questions], args.ref_batch), args.k, params,
                                   stock_decode_attention), **plans}
        for name, (batches, passes, path_params, context) in plans.items():
            print(f"timing {name}: {sum(map(len, batches))} questions in {len(batches)} calls x {passes} passes ...",
                  flush=True)
            with context():
                r = run_path(name, loaded, batches, passes, path_params, args)
            r["floor"] = floor(sizes, r["sequences_per_call"],
                               mean_prompt_length(batches[0]) + args.new_tokens / 2, bandwidth)
            r["fraction_of_floor"] = r["tokens_per_s"] / r["floor"]["tokens_per_s"] if r["floor"]["tokens_per_s"] else None
            paths[name] = r

        result = dict(
            card=card or "cpu", peak_bandwidth=bandwidth, torch=torch.__version__,
            transformers=transformers.__version__, python=platform.python_version(),
            cuda=torch.version.cuda if loaded.device.type == "cuda" else None,
            model=dict(path=str(model_dir), built=args.build, dtype=str(loaded.model.dtype).removeprefix("torch."),
                       attn_implementation=loaded.model.config._attn_implementation, **sizes),
            settings=dict(questions=args.questions, ref_questions=args.ref_questions, k=args.k,
                          new_tokens=args.new_tokens, ref_batch=args.ref_batch, our_batch=args.our_batch,
                          repeats=args.repeats, warmup_tokens=args.warmup_tokens, seed=args.seed,
                          reference_sampling=REF_SAMPLING, skip_reference=args.skip_reference,
                          prefill_once=params.prefill_once, growing_cache=params.growing_cache, ablate=args.ablate),
            paths=paths,
            profile=(profile_ours(loaded, plans["ours"][0][0], params, args.profile_tokens, args.profile)
                     if args.profile else None),
            ratio=paths["ours"]["tokens_per_s"] / paths["reference"]["tokens_per_s"] if "reference" in paths else None,
        )
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
