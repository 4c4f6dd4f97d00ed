"""Config: defaults < YAML < CLI, seed aliases, unknown keys and bad values rejected with the fix."""

import pytest

from core.config import ConfigError, RunConfig, diff_configs, parse_args, to_dict


def test_defaults():
    cfg = parse_args(RunConfig, []).config
    assert cfg.sample.temperature == 0.9 and cfg.sample.top_p == 0.95 and cfg.sample.top_k == 50
    assert cfg.train.learning_rate == 3e-5 and cfg.train.global_batch_size == 64
    assert cfg.data.dataset == "geosynth"


def test_precedence_default_yaml_cli(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("seed: 7\nsample:\n  temperature: 0.5\n  top_k: 20\ntrain:\n  overrides: {logging_steps: 3}\n")
    cfg = parse_args(RunConfig, ["--config", str(yml), "sample.temperature=1.0",
                                 "--sample.max_new_tokens", "64"]).config
    assert cfg.seed == 7                       # YAML over default
    assert cfg.sample.top_k == 20              # YAML over default
    assert cfg.sample.temperature == 1.0       # CLI over YAML
    assert cfg.sample.max_new_tokens == 64     # --dotted.key VALUE form
    assert cfg.train.overrides == {"logging_steps": 3}


def test_seed_flags_are_aliases():
    args = parse_args(RunConfig, ["--base_model", "/m", "--geoqa_dir", "/d", "--total_iters", "2",
                                  "--batch_size", "4", "--restart"], flags={"restart": "start over"})
    cfg = args.config
    assert (cfg.model.base_model, cfg.data.geoqa_dir, cfg.total_iters, cfg.sample.batch_size) == ("/m", "/d", 2, 4)
    assert cfg.data.dataset == "geoqa"  # --geoqa_dir means GeoQA data
    assert args.flags == {"restart"}


@pytest.mark.parametrize("argv,fragment", [
    (["sample.temprature=1"], "unknown key 'sample.temprature'. Valid keys:"),
    (["--nope", "1"], "unknown key 'nope'"),
    (["sample.top_k=abc"], "sample.top_k='abc' is not a valid int"),
    (["mix.include_qa=maybe"], "is not a valid bool"),
    (["--seed"], "--seed needs a value"),
    (["stray"], "cannot read 'stray'"),
], ids=["typo", "unknown-flag", "bad-int", "bad-bool", "missing-value", "stray-token"])
def test_bad_command_lines(argv, fragment):
    with pytest.raises(ConfigError) as err:
        parse_args(RunConfig, argv)
    assert fragment in str(err.value)


def test_unknown_yaml_key_lists_valid_ones(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("sample:\n  temp: 1\n")
    with pytest.raises(ConfigError) as err:
        parse_args(RunConfig, ["--config", str(yml)])
    assert str(yml) in str(err.value) and "sample.temperature" in str(err.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        parse_args(RunConfig, ["--config", str(tmp_path / "none.yaml")])


def test_help_lists_every_key_on_one_line_by_stage_the_r3v_keys_first():
    import subprocess
    import sys
    from pathlib import Path

    from core.config import R3V_KEYS, STAGES, ScalingConfig, field_help

    repo = Path(__file__).resolve().parents[1]
    for script, cls in (("run.py", RunConfig), ("self_select_scaling.py", ScalingConfig)):
        out = subprocess.run([sys.executable, str(repo / script), "--help"], capture_output=True, text=True,
                             check=True).stdout
        lines = out.splitlines()
        assert len(lines) <= 130 and max(len(line) for line in lines) <= 120, script
        assert "--base_model = model.base_model" in out
        listed = [line.split("=")[0].strip() for line in lines if line.startswith("  ") and "=" in line.split()[0]]
        keys = field_help(cls)
        assert sorted(listed) == sorted(keys)  # every key once
        titles = [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")]
        assert titles == [t for s, t in STAGES.items() if any((k.split(".")[0] if "." in k else "") == s for k in keys)]
        for title in titles:  # in each stage, the R3V method's keys come first
            block = out.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
            r3v = [line.split("=")[0].strip() in R3V_KEYS for line in block]
            assert r3v == sorted(r3v, reverse=True), title
    whole = subprocess.run([sys.executable, str(repo / "run.py"), "--help", "mix.select_target"], capture_output=True,
                           text=True, check=True).stdout
    assert whole.startswith("mix.select_target (str, default 'answer')\n    Self-select target: answer")


def test_diff_configs_names_changed_keys():
    a = to_dict(RunConfig())
    b = to_dict(parse_args(RunConfig, ["sample.top_k=5", "seed=1"]).config)
    assert diff_configs(a, b) == ["sample.top_k: 50 -> 5", "seed: 42 -> 1"]


def test_saved_config_without_a_newer_option_still_resumes(tmp_path):
    import yaml

    from core.config import save_or_check

    saved = tmp_path / "config.yaml"
    old = to_dict(RunConfig())
    del old["mix"]["cot_per_question"]  # a run folder written before the option existed
    saved.write_text(yaml.safe_dump(old))
    defaults = to_dict(RunConfig())
    assert save_or_check(saved, to_dict(RunConfig()), (), "run", "fix it", defaults=defaults)
    assert yaml.safe_load(saved.read_text())["mix"]["cot_per_question"] == 1
    # a non-default value for the missing key is a change, and so is any other key
    saved.write_text(yaml.safe_dump(old))
    changed = RunConfig()
    changed.mix.cot_per_question = 2
    with pytest.raises(ConfigError, match=r"mix.cot_per_question: 1 -> 2"):
        save_or_check(saved, to_dict(changed), (), "run", "fix it", defaults=defaults)


# --------------------------------------------------------------------------- keys that left for experiments/


def test_retired_keys_at_their_off_value_are_ignored_anything_else_gets_its_new_spelling(tmp_path):
    from core.config import apply_yaml

    assert parse_args(RunConfig, ["mix.swap_select=0", "mix.arith_check=false"]).config == RunConfig()
    with pytest.raises(ConfigError, match=r"mix.swap_select=4 moved to experiments/ .*write it as "
                                          r"plugins=\[experiments.variants\] mix.extra_sets=\{swap: 4\}"):
        parse_args(RunConfig, ["mix.swap_select=4"])
    yml = tmp_path / "c.yaml"
    yml.write_text("mix:\n  arith_check: true\n")
    with pytest.raises(ConfigError, match=r"c.yaml: mix.arith_check=True moved .* mix.filters=\[arith\]"):
        apply_yaml(RunConfig(), yml)
    # a run folder's own config.yaml is read in today's spelling (eval.evaluate reads old folders)
    cfg = RunConfig()
    apply_yaml(cfg, yml, saved=True)
    assert cfg.mix.filters == ["arith"]


def test_dict_fields_are_one_value_in_yaml_and_in_diffs(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("mix:\n  extra_sets: {swap: 4}\n  filters: [arith]\n")
    cfg = parse_args(RunConfig, ["--config", str(yml)]).config
    assert cfg.mix.extra_sets == {"swap": 4} and cfg.mix.filters == ["arith"]
    changed = diff_configs(to_dict(RunConfig()), to_dict(cfg))
    assert changed == ["mix.extra_sets: {} -> {'swap': 4}", "mix.filters: [] -> ['arith']"]


def test_a_saved_folder_with_a_retired_key_resumes_in_the_new_spelling_only(tmp_path):
    import yaml

    from core.config import save_or_check

    old = to_dict(RunConfig())
    del old["mix"]["extra_sets"], old["mix"]["filters"], old["plugins"]
    saved = tmp_path / "config.yaml"

    def resume(argv):
        return save_or_check(saved, to_dict(parse_args(RunConfig, argv).config), ("plugins",), "outputs/run",
                             "Rerun with the same options.", defaults=to_dict(RunConfig()))

    saved.write_text(yaml.safe_dump({**old, "mix": {**old["mix"], "swap_select": 0, "arith_check": False}}))
    assert resume([]) is True  # what every folder saved before holds: resumes as it is
    assert "swap_select" not in yaml.safe_load(saved.read_text())["mix"]  # saved again in today's keys
    saved.write_text(yaml.safe_dump({**old, "mix": {**old["mix"], "swap_select": 4, "arith_check": True}}))
    with pytest.raises(ConfigError) as refused:
        resume([])
    message = str(refused.value)
    assert "changed keys:\n  mix.extra_sets: {'swap': 4} -> {}\n  mix.filters: ['arith'] -> []" in message
    assert (f"{saved} holds mix.swap_select=4 moved to experiments/ (experiments/README.md); write it as "
            "plugins=[experiments.variants] mix.extra_sets={swap: 4}.") in message
    assert "holds mix.arith_check=True moved to experiments/" in message and "mix.filters=[arith]." in message
    assert resume(["plugins=[experiments.variants]", "mix.extra_sets={swap: 4}", "mix.filters=[arith]"]) is True


def test_a_folder_saved_with_a_former_default_is_told_how_to_resume(tmp_path):
    """sample.max_new_tokens was 512 by default before the defaults became the original's (200); mix keys
    added since read as what runs did before (they dropped answerless and truncated candidates)."""
    import yaml

    from core.config import save_or_check

    old = to_dict(RunConfig())
    del old["mix"]["drop_no_answer"], old["mix"]["drop_truncated"], old["mix"]["dedupe"]
    old["sample"]["max_new_tokens"] = 512
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(old))

    def resume(argv):
        return save_or_check(saved, to_dict(parse_args(RunConfig, argv).config), (), "outputs/run", "Rerun.",
                             defaults=to_dict(RunConfig()))

    with pytest.raises(ConfigError) as refused:
        resume([])
    message = str(refused.value)
    assert "sample.max_new_tokens: 512 -> 200" in message and "pass sample.max_new_tokens=512 to resume it" in message
    assert "mix.drop_no_answer: True -> False" in message  # what the folder's runs did
    assert resume(["sample.max_new_tokens=512", "mix.drop_no_answer=true", "mix.drop_truncated=true",
                   "mix.dedupe=true"]) is True
