"""Sampler: seeded sampling math, K samples per question, greedy determinism, shards, resume, adapters.

The model tests use the real tiny Qwen2-VL (conftest.py) through the real generate path;
the shard/merge bookkeeping tests use a scripted fake generator (no model needed for them).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.config import ModelConfig
from core.io import read_json
from infer.model import load
from infer.generate import GenParams, Output, Request, generate_batch
from infer.sample import SampleJob, done_records, launch, merge, plan_batches, run_shard, shard_path, stats_path
from infer.sampling import sample_tokens, stable_seed

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- sampling math


@pytest.mark.parametrize("top_k,top_p,expected", [
    (0, 1.0, [0.5, 0.3, 0.15, 0.05]),
    (0, 0.7, [0.625, 0.375, 0.0, 0.0]),       # 0.5 + 0.3 reach 0.7: the rest is cut
    (2, 1.0, [0.625, 0.375, 0.0, 0.0]),
    (3, 0.9, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]),
], ids=["plain", "top-p", "top-k", "top-k-then-top-p"])
def test_seeded_sampling_matches_the_filtered_distribution(top_k, top_p, expected):
    n = 40000
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).expand(n, 4)
    seeds = torch.tensor([stable_seed("t", i) for i in range(n)])
    tokens = sample_tokens(logits, seeds, 0, temperature=1.0, top_k=top_k, top_p=top_p)
    freq = torch.bincount(tokens, minlength=4).double() / n
    assert torch.allclose(freq, torch.tensor(expected, dtype=torch.float64), atol=0.012), freq


def test_temperature_sharpens():
    n = 20000
    logits = torch.log(torch.tensor([0.6, 0.4])).expand(n, 2)
    seeds = torch.tensor([stable_seed("temp", i) for i in range(n)])
    cold = sample_tokens(logits, seeds, 0, temperature=0.25, top_k=0, top_p=1.0)
    # softmax(log p / 0.25) = p^4 normalised: 0.6^4 / (0.6^4 + 0.4^4) = 0.835
    assert abs((cold == 0).double().mean().item() - 0.835) < 0.015


def test_draws_depend_only_on_seed_and_step():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    seeds = torch.tensor([11, 22, 33])
    full = sample_tokens(logits, seeds, 5, temperature=0.9, top_k=50, top_p=0.95)
    alone = sample_tokens(logits[1:2], seeds[1:2], 5, temperature=0.9, top_k=50, top_p=0.95)
    assert full[1] == alone[0]  # a row's draw does not depend on its neighbours
    steps = {int(sample_tokens(logits[:1], seeds[:1], s, temperature=0.9, top_k=50, top_p=0.95)) for s in range(20)}
    assert len(steps) > 1  # different steps draw different noise


# --------------------------------------------------------------------------- real tiny model


def make_items(problems_dir: Path, n: int = 6) -> list[Request]:
    from core.config import PromptConfig
    from data_gen import prompts
    from data_gen.geoqa import load_split

    problems = load_split(problems_dir, "test")[:n]
    return [Request(p.id, p.image, prompts.cot_prompt(p, PromptConfig()), stable_seed(1, p.id)) for p in problems]


@pytest.fixture(scope="module")
def geosynth_dir(tmp_path_factory) -> Path:
    from data_gen import geosynth

    out = tmp_path_factory.mktemp("geosynth")
    geosynth.generate(out, 8, 8, seed=3)
    return out


def job_for(model_dir: Path, items: list[Request], out: Path, *, batch_size: int, greedy: bool = False,
            checkpoint: str | None = None, k: int = 3, max_new_tokens: int = 12) -> SampleJob:
    model = dataclasses.asdict(ModelConfig(base_model=str(model_dir), max_pixels=64 * 28 * 28))
    params = dict(num_samples=k, greedy=greedy, max_new_tokens=max_new_tokens, max_pixels=64 * 28 * 28)
    return SampleJob(out=str(out), model=model, checkpoint=checkpoint, params=params,
                     batch_size=batch_size, items=items)


def test_k_samples_per_question_and_independent_of_batch_size(tiny_model_dir, geosynth_dir, tmp_path):
    items = make_items(geosynth_dir)
    a = launch(job_for(tiny_model_dir, items, tmp_path / "a.jsonl", batch_size=4))
    b = launch(job_for(tiny_model_dir, items, tmp_path / "b.jsonl", batch_size=1))
    assert [r["id"] for r in a] == [it.id for it in items]  # merged in request order
    for r in a:
        assert len(r["predictions"]) == len(r["num_tokens"]) == len(r["truncated"]) == 3
        assert "answers" not in r and "correct" not in r  # the engine judges nothing (eval.judge does)
        assert all(0 < n <= 12 for n in r["num_tokens"])
    assert len({p for r in a for p in r["predictions"]}) > len(a)  # K samples differ
    # Per-question seeds: the samples do not depend on how questions are batched.
    assert a == b
    assert not list(tmp_path.glob("*.rank*.jsonl"))  # shards are removed after the merge


def test_greedy_equals_greedy(tiny_model_dir, geosynth_dir, tmp_path):
    items = make_items(geosynth_dir, 4)
    a = launch(job_for(tiny_model_dir, items, tmp_path / "g1.jsonl", batch_size=4, greedy=True))
    b = launch(job_for(tiny_model_dir, items, tmp_path / "g2.jsonl", batch_size=1, greedy=True))
    assert [r["predictions"] for r in a] == [r["predictions"] for r in b]
    assert all(len(r["predictions"]) == 1 for r in a)


def test_truncation_is_recorded(tiny_model_dir, geosynth_dir, tmp_path):
    # A random tiny model rarely emits <|im_end|> within 4 tokens: those outputs are cut off.
    recs = launch(job_for(tiny_model_dir, make_items(geosynth_dir, 3), tmp_path / "t.jsonl", batch_size=3,
                          max_new_tokens=4))
    for r in recs:
        for n, t in zip(r["num_tokens"], r["truncated"]):
            assert t == (n == 4)
    assert any(t for r in recs for t in r["truncated"])


def test_adapter_changes_the_output(tiny_model_dir, geosynth_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir))
    # init_lora_weights=False: random A and B, so the adapter really changes the logits.
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "lm_head"],
                                                 init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter))
    items = make_items(geosynth_dir, 3)
    plain = launch(job_for(tiny_model_dir, items, tmp_path / "p.jsonl", batch_size=3, greedy=True))
    adapted = launch(job_for(tiny_model_dir, items, tmp_path / "q.jsonl", batch_size=3, greedy=True,
                             checkpoint=str(adapter)))
    assert [r["predictions"] for r in plain] != [r["predictions"] for r in adapted]


# --------------------------------------------------------------------------- shards and resume (fake)


class ScriptedGenerator:
    """Deterministic fake outputs ("Answer: A" for ids ending in an even digit); counts calls."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_after = fail_after

    def __call__(self, requests, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls.append([r.id for r in requests])
        return [[Output(text=f"{r.id} sample {i}. Answer: {'A' if int(r.id[-1]) % 2 == 0 else 'B'}",
                        num_tokens=5, truncated=False) for i in range(params.num_samples)] for r in requests]


def fake_items(n: int) -> list[Request]:
    return [Request(f"q{i}", "img.png", "x" * (i % 4), seed=i, meta={"n": i}) for i in range(n)]


def fake_job(tmp_path: Path, n: int = 10, batch_size: int = 3) -> SampleJob:
    return SampleJob(out=str(tmp_path / "s.jsonl"), model={}, checkpoint=None,
                     params=dict(num_samples=2), batch_size=batch_size, items=fake_items(n))


def test_batches_are_fixed_and_cover_everything():
    items = fake_items(10)
    batches = plan_batches(items, 3)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(it.id for b in batches for it in b) == sorted(it.id for it in items)
    assert len(batches[0][0].prompt) >= len(batches[-1][-1].prompt)  # longest first


def test_two_ranks_merge_to_the_one_rank_result(tmp_path):
    one = fake_job(tmp_path / "one")
    Path(one.out).parent.mkdir()
    run_shard(one, 0, 1, generate_fn=ScriptedGenerator())
    single = merge(one)
    two = fake_job(tmp_path / "two")
    Path(two.out).parent.mkdir()
    gens = [ScriptedGenerator(), ScriptedGenerator()]
    for rank in (0, 1):
        run_shard(two, rank, 2, generate_fn=gens[rank])
    assert set(gens[0].calls[0]).isdisjoint(gens[1].calls[0])
    assert merge(two) == single
    assert [r["id"] for r in single] == [f"q{i}" for i in range(10)]
    # Timing: one file per rank while sampling, combined by the merge (questions summed, slowest rank).
    stats = read_json(stats_path(Path(two.out)))
    assert stats["ranks"] == 2 and stats["questions"] == 10
    assert stats["tokens"] == sum(sum(r["num_tokens"]) for r in single)
    assert stats["seconds"] == max(r["seconds"] for r in stats["per_rank"])
    assert not list(Path(two.out).parent.glob("*.rank*.stats.json"))
    assert stats["missing_ranks"] == [] and stats["attempts"] == 1
    assert single[3]["n"] == 3 and set(single[0]) == {"id", "prompt", "predictions", "num_tokens", "truncated", "n"}


def test_merge_applies_finish_before_the_final_file(tmp_path):
    """eval.judge's finish adds answers and correct to the merged file; a rerun reads that file as it is."""
    from eval.judge import judge_all

    job = fake_job(tmp_path)
    run_shard(job, 0, 1, generate_fn=ScriptedGenerator())
    gold = {f"q{i}": ("A", ["1", "2"]) for i in range(10)}
    records = merge(job, judge_all(gold))
    assert records[0]["answers"] == ["A", "A"] and records[1]["correct"] == [False, False]
    assert list(records[0])[:5] == ["id", "prompt", "predictions", "answers", "correct"]  # the files' key order
    assert records[2]["n"] == 2  # the request's meta is kept
    assert [json.loads(x) for x in Path(job.out).read_text().splitlines()] == records
    assert launch(job) == records  # done: the judged file is returned, nothing is sampled again
    with pytest.raises(KeyError, match="no gold answer for 1 sampled ids"):
        judge_all({k: v for k, v in gold.items() if k != "q4"})(records)


def test_stats_of_resumed_attempts_add_up_and_missing_ranks_are_named(tmp_path):
    from infer.sample import merge_stats, record_attempt

    out = tmp_path / "s.jsonl"
    entry = dict(questions=4, sequences=12, tokens=100, seconds=2.0, peak_gpu_memory_gib=None, device="cpu")
    record_attempt(out, 0, dict(entry, world_size=3, questions=1), new=True)  # first attempt: 3 ranks, after a batch
    record_attempt(out, 0, dict(entry, world_size=3), new=False)  # ... and at its end (rank 2's file never arrives)
    record_attempt(out, 1, dict(entry, world_size=3, seconds=3.0), new=True)
    record_attempt(out, 0, dict(entry, world_size=2), new=True)  # resumed on 2 ranks
    stats = merge_stats(out)
    assert stats["missing_ranks"] == [2] and stats["attempts"] == 2
    assert stats["questions"] == 12 and stats["tokens"] == 300
    assert stats["seconds"] == 4.0  # rank 0: 2 + 2 s over its attempts; rank 1: 3 s


def test_resume_after_a_kill_redoes_only_unfinished_batches(tmp_path):
    job = fake_job(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_shard(job, 0, 1, generate_fn=ScriptedGenerator(fail_after=2))
    assert len(done_records(Path(job.out))) == 6  # two finished batches were flushed
    # A torn last line (killed mid-write) is dropped and redone, not an error.
    with shard_path(Path(job.out), 0).open("a") as f:
        f.write('{"id": "q9", "predic')
    again = ScriptedGenerator()
    run_shard(job, 0, 1, generate_fn=again)
    assert sum(len(c) for c in again.calls) == 4
    records = merge(job)
    assert [r["id"] for r in records] == [f"q{i}" for i in range(10)]  # nothing lost or duplicated
    # The stats count every attempt: the killed one's two finished batches (6 questions) and the rest.
    stats = read_json(stats_path(Path(job.out)))
    assert stats["attempts"] == 2 and stats["questions"] == 10


def test_merge_refuses_missing_records(tmp_path):
    job = fake_job(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_shard(job, 0, 1, generate_fn=ScriptedGenerator(fail_after=1))
    with pytest.raises(RuntimeError, match="7 requests have no record"):
        merge(job)


def test_real_kill_and_rerun(tiny_model_dir, geosynth_dir, tmp_path):
    """SIGKILL the real sampler process after its first flushed batch; the rerun finishes the rest."""
    items = make_items(geosynth_dir, 8)
    job = job_for(tiny_model_dir, items, tmp_path / "k.jsonl", batch_size=1, max_new_tokens=48)
    job_path = tmp_path / "k.job.json"
    job_path.write_text(json.dumps(dataclasses.asdict(job)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "infer.sample", "--job", str(job_path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard = shard_path(Path(job.out), 0)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if shard.is_file() and shard.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = done_records(Path(job.out))
    assert 2 <= len(before) < len(items), "the kill should land in the middle of sampling"
    records = launch(job)
    assert [r["id"] for r in records] == [it.id for it in items]
    # What finished before the kill is kept as it was, and equals an uninterrupted run.
    for r in records:
        if r["id"] in before:
            assert r == before[r["id"]]
    assert records == launch(job_for(tiny_model_dir, items, tmp_path / "ref.jsonl", batch_size=1, max_new_tokens=48))


# --------------------------------------------------------------------------- attention masks


@pytest.mark.parametrize("q_len,kv_len,offset,pad", [
    (7, 7, 0, [0, 3]),      # prefill, left padding
    (1, 12, 0, [0, 5]),     # a decode step with a cache of 11
    (1, 12, 0, [0, 0]),     # no padding: both may skip the mask (None)
    (3, 9, 0, [2, 0]),
], ids=["prefill", "decode", "no-padding", "chunk"])
def test_fast_mask_equals_transformers_mask(q_len, kv_len, offset, pad):
    from transformers import masking_utils

    from infer.masks import _hf_sdpa_mask, causal_padding_mask

    attention = torch.ones(2, kv_len, dtype=torch.long)
    for row, n in enumerate(pad):
        attention[row, :n] = 0
    cache_position = torch.arange(kv_len - q_len, kv_len)
    args = dict(batch_size=2, cache_position=cache_position, kv_length=kv_len, kv_offset=offset,
                mask_function=masking_utils.causal_mask_function, attention_mask=attention)
    ours, theirs = causal_padding_mask(**args), _hf_sdpa_mask(**args)
    if theirs is None:
        assert ours is None
    else:
        assert ours.shape == theirs.shape and torch.equal(ours, theirs.bool())


def test_fast_masks_leave_generation_unchanged(tiny_model_dir, geosynth_dir, tmp_path):
    from transformers import masking_utils

    from infer.masks import _hf_sdpa_mask

    items = make_items(geosynth_dir, 4)
    fast = launch(job_for(tiny_model_dir, items, tmp_path / "fast.jsonl", batch_size=4))
    masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa", _hf_sdpa_mask)
    try:
        import infer.masks

        original = infer.masks.use_fast_masks
        infer.masks.use_fast_masks = lambda: None  # load() must not re-register for this run
        stock = launch(job_for(tiny_model_dir, items, tmp_path / "stock.jsonl", batch_size=4))
    finally:
        infer.masks.use_fast_masks = original
    assert fast == stock


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_prefill_once_samples_what_num_return_sequences_samples(tiny_model_dir, tiny_model_dir_25, geosynth_dir,
                                                                tmp_path, arch):
    """Encoding each prompt and image once and repeating its KV cache K times changes nothing sampled."""
    model_dir = tiny_model_dir if arch == "qwen2_vl" else tiny_model_dir_25
    items = make_items(geosynth_dir, 6)
    once = job_for(model_dir, items, tmp_path / "once.jsonl", batch_size=3, max_new_tokens=16)
    k_fold = job_for(model_dir, items, tmp_path / "kfold.jsonl", batch_size=3, max_new_tokens=16)
    k_fold.params["prefill_once"] = False
    from infer.generate import GenParams

    assert GenParams().prefill_once and "prefill_once" not in once.params  # the default path
    a, b = launch(once), launch(k_fold)
    assert a == b
    assert len({p for r in a for p in r["predictions"]}) > len(a)  # real sampling, K samples differ


def test_prefill_once_is_the_path_taken(tiny_model_dir, geosynth_dir, tmp_path, monkeypatch):
    from infer import generate

    calls = []
    real = generate._prefill_once
    monkeypatch.setattr(generate, "_prefill_once", lambda *a: calls.append(a[2]) or real(*a))
    launch(job_for(tiny_model_dir, make_items(geosynth_dir, 2), tmp_path / "spy.jsonl", batch_size=2))
    assert calls == [3]  # one batch, K=3


@pytest.mark.parametrize("greedy", [False, True])
def test_growing_cache_generates_what_dynamic_cache_generates(tiny_model_dir, geosynth_dir, tmp_path, greedy):
    """infer/kv_cache.py writes into preallocated room; the attention must see the same keys and values."""
    items = make_items(geosynth_dir, 6)
    # 40 tokens with room for 41: the buffers are refit after the prefill (K copies) and never again
    grown = job_for(tiny_model_dir, items, tmp_path / "grow.jsonl", batch_size=3, greedy=greedy, max_new_tokens=40)
    stock = job_for(tiny_model_dir, items, tmp_path / "dyn.jsonl", batch_size=3, greedy=greedy, max_new_tokens=40)
    stock.params["growing_cache"] = False
    assert launch(grown) == launch(stock)


def test_growing_layer_refits_when_full():
    from infer.kv_cache import GrowingLayer

    layer = GrowingLayer(reserve=2)
    k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    layer.update(k, k + 100)
    for step in range(5):  # past the reserve: the buffers grow, nothing is lost
        t = torch.full((2, 1, 1, 2), float(step))
        keys, values = layer.update(t, t + 100)
    assert layer.get_seq_length() == 8 and keys.shape == (2, 1, 8, 2)
    assert torch.equal(keys[:, :, :3], k) and torch.equal(values[:, :, 3:], keys[:, :, 3:] + 100)
    layer.batch_repeat_interleave(3)
    assert layer.keys.shape == (6, 1, 8, 2) and torch.equal(layer.keys[1], keys[0])
    layer.crop(5)
    assert layer.get_seq_length() == 5 and layer.keys.shape[-2] == 5
    layer.reorder_cache(torch.tensor([5, 4, 3, 2, 1, 0]))  # beam search's reordering is kept
    assert torch.equal(layer.keys[0], keys[1, :, :5])
    layer.update(torch.zeros(6, 1, 1, 2), torch.zeros(6, 1, 1, 2))
    assert torch.equal(layer.keys[0, :, :5], keys[1, :, :5]) and layer.get_seq_length() == 6
    with pytest.raises(ValueError, match="rows"):
        layer.update(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))  # no silent broadcast
    layer.reset()
    assert layer.get_seq_length() == 0 and layer.keys is None
    layer.update(k, k)  # usable again after a reset
    assert layer.get_seq_length() == 3


def test_grouped_decode_attention_equals_transformers_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from infer.masks import grouped_decode_sdpa

    class Attention:
        num_key_value_groups = 7

    torch.manual_seed(0)
    b, kv_heads, groups, d, length = 3, 4, 7, 16, 11
    key, value = torch.randn(b, kv_heads, length, d), torch.randn(b, kv_heads, length, d)
    mask = torch.ones(b, 1, 1, length, dtype=torch.bool)
    mask[0, ..., :3] = False  # left padding
    mask[2, ..., :5] = False
    for q_len in (1, 4):  # a decode step takes the grouped path; a prefill falls through to transformers'
        query = torch.randn(b, q_len, kv_heads * groups, d).transpose(1, 2)  # as the model lays it out
        m = mask.expand(b, 1, q_len, length)
        ours, _ = grouped_decode_sdpa(Attention(), query, key, value, m, scaling=0.25)
        stock, _ = sdpa_attention_forward(Attention(), query, key, value, m, scaling=0.25)
        assert ours.shape == stock.shape == (b, q_len, kv_heads * groups, d)
        assert torch.allclose(ours, stock, atol=1e-5)


def test_grouped_decode_attention_leaves_generation_unchanged(tiny_model_dir, geosynth_dir, tmp_path):
    from infer.masks import stock_decode_attention

    items = make_items(geosynth_dir, 6)
    ours = launch(job_for(tiny_model_dir, items, tmp_path / "grouped.jsonl", batch_size=3, max_new_tokens=24))
    loaded = load(ModelConfig(base_model=str(tiny_model_dir), max_pixels=64 * 28 * 28))
    params = GenParams(num_samples=3, max_new_tokens=24, max_pixels=64 * 28 * 28)
    requests = [Request(it.id, it.image, it.prompt, it.seed) for it in items]
    with stock_decode_attention():
        stock = [o for i in range(0, 6, 3) for o in generate_batch(loaded, requests[i:i + 3], params)]
    assert [r["predictions"] for r in ours] == [[o.text for o in outs] for outs in stock]


def test_generate_writes_into_the_growing_cache(tiny_model_dir, geosynth_dir, tmp_path, monkeypatch):
    from infer.kv_cache import GrowingLayer

    refits, updates = [], []
    real_refit, real_update = GrowingLayer._refit, GrowingLayer.update
    monkeypatch.setattr(GrowingLayer, "_refit", lambda self, *a: refits.append(a[2]) or real_refit(self, *a))
    monkeypatch.setattr(GrowingLayer, "update", lambda self, *a, **kw: updates.append(1) or real_update(self, *a, **kw))
    launch(job_for(tiny_model_dir, make_items(geosynth_dir, 2), tmp_path / "spy.jsonl", batch_size=2,
                   max_new_tokens=12, k=3))
    layers = 2  # the tiny model
    assert len(updates) >= layers * 12  # prefill + one write per decode step and layer
    assert refits == [13] * (2 * layers)  # allocated at the prefill and at the K-fold copy, never again
