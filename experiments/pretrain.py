"""From-scratch training of a small Qwen2-VL on (image, prompt, response) items: a plain PyTorch loop.

LLaMA-Factory (train/sft.py) fine-tunes models; a model made from random weights first needs many
optimizer steps on a large batch before it computes anything (on GeoSynth about 3,000 steps of 64
items before test accuracy leaves chance). At 8M parameters LLaMA-Factory's per-step overhead made
that ~20 minutes on an H200; this loop, with the same model class, processor and chat template, and
the loss on the response tokens only (as LLaMA-Factory's qwen2_vl template does), takes a few.

Every `eval_every` steps it saves the model (and the optimizer, so a killed run resumes from the
newest save) and calls `on_save(step, folder, entry)` (it may add figures to the history entry);
returning True stops the training there.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.io import atomic_write_json, read_json
from core.log import get_logger

log = get_logger("pretrain")
STATE_FILE = "pretrain_state.json"


@dataclass
class PretrainConfig:
    lr: float = 1e-3
    batch: int = 64
    warmup_steps: int = 100
    weight_decay: float = 0.1
    max_steps: int = 8000
    eval_every: int = 250
    seed: int = 7
    min_pixels: int = 3136
    max_pixels: int = 224 * 224
    workers: int = 4      # processes that encode the items once, before training


class Encoder:
    """Item -> input ids, labels (response only) and image tensors, with the model's own processor."""

    def __init__(self, model_dir: Path, cfg: PretrainConfig):
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(str(model_dir))
        self.processor.image_processor.min_pixels = cfg.min_pixels
        self.processor.image_processor.max_pixels = cfg.max_pixels
        self.tokenizer = self.processor.tokenizer
        self.end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __call__(self, item: dict) -> dict:
        from PIL import Image

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item["prompt"]}]}]
        prompt = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        with Image.open(item["image"]) as im:
            enc = self.processor(text=[prompt], images=[im.convert("RGB")], return_tensors="pt")
        response = self.tokenizer(item["response"], add_special_tokens=False)["input_ids"] + [self.end]
        ids = enc["input_ids"][0].tolist()
        # float16 numpy: half the bytes to send back from a worker process (normalised pixels lose a
        # little precision; on GPU training reads them in bf16 anyway)
        return {"input_ids": ids + response, "labels": [-100] * len(ids) + response,
                "pixel_values": enc["pixel_values"].numpy().astype("float16"),
                "image_grid_thw": enc["image_grid_thw"].tolist()}


_worker_encoder: Encoder | None = None


def _init_worker(model_dir: Path, cfg: PretrainConfig, threads: int | None = 1) -> None:
    global _worker_encoder
    if threads:
        import torch

        torch.set_num_threads(threads)  # one thread per worker: 16 workers x 16 threads crawl
    _worker_encoder = Encoder(model_dir, cfg)


def _encode(item: dict) -> dict:
    return _worker_encoder(item)


def encode_all(model_dir: Path, items: list[dict], cfg: PretrainConfig) -> list[dict]:
    """Every item encoded once (chat template, image preprocessing), in `workers` processes."""
    if cfg.workers <= 1:
        _init_worker(model_dir, cfg, threads=None)
        return [_encode(it) for it in items]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(cfg.workers, _init_worker, (model_dir, cfg)) as pool:
        return pool.map(_encode, items, chunksize=64)


class Batches:
    """Encoded items held in memory (pixels on the training device); one padded batch per call."""

    def __init__(self, rows: list[dict], pad_id: int, device: str, pixel_dtype, rope_index):
        import torch

        self.rows, self.pad_id, self.device = rows, pad_id, device
        self.pixels = [torch.from_numpy(r["pixel_values"]).to(device=device, dtype=pixel_dtype) for r in rows]
        self.grids = [torch.tensor(r["image_grid_thw"], device=device) for r in rows]
        # Qwen2-VL's 3D rotary positions, computed once per item: the model's own get_rope_index runs
        # a Python loop per row and image, which at batch 64 cost more than the 8M model's step.
        self.positions = []
        for i in range(len(rows)):
            ids = torch.tensor([rows[i]["input_ids"]], device=device)
            self.positions.append(rope_index(ids, self.grids[i], None, torch.ones_like(ids))[0][:, 0])

    def __call__(self, index: list[int]) -> dict:
        import torch

        rows = [self.rows[i] for i in index]
        length = max(len(r["input_ids"]) for r in rows)
        pad = lambda seq, value: seq + [value] * (length - len(seq))  # noqa: E731
        tensor = lambda x: torch.tensor(x, device=self.device)  # noqa: E731
        return {"input_ids": tensor([pad(r["input_ids"], self.pad_id) for r in rows]),
                "labels": tensor([pad(r["labels"], -100) for r in rows]),
                "attention_mask": tensor([pad([1] * len(r["input_ids"]), 0) for r in rows]),
                "position_ids": torch.stack([torch.nn.functional.pad(self.positions[i], (0, length - len(r["input_ids"])),
                                                                     value=1) for i, r in zip(index, rows)], dim=1),
                "pixel_values": torch.cat([self.pixels[i] for i in index]),
                "image_grid_thw": torch.cat([self.grids[i] for i in index])}


