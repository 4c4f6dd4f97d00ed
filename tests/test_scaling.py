"""Self-selection scaling: the table from scripted records, exactly; then CPU runs on the warm tiny model."""

import json
import statistics
from pathlib import Path

import pytest
import yaml

import self_select_scaling
from core.config import ConfigError, PromptConfig, RunConfig, ScalingConfig, parse_args, to_dict
from core.io import read_json, read_jsonl
from data_gen.sources import load_problems
from eval.answers import extract_answer, is_correct
from eval.evaluate import gold_key
from eval.metrics import accuracy, draw_subsets, mv_at_n, pass_at_n_score
from eval.requests import select_items


def rec(qid, answers, gold):
    return {"id": qid, "predictions": [f"... Answer: {a}" for a in answers], "answers": answers,
            "correct": [a == gold for a in answers], "num_tokens": [3] * len(answers),
            "truncated": [False] * len(answers)}


def test_scaling_table_from_scripted_records():
    from self_select_scaling import scaling_table

    cfg = parse_args(ScalingConfig, ["max_select_num=3", "num_test_samples=3", "num_subsets=10"]).config
    # q1: samples A, B, A (gold A); q2: B, None, C (gold C).
    samples = [rec("q1", ["A", "B", "A"], "A"), rec("q2", ["B", None, "C"], "C")]
    greedy = [rec("q1", ["A"], "A"), rec("q2", ["B"], "C")]
    # With 3 samples every subset is enumerated: N=2 -> (0,1), (0,2), (1,2); N=3 -> (0,1,2).
    assert draw_subsets(3, 2, 10, cfg.seed + 2) == [(0, 1), (0, 2), (1, 2)]
    select = {(2, 0): [rec("q1", ["A"], "A"), rec("q2", ["B"], "C")],
              (2, 1): [rec("q1", ["A"], "A"), rec("q2", ["C"], "C")],
              (2, 2): [rec("q1", ["B"], "A"), rec("q2", ["C"], "C")],
              (3, 0): [rec("q1", ["A"], "A"), rec("q2", ["C"], "C")]}
    rows = scaling_table(samples, greedy, select, ["A", "C"], cfg)
    by_n = {r["N"]: r for r in rows}
    assert [r["N"] for r in rows] == [1, 2, 3]
    assert all(r["Test@1"] == 50.0 for r in rows)
    # N=1: single samples: q1 correct in 2/3 subsets, q2 in 1/3 -> mean (50 + 0 + 100) / 3.
    assert by_n[1]["SS@N"] == pytest.approx(50.0) and by_n[1]["MV@N"] == pytest.approx(50.0)
    # N=2 votes: (0,1): q1 A|B tie -> A (first) ok, q2 B ok? no (gold C) -> 50;
    #            (0,2): q1 A ok, q2 B|C tie -> B wrong -> 50; (1,2): q1 B|A -> B wrong, q2 None|C -> C ok -> 50.
    assert by_n[2]["MV@N"] == pytest.approx(50.0) and by_n[2]["MV_std"] == pytest.approx(0.0)
    # N=2 pass: (0,1): q1 yes q2 no -> 50; (0,2): 100; (1,2): 100 -> 83.33.
    assert by_n[2]["pass@N"] == pytest.approx(250 / 3)
    # N=2 self-select from the scripted select files: 50, 100, 50.
    assert by_n[2]["SS@N"] == pytest.approx(200 / 3)
    # N=3: vote q1 A (2 of 3) ok, q2 B|C tie -> B wrong -> 50; select both right -> 100.
    assert by_n[3]["MV@N"] == 50.0 and by_n[3]["SS@N"] == 100.0 and by_n[3]["pass@N"] == 100.0


