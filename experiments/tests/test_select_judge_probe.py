"""experiments/select_judge_probe.py: the judge-item probe of the GeoSynth research, end to end on CPU."""

import json

import pytest


@pytest.mark.slow  # ~25 s on 2 cores: a research probe, run with make test-slow
def test_select_judge_probe_smoke(tmp_path):
    """experiments/select_judge_probe.py end to end on CPU with the shipped small model (2 steps): the table's rows
    by candidate pattern, voting's accuracy per pattern, CoT Test@1 before and after; a rerun resumes."""
    from experiments.select_judge_probe import PATTERNS, main, pattern

    assert [pattern(a, "B") for a in (["B", "B", "B"], ["C", "B", "B"], ["B", "C", "D"], ["C", "B", "C"])] == list(PATTERNS)
    argv = ["--work", str(tmp_path / "w"), "--train", "16", "--test", "12", "--steps", "2", "--batch", "4",
            "--eval_every", "1", "--workers", "1", "--cot_questions", "3", "--answer_batch", "12",
            "--json", str(tmp_path / "probe.json")]
    result = main(argv)
    assert json.loads((tmp_path / "probe.json").read_text()) == json.loads(json.dumps(result))
    rows = {r["pattern"]: r for r in result["rows"]}
    assert list(rows) == [*PATTERNS, "all"] and rows["all"]["items"] == 12
    assert sum(rows[p]["items"] for p in PATTERNS) == 12
    assert rows["3 right"]["majority_vote"] in (0.0, 100.0) and rows["1 right, wrong majority"]["majority_vote"] == 0.0
    assert result["steps"] == 2 and set(result["cot_test_at_1"]) == {"base", "tuned"}
    for r in result["rows"]:
        assert 0 <= r["base"] <= 100 and 0 <= r["tuned"] <= 100
    assert main(argv)["rows"] == result["rows"]  # a rerun reuses the saves and the answers
    one = main([*argv, "--steps", "1", "--save", str(tmp_path / "saved")])
    assert one["steps"] == 1  # fewer --steps than the folder holds: that save, not the newest
    assert json.loads((tmp_path / "saved" / "select_judge_probe.json").read_text())["steps"] == 1
    assert 0 < one["saved"]["weight_bytes"] < 17e6 and (tmp_path / "saved" / "tokenizer.json").is_file()  # bf16
    with pytest.raises(SystemExit, match=r"probe_settings.json was written by a probe with other settings \(lr"):
        main([*argv, "--lr", "1e-3"])
    # --self_cot: the model's own greedy CoT answers join the judge items (self-distillation keeps its solving)
    own = main([*argv[:1], str(tmp_path / "own"), *argv[2:], "--self_cot", "4"])
    assert own["self_cot"] == 4 and 16 < own["train_items"] <= 16 + 4
    # --self_cot_temperature: one draw each from the model's distribution instead (greedy targets narrow it)
    with pytest.raises(SystemExit, match="self_cot_temperature"):
        main([*argv[:1], str(tmp_path / "own"), *argv[2:], "--self_cot", "4", "--self_cot_temperature", "1"])
    drawn = main([*argv[:1], str(tmp_path / "own_t"), *argv[2:], "--self_cot", "4", "--self_cot_temperature", "1"])
    assert drawn["self_cot_temperature"] == 1.0 and 16 < drawn["train_items"] <= 16 + 4
    # --steps 0: only the given model answers (the base column of the same items)
    only_argv = ["--work", str(tmp_path / "only"), "--train", "16", "--test", "12", "--steps", "0", "--workers", "1",
                 "--cot_questions", "3", "--answer_batch", "12"]
    only = main(only_argv)
    assert [r["base"] for r in only["rows"]] == [r["base"] for r in result["rows"]] and "tuned" not in only["rows"][0]
    assert only["steps"] == 0 and set(only["cot_test_at_1"]) == {"base"}
    with pytest.raises(SystemExit):
        main([*only_argv, "--save", str(tmp_path / "x")])
    greedy = [json.loads(x)["predictions"][0] for x in (tmp_path / "own" / "self_cot4.jsonl").read_text().splitlines()]
    sampled = [json.loads(x)["predictions"][0] for x in (tmp_path / "own_t" / "self_cot4_t1.jsonl").read_text().splitlines()]
    assert len(sampled) == 4 and sampled != greedy
