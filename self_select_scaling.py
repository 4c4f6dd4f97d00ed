"""Test-time self-selection scaling: SS@N (the model picks among N of its rationales) vs MV@N.

    python self_select_scaling.py --ckpt_dir outputs/<run>/iter_3/model      # the run's data + base model
    python self_select_scaling.py --base_model /models/Qwen2-VL-7B-Instruct --geoqa_dir geoQA-data \\
        --batch_size 8 --ckpt_dir outputs/<run>/iter_3/model --max_select_num 6
    python self_select_scaling.py ... --train_select_mix false   # evaluate the checkpoint as it is
    python self_select_scaling.py ... --dry_run                  # the resolved config and the plan; loads no model

Model. By default the original's workflow (REFERENCE.md §5): the mixed-N select model is trained
first, a fresh LoRA on the base model from the run's train samples of iterations 0..N, where N is
the iteration of --ckpt_dir (<run>/iter_N/...), or the run's last iteration with only --run_dir. Its
mix is the usual one (QA, CoT, refine) with self-select items of N = 2..max_select_num candidates,
mix.select_per_n (3) per question and N. That adapter is the model evaluated; the checkpoint itself
only names the run and N, as in the original. The run must have sampled the train set in iteration
N too (run.py does by default; a missing file is named with the command that makes it).
With --train_select_mix false the checkpoint in --ckpt_dir is loaded and evaluated as it is (a LoRA
adapter on --base_model, or a full model folder); empty = the base model.

Run folder. --run_dir, or the self-training folder above --ckpt_dir (the one with config.yaml and
iter_0/). Every option of the sections data, model, prompt, sample, mix and train that is not set
here is taken from the run's config.yaml, so a checkpoint is evaluated on its run's data, with its
base model, prompts and sampling settings, and --train_select_mix uses its mix options (the command
line still wins, also when it sets a default: mix.select_sets=fixed trains the reference's select
sets for a run made with natural ones); GeoSynth data is then read from the run's data/ folder. Without a
run folder, GeoSynth is generated into <out>/data (GeoSynth items depend only on seed, split and
index, so a run with the same seed has the same test questions).

Output folder (out=, else): <run>/scaling_<name> with a run folder, else outputs/scaling-<name>,
where <name> is select_mix (the default workflow), else the checkpoint's iteration folder (iter_3
for .../iter_3/model) or folder name, else the base model's folder name.

Metrics. The test set is sampled M times (num_test_samples, default 10; per-question seeds from
seed). For N = 1..max_select_num the report gives MV@N (majority vote), SS@N (the model reads N
of its samples, shuffled, and answers greedily), pass@N (oracle: any of the N correct) and Test@1
(greedy CoT). For each N every number averages over the same seeded N-subsets of the M sample
indices (eval.metrics.draw_subsets with seed + N; all subsets when there are no more than
num_subsets), applied to every question at once; the _std columns are the population std over
subsets. SS@1 is the accuracy of the single sample of each subset (there is nothing to select),
so SS@1 = MV@1 = pass@1 for multiple choice; the model selects from N = 2.

No answer: an unparseable sample never counts as a vote or as correct (a question whose N samples
all lack an answer scores wrong in MV@N); an unparseable select answer is wrong. Ties in the vote
go to the tied answer that comes first in sample order within the subset (eval/metrics.py). Every
number is recomputable from the saved files: test_samples.jsonl, test_greedy.jsonl and
select_n{N}_s{j}.jsonl (subset j of draw_subsets for N). Output: scaling.md / .csv / .json and
scaling.png in the output folder.

Resume. Rerunning the same command reuses every finished file (nothing is sampled or trained
again). The effective config is saved as scaling_config.yaml; a rerun with a config that would
change the results is refused with the changed keys (out, the batch size and process counts may
change, and max_select_num too without --train_select_mix: other N add their own files).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import statistics
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import yaml

from core import rundir
from core.checks import Checks
from core.cli import doing, run_command, working_in
from core.config import (RESULT_NEUTRAL, SAVED_CONFIG_FIX, ConfigError, ScalingConfig, check_values, config_changes,
                         load_yaml, migrate_saved, parse_args, to_dict)
from core.io import FileError, atomic_write_json
from core.log import get_logger, held_for_file
from core.nodes import node_setup
from core.registry import load_plugins
from data_gen.problem import Problem
from data_gen.sources import check_data_named, generated_in_run, load_problems
from eval.evaluate import gold_key
from eval.judge import golds, sample_and_judge
from eval.metrics import accuracy, draw_subsets, mv_at_n, pass_at_n_score
from eval.report import plot_lines, write_table
from eval.requests import cot_items, select_items
from infer.model import check_checkpoint, check_model_dir
from infer.sample import num_processes
from mix.llamafactory import write_dataset
from mix.reflection import build_mix
from train.sft import DONE_FILE, MODEL_DIR, missing_model_files

log = get_logger("scaling")

SCALING_CONFIG_FILE = "scaling_config.yaml"
# Sections whose fields, when left at their defaults here, are taken from the run's config.yaml.
INHERITED_SECTIONS = ("data", "model", "prompt", "sample", "mix", "train")
# Keys that may change on a rerun: they do not change what the finished files hold.
RESUMABLE_CHANGES = ("out", *RESULT_NEUTRAL)
SEED_COMMAND = ("python self_select_scaling.py --base_model /models/Qwen2-VL-7B-Instruct --geoqa_dir geoQA-data "
                "--batch_size 8 --ckpt_dir outputs/<run>/iter_3/model --max_select_num 6")


def _abs(path: str | Path) -> Path:
    """Absolute, with `..` folded, symlinks kept (a checkpoint may be a link into LLaMA-Factory/saves/)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def find_run_dir(cfg: ScalingConfig) -> Path | None:
    """The self-training run folder: --run_dir, or the folder above <run>/iter_k/checkpoint."""
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir).expanduser()
        if not run_dir.is_dir():
            raise ConfigError(f"run_dir={cfg.run_dir!r}: no such folder; pass the self-training run "
                              f"folder (the one with config.yaml and iter_0/, iter_1/, ...).")
        return _abs(run_dir)
    if cfg.ckpt_dir:
        # The path as given first (the link, if it is one), then resolved.
        for ckpt in dict.fromkeys((_abs(cfg.ckpt_dir), Path(cfg.ckpt_dir).expanduser().resolve())):
            for parent in ckpt.parents:
                if rundir.is_run_dir(parent):
                    return parent
    return None


