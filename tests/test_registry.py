"""core/registry.py: variants by name, and plugins that register more when imported.

Registries are process-global and experiments/ tests register the research variants into them, so
the names used here are ones no module registers."""

import pytest

from core.config import ConfigError, MixConfig, PromptConfig, RunConfig, parse_args
from core.registry import Registry, load_plugins
from mix.reflection import SELECT_SETS, SELECT_TARGETS, build_mix


def test_register_get_and_names():
    reg = Registry("mix.thing")

    @reg.register("b")
    def b():
        return "b"

    reg.register("a")(len)
    assert reg.get("b") is b and reg.names() == ["a", "b"] and "a" in reg and "c" not in reg
    reg.register("b")(b)  # the same function again (a module imported twice) is fine
    with pytest.raises(ValueError, match="mix.thing: 'b' is registered already"):
        reg.register("b")(len)
    with pytest.raises(ConfigError, match=r"mix.thing='c' is not registered \(known: a, b\); a plugin's variant "
                                          r"needs its module in plugins=\[\.\.\.\]"):
        reg.get("c")


def test_the_product_registers_r3v_own_variants():
    assert "answer" in SELECT_TARGETS and {"fixed", "natural"} <= set(SELECT_SETS.names())


def test_plugins_are_a_list_key_saved_with_the_run():
    cfg = parse_args(RunConfig, ["plugins=[my.plugin, other]"]).config
    assert cfg.plugins == ["my.plugin", "other"] and RunConfig().plugins == []


def test_a_plugin_module_registers_a_target_that_the_mix_then_uses(tmp_path, monkeypatch):
    (tmp_path / "r3v_test_plugin.py").write_text(
        "from mix.reflection import SELECT_TARGETS\n\n"
        "@SELECT_TARGETS.register('test-plugin-shout')\n"
        "def shout(problem, chosen):\n"
        "    return f'ANSWER: {problem.answer} (of {len(chosen)})'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["r3v_test_plugin"])
    from data_gen.problem import Problem

    p = Problem("p0", "/i.png", "x?", ("1", "2", "3"), "B")
    long = " because " + "x" * 60
    pool = [(0, [{"id": "p0", "predictions": [f"a{long} Answer: B", f"b{long} Answer: B", f"c{long} Answer: C"],
                  "answers": ["B", "B", "C"], "correct": [True, True, False], "truncated": [False] * 3}])]
    items, _ = build_mix([p], pool, 1, 0, MixConfig(select_target="test-plugin-shout", include_qa=False), PromptConfig())
    assert [it["response"] for it in items if it["kind"] == "select"] == ["ANSWER: B (of 3)"]


def test_a_missing_plugin_module_is_named(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"plugins: no module 'no_such_plugin_mod' to import"):
        load_plugins(["no_such_plugin_mod"])
    (tmp_path / "r3v_broken_plugin.py").write_text("import no_such_dependency_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here"):  # the plugin's own error, not ours
        load_plugins(["r3v_broken_plugin"])
