"""bench/sampler.py smoke test on CPU: a tiny model built by the benchmark itself, both paths, the JSON.

No timing assertions (2 shared CPU cores): only that the command runs end to end, writes every field,
and that the forced length holds, i.e. the tokens read back from the outputs are sequences x new_tokens.
"""

import json

from bench.sampler import floor, main, peak_bandwidth


def test_sampler_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.json"
    model_dir = tmp_path / "tiny"
    result = main(["--build", "tiny", "--model", str(model_dir), "--questions", "4", "--k", "2",
                   "--new_tokens", "8", "--ref_questions", "4", "--ablate", "--json", str(out)])
    assert (model_dir / "build_info.json").is_file()  # --build with --model builds into that folder
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))

    for key in ("card", "peak_bandwidth", "torch", "transformers", "model", "settings", "paths", "ratio"):
        assert key in saved, key
    assert saved["card"] == "cpu" and saved["peak_bandwidth"] is None
    assert saved["model"]["parameters"] > saved["model"]["decode_parameters"] > 0  # the vision tower is excluded
    assert saved["model"]["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4  # K+V, 2 layers, 2 KV heads, head_dim 16, fp32
    assert saved["settings"]["k"] == 2 and saved["settings"]["new_tokens"] == 8

    ref, ours = saved["paths"]["reference"], saved["paths"]["ours"]
    # reference: K separate passes, one sequence per prompt; ours: one call, K sequences per prompt
    assert (ref["passes"], ref["sequences_per_call"], ref["generate_calls"]) == (2, 4, 2)
    assert (ours["passes"], ours["sequences_per_call"], ours["generate_calls"]) == (1, 8, 1)
    for path in (ref, ours):
        assert path["sequences"] == 4 * 2
        assert path["tokens"] == path["expected_tokens"] == path["sequences"] * 8
        assert path["forced_length_ok"] and path["rows_not_new_tokens"] == 0
        assert path["tokens_per_s"] > 0 and path["seconds"] > 0 and path["prefill_s_per_call"] > 0
        assert path["floor"]["tokens_per_s"] is None and path["fraction_of_floor"] is None  # no bandwidth on CPU
        assert path["floor"]["step_bytes"] > saved["model"]["decode_param_bytes"]
        assert path["peak_memory_bytes"] is None
    assert saved["ratio"] == ours["tokens_per_s"] / ref["tokens_per_s"]
    # --ablate: ours again without each of its two speed-ups, same questions, same forced length
    assert list(saved["paths"]) == ["reference", "ours", "ours, k-fold prefill", "ours, DynamicCache",
                                    "ours, HF SDPA decode"]
    for name in ("ours, k-fold prefill", "ours, DynamicCache", "ours, HF SDPA decode"):
        assert saved["paths"][name]["tokens"] == ours["tokens"] and saved["paths"][name]["forced_length_ok"]



def test_bandwidth_floor():
    assert peak_bandwidth("NVIDIA H100 80GB HBM3", None) == 3.35e12
    assert peak_bandwidth("NVIDIA H100 PCIe", None) == 2.0e12
    assert peak_bandwidth("NVIDIA H200", None) == 4.8e12
    assert peak_bandwidth("Some Future GPU", None) is None and peak_bandwidth(None, None) is None
    assert peak_bandwidth(None, 1e12) == 1e12  # --bandwidth overrides, also on CPU
    # Qwen2-VL-7B text weights (14.14 GB bf16) + 288 sequences x 214 cached tokens x 57,344 B on an H200:
    # ~3.7 ms a step, ~78k tokens/s (DESIGN.md §5: "roughly 4-5 ms per decode step").
    sizes = dict(decode_param_bytes=14_141_238_272, kv_bytes_per_token=57_344)
    f = floor(sizes, 288, 214, 4.8e12)
    assert 3.5e-3 < f["step_s"] < 3.9e-3 and abs(f["tokens_per_s"] - 288 / f["step_s"]) < 1e-6
    assert floor(sizes, 288, 214, None)["tokens_per_s"] is None


def test_data_parallel_sampling_benchmark_smoke(tmp_path):
    """bench/sampler_gpus.py with 1 and 2 CPU processes through real `accelerate launch`: same samples."""
    from bench import sampler_gpus

    out = tmp_path / "gpus.json"
    result = sampler_gpus.main(["--build", "tiny", "--model", str(tmp_path / "tiny"), "--questions", "8",
                                "--batch", "2", "--k", "3", "--new_tokens", "8", "--gpus", "1,2",
                                "--work", str(tmp_path / "work"), "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    one, two = result["runs"]["1"], result["runs"]["2"]
    assert one["identical_to_baseline"] is None and two["identical_to_baseline"] is True
    assert (one["ranks"], two["ranks"]) == (1, 2)
    for run in (one, two):
        assert run["questions"] == 8 and run["tokens"] == 8 * 3 * 8  # forced length, read back from outputs
        assert run["tokens_per_s"] > 0 and run["speedup"] > 0
    assert one["speedup"] == 1.0
    samples = tmp_path / "work" / "p2" / "samples.jsonl"
    assert samples.is_file() and not list(samples.parent.glob("*.rank*"))  # shards and rank stats merged


def test_sft_benchmark_smoke(tmp_path):
    """bench/sft.py on CPU: a real llamafactory-cli LoRA run over a mix with 6-candidate select items."""
    from bench import sft

    result = sft.main(["--build", "tiny", "--model", str(tmp_path / "tiny"), "--work", str(tmp_path / "w"),
                       "--questions", "4", "--max_steps", "2", "--global_batch", "4", "--gpus", "0"])
    assert result["six_candidate_items"] == 4  # one 6-candidate select item per question
    assert set(result["mix"]) == {"qa", "cot", "refine", "select"} and all(result["mix"].values())
    assert 0 < result["longest_item_tokens"] <= result["cutoff_len"]
    (run,) = result["runs"]
    assert run["steps"] == 2 and run["samples"] == 8 and run["tokens_seen"] > 0 and run["tokens_per_s"] > 0


def test_sft_benchmark_compares_the_reference_with_the_plan(tmp_path):
    """bench/sft.py --compare on CPU: both recipes train on the same data; without a GPU the plan is R3V's
    recipe, so the first losses agree exactly (on a GPU they differ by how the loss is averaged)."""
    from bench import sft

    result = sft.main(["--build", "tiny", "--model", str(tmp_path / "tiny"), "--work", str(tmp_path / "w"),
                       "--questions", "4", "--max_steps", "3", "--global_batch", "4", "--gpus", "0", "--compare",
                       "--skip_steps", "1", "--json", str(tmp_path / "c.json")])
    ref, planned = result["reference"], result["planned"]
    assert ref["steps"] == planned["steps"] == 3 and ref["plan"] is None
    assert planned["plan"]["per_device"] == 2 and planned["plan"]["why"].startswith("no GPU")
    assert len(ref["first_losses"]) == 3 and ref["first_losses"] == planned["first_losses"]
    assert result["flops_per_token"] > 0 and all(r["steady_tokens_per_s"] is None or r["steady_tokens_per_s"] > 0
                                                 for r in (ref, planned))
    assert json.loads((tmp_path / "c.json").read_text())["speedup"] == result["speedup"]