def ckpt_iteration(cfg: ScalingConfig, run_dir: Path | None) -> int | None:
    """k when --ckpt_dir lies in <run_dir>/iter_k/ (the reference read N from `iter(\\d+)`)."""
    if not cfg.ckpt_dir or run_dir is None:
        return None
    for ckpt in (_abs(cfg.ckpt_dir), Path(cfg.ckpt_dir).expanduser().resolve()):
        for base in (run_dir, run_dir.resolve()):
            try:
                first = ckpt.relative_to(base).parts[0]
            except (ValueError, IndexError):
                continue
            k = rundir.iteration_of(first)
            if k is not None:
                return k
    return None


def model_name(cfg: ScalingConfig) -> str:
    """The <name> of the default output folder (see the module docstring)."""
    if cfg.train_select_mix:
        return "select_mix"
    if cfg.ckpt_dir:
        ckpt = _abs(cfg.ckpt_dir)
        # LLaMA-Factory output folders are <iter dir>/model: name them by the iteration.
        return ckpt.parent.name if ckpt.name == "model" else ckpt.name
    return _abs(cfg.model.base_model).name


def output_dir(cfg: ScalingConfig, run_dir: Path | None = None) -> Path:
    if cfg.out:
        return Path(cfg.out)
    if run_dir is not None:
        return run_dir / f"scaling_{model_name(cfg)}"
    return Path("outputs") / f"scaling-{model_name(cfg)}"


def inherit_run_config(cfg: ScalingConfig, run_dir: Path, given: Collection[str] = ()) -> list[str]:
    """Take from the run's config.yaml every field of the inherited sections that is still at its
    default here and not in `given` (the keys the command line or a --config file set, even to the
    default value); returns the dotted keys taken."""
    saved = run_dir / rundir.RUN_CONFIG_FILE
    if not saved.is_file():
        return []
    tree, _ = migrate_saved(load_yaml(saved, SAVED_CONFIG_FIX))  # in today's keys
    taken = []
    for section in INHERITED_SECTIONS:
        current, theirs = getattr(cfg, section), tree.get(section)
        if not isinstance(theirs, dict):
            continue
        default = type(current)()
        for f in dataclasses.fields(current):
            if f.name in theirs and f"{section}.{f.name}" not in given \
                    and getattr(current, f.name) == getattr(default, f.name) \
                    and theirs[f.name] != getattr(current, f.name):
                setattr(current, f.name, theirs[f.name])
                taken.append(f"{section}.{f.name}")
    # The run's plugins too, beside any given here: its mix options may name their variants.
    more = [name for name in tree.get("plugins") or [] if name not in cfg.plugins]
    if more:
        cfg.plugins = [*cfg.plugins, *more]
        taken.append("plugins")
    return taken