def step_dir(work: Path, step: int) -> Path:
    return work / f"step_{step:06d}"


def latest_save(work: Path) -> tuple[int, Path] | None:
    saves = sorted(p for p in work.glob("step_*") if (p / STATE_FILE).is_file())
    return (read_json(saves[-1] / STATE_FILE)["step"], saves[-1]) if saves else None


def batches(n: int, batch: int, seed: int, start: int):
    """Index batches, epoch after epoch, each epoch in its own seeded order; skips the first `start`."""
    step, epoch = 0, 0
    while True:
        order = list(range(n))
        random.Random(f"{seed}-epoch-{epoch}").shuffle(order)
        for i in range(0, n - batch + 1, batch):
            if step >= start:
                yield order[i:i + batch]
            step += 1
        epoch += 1


def pretrain(init_dir: Path, items: list[dict], work: Path, cfg: PretrainConfig,
             on_save: Callable[[int, Path, dict], bool]) -> list[dict]:
    """Train from init_dir (or the newest save under work) until on_save says stop or max_steps."""
    import torch
    from transformers import AutoModelForImageTextToText

    if len(items) < cfg.batch:
        raise ValueError(f"pretrain: {len(items)} items is fewer than one batch of {cfg.batch}; make more data "
                         f"or lower the batch.")
    work.mkdir(parents=True, exist_ok=True)
    history_file = work / "history.json"
    history: list[dict] = read_json(history_file) if history_file.is_file() else []
    saved = latest_save(work)
    start, source = (saved[0], saved[1]) if saved else (0, init_dir)
    history = [h for h in history if h["step"] <= start]
    if saved and history:
        # Ask again with today's settings (a larger max_steps or another target may go on); on_save
        # is expected to reuse what it measured for this save.
        last = dict(history[-1])
        if start >= cfg.max_steps or on_save(start, source, last):
            log.info("pretraining stops at step %d (%s)", start, source)
            return history
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed + start)
    model = AutoModelForImageTextToText.from_pretrained(str(source), dtype=torch.float32).to(device).train()
    encoder = Encoder(init_dir, cfg)
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else encoder.end
    t0 = time.time()
    with torch.no_grad():
        make_batch = Batches(encode_all(init_dir, items, cfg), pad_id, device,
                             torch.bfloat16 if device == "cuda" else torch.float32, model.model.get_rope_index)
    log.info("encoded %d items in %.0f s", len(items), time.time() - t0)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    if saved and (source / "optimizer.pt").is_file():
        opt.load_state_dict(torch.load(source / "optimizer.pt", map_location=device))
    for group in opt.param_groups:
        group["initial_lr"] = cfg.lr  # the rate asked for now, also when resuming
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps),
                                              last_epoch=start - 1)
    log.info("pretraining from %s at step %d: %d items, batch %d, lr %g, on %s", source, start, len(items),
             cfg.batch, cfg.lr, device)
    step, losses = start, []
    # Training time over restarts, evaluations and saves excluded (entry["seconds"], --max_minutes).
    trained = history[-1]["seconds"] if history else 0.0
    tick = time.time()
    for index in batches(len(items), cfg.batch, cfg.seed, start):
        batch = make_batch(index)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        losses.append(loss.item())
        if step % cfg.eval_every and step < cfg.max_steps:
            continue
        trained += time.time() - tick
        folder = step_dir(work, step)
        if folder.exists():
            shutil.rmtree(folder)  # a save cut off by a kill (no STATE_FILE): its files are stale
        model.save_pretrained(str(folder), safe_serialization=True)
        encoder.processor.save_pretrained(str(folder))
        torch.save(opt.state_dict(), folder / "optimizer.pt")
        entry = {"step": step, "loss": round(sum(losses) / len(losses), 4),
                 "seconds": round(trained, 1)}
        losses = []
        model.eval()
        stop = bool(on_save(step, folder, entry))
        model.train()
        entry["stop"] = stop or step >= cfg.max_steps
        history.append(entry)
        atomic_write_json(history_file, history)
        atomic_write_json(folder / STATE_FILE, {"step": step})  # last: the save is complete
        for old in work.glob("step_*/optimizer.pt"):
            if old.parent != folder:
                old.unlink()  # only the newest save needs the optimizer (to resume)
        if entry["stop"]:
            break
        tick = time.time()
    return history


if __name__ == "__main__":
    raise SystemExit("use experiments.geosynth_model (python -m experiments.geosynth_model --help)")