def test_scaling_table_averages_random_subsets_exactly():
    """C(4, 2) = 6 > num_subsets = 2: two seeded random subsets per N; SS@N pairs with select file j."""
    from self_select_scaling import scaling_table

    cfg = parse_args(ScalingConfig, ["max_select_num=2", "num_test_samples=4", "num_subsets=2", "seed=7"]).config
    samples = [rec("q1", ["A", "B", None, "A"], "A"), rec("q2", ["C", "C", "D", None], "D"),
               rec("q3", [None, None, None, "B"], "B")]
    greedy = [rec("q1", ["A"], "A"), rec("q2", ["C"], "D"), rec("q3", [None], "B")]
    golds = ["A", "D", "B"]
    s1, s2 = draw_subsets(4, 1, 2, 8), draw_subsets(4, 2, 2, 9)
    assert len(s1) == len(s2) == 2
    select = {(2, 0): [rec("q1", ["A"], "A"), rec("q2", [None], "D"), rec("q3", ["B"], "B")],   # 2/3
              (2, 1): [rec("q1", ["B"], "A"), rec("q2", ["D"], "D"), rec("q3", ["C"], "B")]}   # 1/3
    rows = scaling_table(samples, greedy, select, golds, cfg)
    assert rows[0]["Test@1"] == pytest.approx(100 / 3)

    def by_hand_mv(indices):  # votes written out: None never votes, ties go to the first answer
        votes = []
        for r, gold in zip(samples, golds):
            picked = [r["answers"][i] for i in indices if r["answers"][i] is not None]
            votes.append(bool(picked) and max(picked, key=lambda a: (picked.count(a), -picked.index(a))) == gold)
        return 100 * sum(votes) / 3

    def by_hand_pass(indices):
        return 100 * sum(any(r["correct"][i] for i in indices) for r in samples) / 3

    for n, subsets in ((1, s1), (2, s2)):
        row = rows[n - 1]
        mv = [by_hand_mv(s) for s in subsets]
        ps = [by_hand_pass(s) for s in subsets]
        assert row["MV@N"] == pytest.approx(sum(mv) / 2) and row["MV_std"] == pytest.approx(abs(mv[0] - mv[1]) / 2)
        assert row["pass@N"] == pytest.approx(sum(ps) / 2)
        assert row["subsets"] == 2
    # SS@1: the single sample of each subset, so it equals MV@1 and pass@1 here (multiple choice).
    assert rows[0]["SS@N"] == pytest.approx(rows[0]["MV@N"]) == pytest.approx(rows[0]["pass@N"])
    assert rows[1]["SS@N"] == pytest.approx(50.0) and rows[1]["SS_std"] == pytest.approx(100 / 6)


# --------------------------------------------------------------------------- folders, run config, resume


def fake_run(tmp_path: Path, **data) -> Path:
    run = tmp_path / "outputs" / "myrun"
    cfg = parse_args(RunConfig, ["--base_model", str(tmp_path / "base-7b")]).config
    for key, value in data.items():
        setattr(cfg.data, key, value)
    (run / "iter_0").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    return run


def scfg(*argv: str) -> ScalingConfig:
    return parse_args(ScalingConfig, list(argv)).config