def effective_config(cfg: ScalingConfig) -> dict:
    """The config as saved in the output folder, with paths made absolute (so ./x and x compare equal)."""
    d = to_dict(cfg)
    for section, key in ((None, "ckpt_dir"), (None, "run_dir"), ("model", "base_model"), ("data", "geoqa_dir")):
        tree = d[section] if section else d
        if tree[key]:
            tree[key] = str(_abs(tree[key]))
    return d


def open_output(cfg: ScalingConfig, out: Path) -> None:
    """Attach the log file and save the config, or refuse to reuse files that another config produced."""
    allowed = RESUMABLE_CHANGES + (() if cfg.train_select_mix else ("max_select_num",))
    rundir.open_folder(out, SCALING_CONFIG_FILE, effective_config(cfg), defaults=effective_config(ScalingConfig()),
                       allowed=allowed, log_file="scaling.log",
                       fix=f"Rerun with the same options to resume, pass out=NEW_FOLDER, or delete {out} to start over.")


def pool_iterations(cfg: ScalingConfig, run_dir: Path) -> range:
    """The iterations whose train samples the select-mix model trains on: 0..N for a checkpoint of
    iteration N (REFERENCE.md §5: the original reads N from --ckpt_dir), else 0..the run's last."""
    last = ckpt_iteration(cfg, run_dir)
    if last is None:
        last = max((k for p in run_dir.glob("iter_*") if p.is_dir() and (k := rundir.iteration_of(p.name)) is not None),
                   default=0)
    return range(last + 1)


