"""One batched `generate` call: K rationales for each of a batch of (image, prompt) requests.

The image and prompt of a request are given once and `num_return_sequences=K` expands them, so
one call yields all K samples of every question in the batch. Sampling is per-row seeded
(infer/sampling.py), so a question's samples do not depend on its batch. Greedy mode (Test@1,
self-selection) uses plain argmax decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infer.model import LoadedModel, attention_context
from infer.sampling import SeededSampler, stable_seed


@dataclass(frozen=True)
class Request:
    """One prompt to answer: `id` is the question id, `seed` the question's sampling seed. `meta` is
    copied into the request's record untouched (e.g. the order a select prompt lists its candidates in)."""

    id: str
    image: str
    prompt: str
    seed: int = 0
    meta: dict | None = None


@dataclass(frozen=True)
class GenParams:
    num_samples: int = 1          # K sequences per request
    greedy: bool = False
    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 512
    min_new_tokens: int = 0       # benchmarks force a fixed length with min = max
    prefill_once: bool = True     # encode each prompt and image once, then copy its KV cache K times
    growing_cache: bool = True    # KV cache with preallocated room (infer/kv_cache.py), not torch.cat per step
    min_pixels: int = 3136
    max_pixels: int = 401408


@dataclass
class Output:
    text: str
    num_tokens: int
    truncated: bool   # stopped by max_new_tokens, not by an end-of-turn token


def build_inputs(loaded: LoadedModel, requests: list[Request], params: GenParams) -> dict:
    """Chat-template the prompts, load and resize the images (qwen-vl-utils), pad on the left."""
    from qwen_vl_utils import process_vision_info

    conversations = [[{"role": "user", "content": [
        {"type": "image", "image": r.image, "min_pixels": params.min_pixels, "max_pixels": params.max_pixels},
        {"type": "text", "text": r.prompt}]}] for r in requests]
    texts = [loaded.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
             for c in conversations]
    images = process_vision_info(conversations)[0]
    return loaded.processor(text=texts, images=images, padding=True, return_tensors="pt")


def stop_token_ids(loaded: LoadedModel) -> list[int]:
    """End-of-turn ids: the generation config's eos ids plus the tokenizer's <|im_end|>."""
    ids = loaded.model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    im_end = loaded.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0 and im_end not in ids:
        ids.append(im_end)
    return ids


def _new_cache(params: GenParams):
    from transformers import DynamicCache

    from infer.kv_cache import GrowingCache

    return GrowingCache(reserve=params.max_new_tokens + 1) if params.growing_cache else DynamicCache()


def _prefill_once(loaded: LoadedModel, inputs, k: int, params: GenParams) -> dict:
    """Run the prompts (all but their last token) once and repeat the KV cache K times.

    `num_return_sequences=K` copies every prompt and image K times before the vision tower and the
    prefill; here they are encoded once. generate then receives the K-fold input ids, attention mask
    and cache and only has to process each row's last prompt token. Qwen2-VL's rope offsets
    (`rope_deltas`, set by this forward) are repeated per row by the model itself.
    """
    cache = _new_cache(params)
    head = {name: value for name, value in inputs.items() if name not in ("input_ids", "attention_mask")}
    # The backbone, not the LM head: no logits are needed (B x L x vocab would be gigabytes). It sets
    # `rope_deltas` on itself, where prepare_inputs_for_generation reads them.
    loaded.model.model(input_ids=inputs["input_ids"][:, :-1], attention_mask=inputs["attention_mask"][:, :-1],
                       past_key_values=cache, use_cache=True, **head)
    cache.batch_repeat_interleave(k)
    return {"input_ids": inputs["input_ids"].repeat_interleave(k, dim=0),
            "attention_mask": inputs["attention_mask"].repeat_interleave(k, dim=0), "past_key_values": cache}


def _generate(loaded: LoadedModel, inputs, params: GenParams, requests: list[Request], k: int, kwargs: dict):
    if params.greedy:
        return loaded.model.generate(**inputs, do_sample=False, num_beams=1, temperature=None, top_p=None,
                                     top_k=None, past_key_values=_new_cache(params), **kwargs)
    # Row order is question-major either way: q0s0, q0s1, ..., q1s0, ...
    row_seeds = torch.tensor([stable_seed(r.seed, i) for r in requests for i in range(k)], device=loaded.device)
    sampler = SeededSampler(row_seeds, inputs["input_ids"].shape[1], temperature=params.temperature,
                            top_k=params.top_k, top_p=params.top_p)
    sampling = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, logits_processor=[sampler], **kwargs)
    if params.prefill_once and k > 1 and inputs["input_ids"].shape[1] > 1:
        return loaded.model.generate(**_prefill_once(loaded, inputs, k, params), **sampling)
    return loaded.model.generate(**inputs, num_return_sequences=k, past_key_values=_new_cache(params), **sampling)


@torch.inference_mode()
def generate_batch(loaded: LoadedModel, requests: list[Request], params: GenParams) -> list[list[Output]]:
    """Return, per request, its K outputs (in sample-index order)."""
    k = 1 if params.greedy else params.num_samples
    inputs = build_inputs(loaded, requests, params).to(loaded.device)
    prompt_length = inputs["input_ids"].shape[1]
    stops = stop_token_ids(loaded)
    pad_id = loaded.processor.tokenizer.pad_token_id
    kwargs = dict(max_new_tokens=params.max_new_tokens, min_new_tokens=params.min_new_tokens or None,
                  eos_token_id=stops, pad_token_id=pad_id if pad_id is not None else stops[0])
    with attention_context(loaded.cfg, loaded.device):
        out = _generate(loaded, inputs, params, requests, k, kwargs)
    new_tokens = out[:, prompt_length:].tolist()
    results: list[list[Output]] = []
    for q in range(len(requests)):
        outputs = []
        for row in new_tokens[q * k:(q + 1) * k]:
            end = next((i for i, t in enumerate(row) if t in stops), None)
            ids = row if end is None else row[:end]
            text = loaded.processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
            outputs.append(Output(text=text, num_tokens=len(ids) + (0 if end is None else 1),
                                  truncated=end is None and len(row) >= params.max_new_tokens))
        results.append(outputs)
    return results