def test_run_folder_iteration_and_output_names(tmp_path):
    from self_select_scaling import ckpt_iteration, find_run_dir, output_dir

    run = fake_run(tmp_path)
    (run / "iter_2" / "model").mkdir(parents=True)
    cfg = scfg(f"ckpt_dir={run}/iter_2/model")
    assert find_run_dir(cfg) == run and ckpt_iteration(cfg, run) == 2
    dotted = scfg(f"ckpt_dir={run}/iter_0/../iter_2/model")
    assert find_run_dir(dotted) == run and ckpt_iteration(dotted, run) == 2
    assert output_dir(cfg, run) == run / "scaling_select_mix"  # the default: the select-mix model
    as_is = "train_select_mix=false"
    assert output_dir(scfg(f"ckpt_dir={run}/iter_2/model", as_is), run) == run / "scaling_iter_2"
    assert output_dir(scfg(f"run_dir={run}", "--base_model", "/m/Qwen2-VL-7B", as_is), run) == run / "scaling_Qwen2-VL-7B"
    # A checkpoint linked from the run folder into LLaMA-Factory/saves/ still finds its run.
    saves = tmp_path / "LLaMA-Factory" / "saves" / "myrun-iter3"
    saves.mkdir(parents=True)
    (run / "iter_3").mkdir()
    (run / "iter_3" / "model").symlink_to(saves)
    linked = scfg(f"ckpt_dir={run}/iter_3/model")
    assert find_run_dir(linked) == run and ckpt_iteration(linked, run) == 3
    # Outside a run folder: outputs/scaling-<checkpoint or base model name>.
    outside = tmp_path / "adapters" / "lora-a"
    outside.mkdir(parents=True)
    assert find_run_dir(scfg(f"ckpt_dir={outside}")) is None
    assert output_dir(scfg(f"ckpt_dir={outside}", as_is)) == Path("outputs/scaling-lora-a")
    assert output_dir(scfg("--base_model", "/m/Qwen2-VL-2B", as_is)) == Path("outputs/scaling-Qwen2-VL-2B")
    assert output_dir(scfg(f"out={tmp_path}/x", f"ckpt_dir={outside}")) == tmp_path / "x"
    with pytest.raises(ConfigError, match="run_dir='/no/such/run': no such folder"):
        find_run_dir(scfg("run_dir=/no/such/run"))


def test_options_left_at_defaults_come_from_the_run(tmp_path):
    from self_select_scaling import inherit_run_config

    run = fake_run(tmp_path, dataset="geoqa", geoqa_dir="/data/geoQA")
    cfg = scfg(f"run_dir={run}")
    assert inherit_run_config(cfg, run) == ["data.dataset", "data.geoqa_dir", "model.base_model"]
    assert (cfg.data.dataset, cfg.data.geoqa_dir) == ("geoqa", "/data/geoQA")
    assert cfg.model.base_model == str(tmp_path / "base-7b")
    # Anything set here wins, option by option; the rest still comes from the run.
    cfg = scfg(f"run_dir={run}", "--base_model", "/m/other", "data.test_limit=5")
    assert inherit_run_config(cfg, run) == ["data.dataset", "data.geoqa_dir"]
    assert cfg.model.base_model == "/m/other" and cfg.data.test_limit == 5
    assert (cfg.data.dataset, cfg.data.geoqa_dir) == ("geoqa", "/data/geoQA")


def test_the_run_s_retired_keys_and_plugins_are_inherited_in_today_s_spelling(tmp_path):
    """A run saved with mix.swap_select=4 (before it moved to experiments/) trains the select-mix model with
    the same sets, now spelled mix.extra_sets; the run's plugins come along with its mix options."""
    from self_select_scaling import inherit_run_config

    run = fake_run(tmp_path)
    tree = yaml.safe_load((run / "config.yaml").read_text())
    tree["mix"].update(swap_select=4, arith_check=False)
    tree["plugins"] = ["experiments.variants"]
    (run / "config.yaml").write_text(yaml.safe_dump(tree))
    cfg = scfg(f"run_dir={run}")
    taken = inherit_run_config(cfg, run)
    assert cfg.mix.extra_sets == {"swap": 4} and cfg.mix.filters == [] and "mix.extra_sets" in taken
    assert cfg.plugins == ["experiments.variants"] and "plugins" in taken


