"""The import rules of docs/architecture.md, read from the code (an AST walk over every project file).

Folders import only downward: core imports nothing of the project; data_gen, infer and train import
core; eval imports core, data_gen and infer; mix imports core, data_gen and eval. The entry scripts,
bench/, tests/ and conftest.py may import any product folder. No file outside experiments/ imports
experiments/ (the product never depends on the research code; experiments/ may import the product).
The project keeps its own copy of these rules: the shared layers script is not a test dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("core", "data_gen", "infer", "train", "eval", "mix")
ALLOWED = {"core": set(), "data_gen": {"core"}, "infer": {"core"}, "train": {"core"},
           "eval": {"core", "data_gen", "infer"}, "mix": {"core", "data_gen", "eval"}}
SKIP = {".git", ".venv", "venv", "__pycache__", "outputs", "LLaMA-Factory", "node_modules"}


def project_files():
    """Every .py file of the project, without the environment, VCS data and generated folders."""
    stack = [ROOT]
    while stack:
        folder = stack.pop()
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                if path.name not in SKIP and not path.name.startswith("."):
                    stack.append(path)
            elif path.suffix == ".py":
                yield path.relative_to(ROOT)


def imported_modules(path: Path) -> list[str]:
    """Absolute imports of a file (relative imports stay inside their folder)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def folder_edges() -> tuple[dict[str, set[str]], list[str]]:
    """(product folder -> product folders it imports, files outside experiments/ that import it)."""
    edges, into_experiments = defaultdict(set), []
    for path in project_files():
        unit = path.parts[0]
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "experiments" and unit != "experiments":
                into_experiments.append(f"{path} imports {name}")
            if unit in PRODUCT and top in PRODUCT and top != unit:
                edges[unit].add(top)
    return edges, into_experiments


def test_walk_sees_the_project_and_skips_the_environment():
    files = {str(p) for p in project_files()}
    assert {"run.py", "core/config.py", "tests/test_layers.py", "experiments/pretrain.py"} <= files
    assert not any(f.startswith((".venv", ".git")) for f in files)


def test_nothing_outside_experiments_imports_it():
    _, into_experiments = folder_edges()
    assert into_experiments == [], "the product must not depend on experiments/: " + "; ".join(into_experiments)


def test_product_folders_import_only_downward():
    edges, _ = folder_edges()
    against = sorted(f"{u} -> {t}" for u, targets in edges.items() for t in targets if t not in ALLOWED[u])
    assert against == [], f"imports against the layer rules: {against} (allowed: {ALLOWED})"
    assert set(edges) >= {"data_gen", "eval", "infer", "mix", "train"}  # the walk sees every layer's imports


def test_the_rules_leave_no_cycle():
    """Downward-only rules cannot form a cycle; checked on the rule table itself, so editing it cannot
    slip one in."""
    order = []
    def visit(unit, path=()):
        assert unit not in path, f"cycle in ALLOWED: {' -> '.join(path + (unit,))}"
        for below in sorted(ALLOWED[unit]):
            visit(below, path + (unit,))
        if unit not in order:
            order.append(unit)
    for unit in PRODUCT:
        visit(unit)
    assert order[0] == "core"