def check_select_pool(cfg: ScalingConfig, run_dir: Path | None) -> None:
    """With train_select_mix: the run folder and the train samples of every pool iteration are there."""
    if not cfg.train_select_mix:
        return
    if run_dir is None:
        raise ConfigError("the select-mix model (train_select_mix=true, the default) trains on a self-training run's "
                          "train samples: pass --ckpt_dir outputs/<run>/iter_N/model or run_dir=PATH (the folder with "
                          "iter_0/, iter_1/, ...), or train_select_mix=false to evaluate --ckpt_dir (or the base model) "
                          "as it is.")
    ks = pool_iterations(cfg, run_dir)
    missing = [str(rundir.iter_dir(run_dir, k) / rundir.TRAIN_SAMPLES) for k in ks
               if not (rundir.iter_dir(run_dir, k) / rundir.TRAIN_SAMPLES).is_file()]
    if missing:
        raise FileError(f"the select-mix model trains on the train samples of iterations 0..{ks[-1]} of {run_dir}, but "
                        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing (run.py samples the last "
                        f"iteration's train set only with sample_last_train=true). Make them with: python run.py "
                        f"--config {run_dir / rundir.RUN_CONFIG_FILE} sample_last_train=true (it resumes the run and "
                        f"samples only what is missing), or pass train_select_mix=false to evaluate the checkpoint as "
                        f"it is.")


def train_select_model(cfg: ScalingConfig, out: Path, run_dir: Path | None, train_problems) -> str:
    """Train the mixed-N select model from the run's train-sample pool (a fresh adapter on the base)."""
    from train.sft import train

    assert run_dir is not None  # resolve() checked the run folder and its pool (check_select_pool)
    pool = rundir.train_pool(run_dir, len(pool_iterations(cfg, run_dir)))
    log.info("select-mix pool: train samples of iterations %s", [k for k, _ in pool])
    work = out / "select_mix"
    lacks = missing_model_files(work / MODEL_DIR, cfg.train.finetuning_type) if (work / DONE_FILE).is_file() else None
    if lacks:
        raise ConfigError(f"{work / DONE_FILE} marks the select-mix model trained, but {lacks}: delete "
                          f"{work / DONE_FILE} and rerun to train it again.")
    if not (work / DONE_FILE).is_file():
        mix_cfg = dataclasses.replace(cfg.mix, select_mixed_n=True, max_select_n=cfg.max_select_num)
        items, stats = build_mix(train_problems, pool, pool[-1][0] + 1, cfg.seed, mix_cfg, cfg.prompt)
        log.info("select-mix data: %s", stats["kinds"])
        write_dataset(items, work / "sft_data", "r3v_select_mix")
        atomic_write_json(work / "sft_data" / "mix_stats.json", stats)
        train(cfg.train, model_path=cfg.model.base_model, dataset_dir=work / "sft_data",
              dataset_name="r3v_select_mix", iter_dir=work, seed=cfg.seed,
              image_min_pixels=cfg.model.min_pixels, image_max_pixels=cfg.model.max_pixels)
    return str((work / MODEL_DIR).resolve())


def _mean_std(scores: list[float]) -> tuple[float, float]:
    # The same estimator as eval.metrics.subset_estimate, so every column is computed alike.
    return statistics.fmean(scores), statistics.pstdev(scores)


def scaling_table(samples: list[dict], greedy: list[dict], select: dict[tuple[int, int], list[dict]],
                  golds: list, cfg: ScalingConfig) -> list[dict]:
    """One row per N from the saved records (recomputable from the files alone).

    samples[i] and golds[i] belong to the same question; select[(N, j)] holds the select records
    of subset j of draw_subsets(M, N, num_subsets, seed + N) for N >= 2.
    """
    answers = [r["answers"] for r in samples]
    correct = [r["correct"] for r in samples]
    m = len(answers[0])
    test1 = accuracy([r["correct"][0] for r in greedy])
    rows = []
    for n in range(1, cfg.max_select_num + 1):
        mv, mv_sd = mv_at_n(answers, golds, n, cfg.num_subsets, cfg.seed + n)
        oracle, oracle_sd = pass_at_n_score(correct, n, cfg.num_subsets, cfg.seed + n)
        subsets = draw_subsets(m, n, cfg.num_subsets, cfg.seed + n)
        if n == 1:  # nothing to select: the single sample's accuracy, over the same subsets as MV@1
            ss_scores = [accuracy([c[s[0]] for c in correct]) for s in subsets]
        else:
            ss_scores = [accuracy([r["correct"][0] for r in select[(n, j)]]) for j in range(len(subsets))]
        ss, ss_sd = _mean_std(ss_scores)
        rows.append({"N": n, "SS@N": ss, "SS_std": ss_sd, "MV@N": mv, "MV_std": mv_sd,
                     "pass@N": oracle, "pass_std": oracle_sd, "Test@1": test1, "subsets": len(subsets)})
    return rows


@dataclass
class Resolved:
    """A scaling config with the run's options filled in, checked: what a run needs before it starts."""
    cfg: ScalingConfig
    run_dir: Path | None  # the self-training run folder, if any
    taken: list[str]  # the keys taken from its config.yaml
    checks: Checks  # every input check, and what failed
    test: list[Problem] | None  # the data, loaded with every image checked (None: GeoSynth not yet generated)
    train: list[Problem] | None  # with train_select_mix only


def check_select_num(cfg: ScalingConfig) -> None:
    if cfg.num_test_samples < cfg.max_select_num:
        raise ConfigError(f"num_test_samples={cfg.num_test_samples} < max_select_num={cfg.max_select_num}: "
                          f"N candidates need at least N samples; raise num_test_samples.")


def check_ckpt(cfg: ScalingConfig) -> None:
    """The checkpoint evaluated as it is (train_select_mix=false) can be loaded on the base model."""
    if cfg.ckpt_dir and not cfg.train_select_mix:
        check_checkpoint(cfg.ckpt_dir, "ckpt_dir")


def resolve(cfg: ScalingConfig, given: Collection[str] = ()) -> Resolved:
    """Fill in the run's options and run every input check (config values, the run folder, plugins, the
    model and checkpoint folders, the data with its images), failures kept together in `checks`. Writes
    nothing and loads no model. `given`: the keys the command line or a --config file set."""
    cfg = copy.deepcopy(cfg)  # inherited sections are filled in below; the caller's config stays as given
    checks = Checks()
    checks.run("config", check_values, cfg)
    checks.run("config", check_select_num, cfg)
    run_dir = checks.run("run", find_run_dir, cfg)
    taken: list[str] = []
    if run_dir is None and checks.ok("run"):  # no run folder to take the data from
        checks.run("data", check_data_named, set(given), SEED_COMMAND)
    elif run_dir is not None:
        taken = checks.run("run", inherit_run_config, cfg, run_dir, given) or []
    checks.run("plugins", load_plugins, cfg.plugins)
    test = train = None
    if checks.ok("run"):  # the model and the data may come from the run's config
        checks.run("model", check_model_dir, cfg.model.base_model)
        checks.run("model", check_ckpt, cfg)
        checks.run("run", check_select_pool, cfg, run_dir)
        checks.run("output", rundir.check_writable, output_dir(cfg, run_dir), "out")
        data_root = run_dir or output_dir(cfg, run_dir)
        if checks.ok("data") and (not generated_in_run(cfg.data) or (data_root / "data" / "meta.json").is_file()):
            test = checks.run("data", load_problems, cfg.data, "test", data_root, cfg.seed)
            if cfg.train_select_mix:
                train = checks.run("data", load_problems, cfg.data, "train", data_root, cfg.seed)
    return Resolved(cfg, run_dir, taken, checks, test, train)


def plan(resolved: Resolved) -> str:
    """The resolved config and what a run of it would do, read from the folders without changing them;
    a run stops at the failures listed under # checks."""
    cfg, run_dir, taken, checks = resolved.cfg, resolved.run_dir, resolved.taken, resolved.checks
    out = output_dir(cfg, run_dir)
    lines = ["# resolved config", yaml.safe_dump(effective_config(cfg), sort_keys=False, width=1 << 16).rstrip(), "", "# plan"]
    if run_dir is not None:
        lines.append(f"self-training run: {run_dir}" + (f" (options taken from it: {', '.join(taken)})" if taken else ""))
    saved = out / SCALING_CONFIG_FILE
    allowed = RESUMABLE_CHANGES + (() if cfg.train_select_mix else ("max_select_num",))
    changed = config_changes(saved, effective_config(cfg), allowed, effective_config(ScalingConfig()))[0] \
        if saved.is_file() else []
    lines.append(f"output folder: {out} (" + ("new)" if not saved.is_file() else "exists; a run would refuse it, "
                 "changed keys: " + "; ".join(changed) + ")" if changed else "exists; the config matches: a run resumes it)"))
    model = cfg.model.base_model + (" + the select-mix model trained first" if cfg.train_select_mix else
                                    f" + {cfg.ckpt_dir}" if cfg.ckpt_dir else "")
    if checks.ok("model") and checks.ok("run"):
        lines.append(f"model: {model} (found; not loaded)")
    if resolved.test is not None:
        lines.append(f"data: {len(resolved.test)} test questions")
    elif checks.ok("data") and checks.ok("run"):
        lines.append(f"data: GeoSynth, generated into {(run_dir or out) / 'data'} by a real run: "
                     f"{cfg.data.geosynth_test} test questions")
    nodes = node_setup(cfg.sample.num_machines)
    lines.append(f"devices: sampling on {num_processes(cfg.sample)} process(es) per node x {nodes.count if nodes else 1} node(s)")
    if not checks.ok("config"):
        lines.append("files: not listed until the config values pass (# checks)")
    else:
        files = ([out / "select_mix" / DONE_FILE] if cfg.train_select_mix else []) + [out / "test_samples.jsonl",
                                                                                       out / "test_greedy.jsonl"]
        for n in range(2, cfg.max_select_num + 1):
            files += [out / f"select_n{n}_s{j}.jsonl"
                      for j in range(len(draw_subsets(cfg.num_test_samples, n, cfg.num_subsets, cfg.seed + n)))]
        done = [f for f in files if f.exists()]
        lines.append(f"files: {len(files) - len(done)} to write, {len(done)} done (then scaling.json, .md, .png)")
        lines += [f"  [{'done' if f.exists() else 'todo'}] {f.relative_to(out)}" for f in files]
    lines += ["", "# checks", checks.report() or "every input passed (config values, run folder, plugins, model and "
                                                 "checkpoint folders, data, images)"]
    return "\n".join(lines)


def main(cfg: ScalingConfig, given: Collection[str] = ()) -> list[dict]:
    """given: dotted keys set on the command line or in a --config file (kept even where the run's
    config.yaml differs)."""
    with held_for_file():  # what the checks log goes to the output folder's log too
        resolved = resolve(cfg, given)
        resolved.checks.raise_failures()
        out = output_dir(resolved.cfg, resolved.run_dir)
        working_in(out)
        # One run per output folder; on several nodes node 0 holds it (they share the folder).
        nodes = node_setup(resolved.cfg.sample.num_machines)
        lock = rundir.lock_folder(out) if nodes is None or nodes.rank == 0 else None
        try:
            return measure(resolved, out, lock)
        finally:
            if lock is not None:
                lock.release()


def measure(resolved: Resolved, out: Path, lock: rundir.FolderLock | None) -> list[dict]:
    """SS@N, MV@N and pass@N into `out` (main's work, once the folder is held)."""
    cfg, run_dir, taken = resolved.cfg, resolved.run_dir, resolved.taken
    if taken:
        log.info("from %s (left at their defaults here): %s", run_dir / rundir.RUN_CONFIG_FILE, ", ".join(taken))
    open_output(cfg, out)
    if lock is not None and lock.took_over:
        log.info("took over the output folder's lock from %s: that process is no longer running", lock.took_over)
    log.info("config: %s", to_dict(cfg))
    data_root = run_dir or out
    test = resolved.test or load_problems(cfg.data, "test", data_root, cfg.seed)
    ckpt = str(Path(cfg.ckpt_dir).expanduser().resolve()) if cfg.ckpt_dir else None
    if cfg.train_select_mix:
        with doing("training the select-mix model"):
            ckpt = train_select_model(cfg, out, run_dir, resolved.train or load_problems(cfg.data, "train", data_root, cfg.seed))
    log.info("model: %s%s; %d test questions, M=%d samples each", cfg.model.base_model,
             f" + {ckpt}" if ckpt else "", len(test), cfg.num_test_samples)

    gold = golds(test)

    def run(items, name, **kw):
        with doing(f"sampling {name}"):
            return sample_and_judge(items, gold, out / name, model_cfg=cfg.model, sample_cfg=cfg.sample,
                                    checkpoint=ckpt, rel_tol=cfg.data.rel_tol, **kw)

    ids = [p.id for p in test]
    samples = rundir.in_order(run(cot_items(test, cfg.prompt, cfg.seed, "scaling/test"), "test_samples.jsonl",
                                  num_samples=cfg.num_test_samples), ids, out / "test_samples.jsonl")
    greedy = rundir.in_order(run(cot_items(test, cfg.prompt, cfg.seed, "scaling/test"), "test_greedy.jsonl",
                                 greedy=True), ids, out / "test_greedy.jsonl")
    m = len(samples[0]["predictions"])
    if m != cfg.num_test_samples:
        raise RuntimeError(f"{out / 'test_samples.jsonl'} has {m} samples per question, the config asks for "
                           f"{cfg.num_test_samples}; delete the file or use another out=.")
    by_id = {r["id"]: r for r in samples}
    select: dict[tuple[int, int], list[dict]] = {}
    for n in range(2, cfg.max_select_num + 1):
        for j, subset in enumerate(draw_subsets(m, n, cfg.num_subsets, cfg.seed + n)):
            name = f"select_n{n}_s{j}.jsonl"
            items = select_items(test, by_id, subset, cfg.seed, f"scaling-n{n}-s{j}", cfg.prompt)
            select[(n, j)] = rundir.in_order(run(items, name, greedy=True), ids, out / name)
    rows = scaling_table(samples, greedy, select, [gold_key(p) for p in test], cfg)
    atomic_write_json(out / "scaling.json", {"checkpoint": ckpt, "base_model": cfg.model.base_model,
                                             "num_test": len(test), "num_test_samples": m, "rows": rows})
    table = write_table(rows, ["N", "SS@N", "SS_std", "MV@N", "MV_std", "pass@N", "pass_std", "Test@1", "subsets"],
                        out / "scaling", title=f"Self-selection vs majority vote ({len(test)} test questions, %)")
    ns = [r["N"] for r in rows]
    plot_lines(ns, {"self-select SS@N": [r["SS@N"] for r in rows], "majority vote MV@N": [r["MV@N"] for r in rows],
                    "oracle pass@N": [r["pass@N"] for r in rows]},
               out / "scaling.png", xlabel="N (candidates / votes)", ylabel="test accuracy (%)",
               title="Test-time self-selection scaling", hlines={"Test@1 (greedy)": rows[0]["Test@1"]},
               errors={"self-select SS@N": [r["SS_std"] for r in rows], "majority vote MV@N": [r["MV_std"] for r in rows]})
    print(table)
    log.info("wrote %s", out)
    return rows


def cli() -> None:
    args = parse_args(ScalingConfig, prog="self_select_scaling.py", doc=__doc__,
                      flags={"dry_run": "print the resolved config and the plan (files to write and done), "
                                        "then exit without loading a model"})
    if "dry_run" in args.flags:
        resolved = resolve(args.config, args.keys)
        print(plan(resolved))
        resolved.checks.raise_failures()  # and exit as a run would
    else:
        main(args.config, args.keys)


if __name__ == "__main__":
    run_command(cli, kept="every finished file, and the batches already sampled of the file in progress")