def test_a_default_set_on_the_command_line_is_not_replaced_by_the_run(tmp_path):
    from self_select_scaling import inherit_run_config

    run = fake_run(tmp_path)
    tree = yaml.safe_load((run / "config.yaml").read_text())
    tree["mix"].update(select_sets="natural", value_check=True)
    (run / "config.yaml").write_text(yaml.safe_dump(tree))
    args = parse_args(ScalingConfig, [f"run_dir={run}", "mix.select_sets=fixed"])
    assert args.keys == {"run_dir", "mix.select_sets"}
    taken = inherit_run_config(args.config, run, args.keys)
    assert "mix.value_check" in taken and "mix.select_sets" not in taken
    assert (args.config.mix.select_sets, args.config.mix.value_check) == ("fixed", True)
    plain = scfg(f"run_dir={run}")                      # not given: the run's value
    inherit_run_config(plain, run)
    assert plain.mix.select_sets == "natural"
    from_file = tmp_path / "s.yaml"
    from_file.write_text("mix:\n  select_sets: fixed\n")
    args = parse_args(ScalingConfig, ["--config", str(from_file), f"run_dir={run}"])
    assert "mix.select_sets" in args.keys
    inherit_run_config(args.config, run, args.keys)
    assert args.config.mix.select_sets == "fixed"


def test_select_mix_pool_stops_at_the_checkpoint_iteration(tmp_path):
    """The scaling script's pool (core.rundir.train_pool, not strict): iterations below `upto` that
    have train samples, by number; a checkpoint of iteration k pools iterations 0..k."""
    from core.rundir import train_pool

    for k in (0, 1, 2, 10):
        (tmp_path / f"iter_{k}").mkdir()
        (tmp_path / f"iter_{k}" / "train_samples.jsonl").write_text(json.dumps({"id": f"r{k}"}) + "\n")
    assert [k for k, _ in train_pool(tmp_path, 2, strict=False)] == [0, 1]
    assert [k for k, _ in train_pool(tmp_path, None, strict=False)] == [0, 1, 2, 10]  # by number, not by name
    assert train_pool(tmp_path, 3, strict=False)[2][1] == [{"id": "r2"}]
    with pytest.raises(FileNotFoundError, match=r"no iter_\*/train_samples.jsonl below iter_1"):
        train_pool(tmp_path / "iter_0", 1, strict=False)
    # the loop's pool (strict): every iteration below the one it is for, or an error naming the file
    assert [k for k, _ in train_pool(tmp_path, 3)] == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match=r"iter_3/train_samples.jsonl is missing: iteration 4 needs"):
        train_pool(tmp_path, 4)


# --------------------------------------------------------------------------- CPU runs on the warm tiny model


def scaling_argv(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--base_model", str(model_dir), "data.geosynth_test=6", "data.geosynth_train=8", "num_test_samples=4",
            "max_select_num=3", "num_subsets=2", "sample.max_new_tokens=48", "sample.batch_size=8", f"out={out}",
            "train_select_mix=false", *extra]


@pytest.fixture
def model_loads(monkeypatch):
    """The checkpoints the sampler loads (a spy around infer.model.load)."""
    from infer import model

    calls: list = []
    real = model.load

    def spy(cfg, checkpoint=None, *args, **kw):
        calls.append(checkpoint)
        return real(cfg, checkpoint, *args, **kw)

    monkeypatch.setattr(model, "load", spy)
    return calls


@pytest.fixture(scope="module")
def base_scaling(warm_tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling") / "base"
    rows = self_select_scaling.main(scfg(*scaling_argv(warm_tiny_model_dir, out)))
    return out, rows


def recompute(out: Path, seed: int = 42, num_subsets: int = 2) -> list[dict]:
    """MV@N / pass@N / SS@N / Test@1 from the saved JSONL files alone (answers re-extracted)."""
    test = load_problems(scfg("data.geosynth_test=6", "data.geosynth_train=8").data, "test", out, seed)
    by_id = {r["id"]: r for r in read_jsonl(out / "test_samples.jsonl")}
    samples = [by_id[p.id] for p in test]
    for p, r in zip(test, samples):  # the saved judgements are what the extractor says
        assert r["answers"] == [extract_answer(t, p.choices) for t in r["predictions"]]
        assert r["correct"] == [is_correct(t, p.answer, p.choices) for t in r["predictions"]]
    answers, correct = [r["answers"] for r in samples], [r["correct"] for r in samples]
    golds = [gold_key(p) for p in test]
    greedy = read_jsonl(out / "test_greedy.jsonl")
    rows = []
    for n in (1, 2, 3):
        subsets = draw_subsets(4, n, num_subsets, seed + n)
        if n == 1:
            ss = [accuracy([c[s[0]] for c in correct]) for s in subsets]
        else:
            ss = [accuracy([r["correct"][0] for r in read_jsonl(out / f"select_n{n}_s{j}.jsonl")])
                  for j in range(len(subsets))]
            assert not (out / f"select_n{n}_s{len(subsets)}.jsonl").exists()
        mv, mv_sd = mv_at_n(answers, golds, n, num_subsets, seed + n)
        ps, ps_sd = pass_at_n_score(correct, n, num_subsets, seed + n)
        rows.append({"N": n, "SS@N": statistics.fmean(ss), "SS_std": statistics.pstdev(ss), "MV@N": mv,
                     "MV_std": mv_sd, "pass@N": ps, "pass_std": ps_sd,
                     "Test@1": accuracy([r["correct"][0] for r in greedy]), "subsets": len(subsets)})
    return rows


def test_scaling_run_on_the_tiny_model(base_scaling):
    out, rows = base_scaling
    assert [r["N"] for r in rows] == [1, 2, 3] and [r["subsets"] for r in rows] == [2, 2, 2]
    saved = read_json(out / "scaling.json")
    assert saved["rows"] == rows and saved["checkpoint"] is None and saved["num_test"] == 6
    assert rows == recompute(out)  # exactly, from the files
    samples = read_jsonl(out / "test_samples.jsonl")
    assert len(samples) == 6 and all(len(r["predictions"]) == 4 for r in samples)
    assert sum(a is not None for r in samples for a in r["answers"]) > 0  # the warm model answers
    assert (out / "data" / "meta.json").is_file()  # no run folder: GeoSynth lives in the output folder
    assert {p.name for p in out.glob("select_n*.jsonl")} == {f"select_n{n}_s{j}.jsonl" for n in (2, 3) for j in (0, 1)}
    # Each select prompt lists the N samples of its subset, shuffled as eval.requests does it.
    test = load_problems(scfg("data.geosynth_test=6").data, "test", out, 42)
    by_id = {r["id"]: r for r in samples}
    for n in (2, 3):
        for j, subset in enumerate(draw_subsets(4, n, 2, 42 + n)):
            saved_prompts = {r["id"]: r["prompt"] for r in read_jsonl(out / f"select_n{n}_s{j}.jsonl")}
            expected = select_items(test, by_id, subset, 42, f"scaling-n{n}-s{j}", PromptConfig())
            assert {it.id: it.prompt for it in expected} == saved_prompts
            for it in expected:
                assert all(f"Model's Prediction {i}: " in it.prompt for i in range(1, n + 1))
                assert f"Model's Prediction {n + 1}: " not in it.prompt
    # Table and plot.
    md = (out / "scaling.md").read_text()
    assert "| N | SS@N |" in md and all(f"\n| {n} |" in md for n in (1, 2, 3))
    assert (out / "scaling.csv").read_text().splitlines()[0].startswith("N,SS@N,SS_std,MV@N")
    from PIL import Image

    with Image.open(out / "scaling.png") as img:
        img.load()
        assert img.size[0] > 300


def test_rerun_reuses_every_file_and_a_changed_config_is_refused(base_scaling, warm_tiny_model_dir, monkeypatch):
    out, rows = base_scaling
    files = sorted(out.glob("*.jsonl"))
    table = (out / "scaling.md").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    from infer import model

    def no_model(*args, **kw):
        raise AssertionError("the rerun loaded a model: something was sampled again")

    monkeypatch.setattr(model, "load", no_model)
    # The batch size does not change what a question's samples are, so it may change on a rerun.
    again = self_select_scaling.main(scfg(*scaling_argv(warm_tiny_model_dir, out, "sample.batch_size=3")))
    assert again == rows and read_json(out / "scaling.json")["rows"] == rows
    assert (out / "scaling.md").read_text() == table
    assert sorted(out.glob("*.jsonl")) == files and {p: p.stat().st_mtime_ns for p in files} == mtimes
    with pytest.raises(ConfigError, match=r"changed keys:\n  num_subsets: 2 -> 3"):
        self_select_scaling.main(scfg(*scaling_argv(warm_tiny_model_dir, out, "num_subsets=3")))
    with pytest.raises(ConfigError, match=r"changed keys:\n  ckpt_dir: '' -> '/"):
        self_select_scaling.main(scfg(*scaling_argv(warm_tiny_model_dir, out, f"ckpt_dir={warm_tiny_model_dir}")))


def test_a_lora_checkpoint_is_the_model_evaluated(base_scaling, warm_tiny_model_dir, tmp_path, model_loads):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(str(warm_tiny_model_dir))
    # init_lora_weights=False: random A and B, so the adapter really changes the outputs.
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    adapter = tmp_path / "adapter"
    lora.save_pretrained(str(adapter))
    out = tmp_path / "scaled"
    rows = self_select_scaling.main(scfg(*scaling_argv(warm_tiny_model_dir, out, f"ckpt_dir={adapter}")))
    assert model_loads and set(model_loads) == {str(adapter.resolve())}
    assert read_json(out / "scaling.json")["checkpoint"] == str(adapter.resolve())
    assert rows == recompute(out)
    base_out, _ = base_scaling
    for name in ("test_samples.jsonl", "select_n2_s0.jsonl"):
        assert [r["predictions"] for r in read_jsonl(out / name)] != [r["predictions"] for r in read_jsonl(base_out / name)]


def test_train_select_mix_trains_on_the_run_pool_and_evaluates_that_adapter(warm_sampled_run_dir, model_loads):
    run = warm_sampled_run_dir
    # No --base_model and no data options: both come from the run's config.yaml.
    argv = [f"run_dir={run}", "train_select_mix=true", "num_test_samples=3", "max_select_num=3", "num_subsets=1",
            "sample.max_new_tokens=32", "train.max_steps=2", "train.per_device_batch_size=4",
            "train.global_batch_size=4", "train.learning_rate=1e-2"]
    rows = self_select_scaling.main(scfg(*argv))
    out = run / "scaling_select_mix"
    assert [r["N"] for r in rows] == [1, 2, 3]
    saved = read_json(out / "scaling.json")
    adapter = out / "select_mix" / "model"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert read_json(out / "select_mix" / "train_done.json")["global_step"] == 2
    assert saved["checkpoint"] == str(adapter.resolve()) and set(model_loads) == {str(adapter.resolve())}
    assert saved["base_model"] == yaml.safe_load((run / "config.yaml").read_text())["model"]["base_model"]
    # The run's data: its 4 test questions, nothing generated into the output folder.
    assert saved["num_test"] == 4 and not (out / "data").exists()
    assert {r["id"] for r in read_jsonl(out / "test_samples.jsonl")} == \
        {r["id"] for r in read_jsonl(run / "iter_0" / "test_samples.jsonl")}
    # The mix has self-select items with N in 2..max_select_num candidates.
    data = json.loads((out / "select_mix" / "sft_data" / "r3v_select_mix.json").read_text())
    instruction = PromptConfig().select_instruction
    ns = [sum(f"Model's Prediction {i}: " in r["messages"][0]["content"] for i in range(1, 8))
          for r in data if r["messages"][0]["content"].endswith(instruction)]
    stats = read_json(out / "select_mix" / "sft_data" / "mix_stats.json")
    assert len(ns) == stats["kinds"]["select"] > 0
    assert set(ns) == {2, 3}, ns

