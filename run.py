"""R3V self-training loop: sample -> reflection mix -> LLaMA-Factory SFT -> evaluate, repeated.

    python run.py                                       # embedded default: GeoSynth, the small model, GPU or CPU recipe
    python run.py --base_model /models/Qwen2-VL-7B-Instruct --geoqa_dir geoQA-data --total_iters 3 --batch_size 4
    python run.py --config my_run.yaml sample.temperature=1.0 train.learning_rate=1e-4
    python run.py ... --dry_run                         # the resolved config and the plan; loads no model
    python run.py --help                                # every option

Iteration 0 samples the train set K times with the base model and evaluates it on the test set
(the zero-shot CoT row). Iteration k >= 1 builds the mix from the samples of iterations 0..k-1,
trains a fresh LoRA on the base model, samples train (the next pool) and test K times, lets the
model self-select among its test samples, and runs greedy Test@1.

Everything lives in one run folder (outputs/<run_name>/). Each step writes its final file last;
rerunning the same command resumes after the last finished step, and a changed config is an error
that names the changed keys (or pass --restart to start over).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from core import rundir
from core.checks import Checks
from core.cli import doing, run_command, working_in
from core.config import (REPO_ROOT, RESULT_NEUTRAL, ConfigError, RunConfig, check_values, config_changes, parse_args,
                         to_dict)
from core.io import FileError, atomic_write_json, read_json, read_jsonl
from core.log import get_logger, held_for_file
from core.nodes import node_setup
from core.registry import load_plugins
from data_gen.problem import Problem
from data_gen.sources import check_data_named, generated_in_run, load_problems, warn_shared_ids
from eval.evaluate import check_metrics, iteration_metrics, validation_metrics
from eval.judge import golds, sample_and_judge
from eval.report import plot_lines, write_table
from eval.requests import cot_items, select_items
from infer.generate import Request
from infer.model import check_model_dir
from infer.sample import num_processes
from mix.llamafactory import write_dataset
from mix.reflection import build_mix, check_mix_config, warmup_items
from train.sft import DONE_FILE, MODEL_DIR, missing_model_files

log = get_logger("run")

# Keys that may change when a run is resumed: extending the run or moving it to other hardware
# does not change what the finished steps computed.
RESUMABLE_CHANGES = ("total_iters", "export_final", "sample_last_train", *RESULT_NEUTRAL)


@dataclass
class Run:
    cfg: RunConfig
    dir: Path
    train: list[Problem]
    test: list[Problem]
    val: list[Problem]  # data.val_questions held out of train; empty without

    def iter_dir(self, k: int) -> Path:
        return rundir.iter_dir(self.dir, k)


# --------------------------------------------------------------------------- run folder


def run_name(cfg: RunConfig) -> str:
    if cfg.run_name:
        return cfg.run_name
    data = Path(cfg.data.geoqa_dir).name if cfg.data.geoqa_dir else cfg.data.dataset
    return f"r3v-{data}-{Path(cfg.model.base_model).name}"


def open_run_dir(cfg: RunConfig, restart: bool) -> Path:
    """Create or reopen the run folder; refuse to resume with a different config."""
    run_dir = Path(cfg.output_dir) / run_name(cfg)
    if restart and run_dir.exists():
        log.info("--restart: removing %s", run_dir)
        for path in run_dir.iterdir():  # all but the lock this process holds
            if path.name not in (rundir.LOCK_FILE, rundir.HOLDER_FILE):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    rundir.open_folder(run_dir, rundir.RUN_CONFIG_FILE, to_dict(cfg), defaults=to_dict(RunConfig()),
                       allowed=RESUMABLE_CHANGES, log_file="run.log",
                       fix="Rerun with the same options to resume, pass run_name=NEW for a new run, or "
                           "--restart to start this one over.")
    return run_dir


def step(run: Run, name: str, final: Path, fn, missing=None) -> None:
    """Run fn() unless `final` exists; record the step's duration in state.json. A done step whose other
    outputs are gone (missing() says what lacks) is refused with the marker to delete."""
    if final.exists():
        lacks = missing() if missing else None
        if lacks:
            raise ConfigError(f"step {name} is marked done by {final}, but {lacks}: delete {final} to redo the "
                              f"step (the later steps of the run were built on its outputs: delete theirs too, "
                              f"or --restart).")
        log.info("[skip] %s (done: %s)", name, final.relative_to(run.dir))
        return
    log.info("*** %s ***", name)
    start = time.time()
    with doing(f"step {name}"):
        fn()
    if not final.exists():
        raise RuntimeError(f"step {name} finished without writing {final}")
    state = read_state(run)
    state["steps"][name] = {"seconds": round(time.time() - start, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_json(run.dir / STATE_FILE, state)


STATE_FILE = "state.json"  # the finished steps' durations (each step is marked done by its own files)


def read_state(run: Run) -> dict:
    path = run.dir / STATE_FILE
    fix = "delete it: it holds only the steps' durations, and the finished steps are kept by their own files"
    state = read_json(path, fix) if path.is_file() else {"steps": {}}
    if not isinstance(state, dict) or not isinstance(state.get("steps"), dict):
        raise FileError(f"{path}: expected {{\"steps\": {{...}}}}; {fix}.")
    return state


def stage_seconds(run: Run, k: int) -> dict[str, float]:
    steps = read_state(run)["steps"]
    prefix = f"iter{k}/"
    return {name[len(prefix):]: v["seconds"] for name, v in steps.items() if name.startswith(prefix)}


# --------------------------------------------------------------------------- stages


def model_for(run: Run, k: int) -> str | None:
    """The checkpoint that iteration k samples with (None = the base model)."""
    if k == 0:
        return str(run.dir / "warmup" / MODEL_DIR) if run.cfg.warmup.enabled else None
    return str(run.iter_dir(k) / MODEL_DIR)


def sample(run: Run, k: int, problems: list[Problem], requests: list[Request], out: Path, *,
           greedy: bool = False) -> None:
    """Sample (or greedily answer) the requests with iteration k's model and judge them against problems."""
    sample_and_judge(requests, golds(problems), out, model_cfg=run.cfg.model, sample_cfg=run.cfg.sample,
                     checkpoint=model_for(run, k), greedy=greedy, rel_tol=run.cfg.data.rel_tol)


def cot(run: Run, k: int, problems: list[Problem], split: str, *, sampling_prompt: bool = False) -> list[Request]:
    return cot_items(problems, run.cfg.prompt, run.cfg.seed, f"iter{k}/{split}", sampling_prompt=sampling_prompt)


def build_iteration_mix(run: Run, k: int) -> None:
    items, stats = build_mix(run.train, rundir.train_pool(run.dir, k, strict=True), k, run.cfg.seed, run.cfg.mix,
                             run.cfg.prompt)
    if run.cfg.warmup.enabled:
        warm = warmup_items(run.train, run.cfg.prompt, run.cfg.warmup.num_items, run.cfg.seed)
        items += warm  # order does not matter: LLaMA-Factory shuffles the training data
        stats["kinds"]["warmup"] = len(warm)
        stats["total"] = len(items)
    log.info("mix for iteration %d: %s; candidates: %s", k, stats["kinds"], stats["candidates"])
    data_dir = run.iter_dir(k) / "sft_data"
    write_dataset(items, data_dir, f"r3v_iter{k}")
    atomic_write_json(data_dir / "mix_stats.json", stats)  # written last: the step's final file


def train_iteration(run: Run, k: int, work_dir: Path, dataset: str) -> None:
    """Train iteration k's model into work_dir/model (a fresh LoRA on the base model, as in R3V)."""
    from train.sft import starting_point, train

    previous = model_for(run, k - 1) if k >= 1 else None
    model_path, adapter = starting_point(run.cfg.train, run.cfg.model.base_model, previous)
    train(run.cfg.train, model_path=model_path, dataset_dir=work_dir / "sft_data", dataset_name=dataset,
          iter_dir=work_dir, seed=run.cfg.seed, image_min_pixels=run.cfg.model.min_pixels,
          image_max_pixels=run.cfg.model.max_pixels, adapter_name_or_path=adapter)


@dataclass(frozen=True)
class Step:
    """One resumable step: done once `final` exists (written last)."""

    name: str
    final: Path
    fn: Callable[[], None]
    # what the step's other outputs lack, checked when `final` says done (None: nothing lacks)
    missing: Callable[[], str | None] | None = None


def missing_files(*paths: Path) -> str | None:
    gone = [str(p) for p in paths if not p.exists()]
    return f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} gone" if gone else None


def warmup_steps(run: Run) -> list[Step]:
    wdir = run.dir / "warmup"
    return [Step("warmup/data", wdir / "sft_data" / "dataset_info.json",  # written after the data file
                 lambda: write_dataset(warmup_items(run.train, run.cfg.prompt, run.cfg.warmup.num_items, run.cfg.seed),
                                       wdir / "sft_data", "r3v_warmup")),
            Step("warmup/train", wdir / DONE_FILE, lambda: train_iteration(run, -1, wdir, "r3v_warmup"),
                 lambda: missing_model_files(wdir / MODEL_DIR, run.cfg.train.finetuning_type))]


def split_steps(run: Run, k: int, split: str) -> list[Step]:
    """K samples, self-select among them (iterations >= 1) and greedy Test@1 on one split (test or val)."""
    d = run.iter_dir(k)
    problems = lambda: run.test if split == "test" else run.val  # noqa: E731  (read when the step runs)
    samples = d / f"{split}_samples.jsonl"
    steps = [Step(f"iter{k}/sample_{split}", samples,
                  lambda: sample(run, k, problems(), cot(run, k, problems(), split), samples))]
    if k >= 1 or run.cfg.select_at_iter0:
        steps.append(Step(f"iter{k}/select_{split}", d / f"{split}_select.jsonl",
                          lambda: sample(run, k, problems(), select_items(
                              problems(), {r["id"]: r for r in read_jsonl(samples)}, None, run.cfg.seed,
                              f"iter{k}" if split == "test" else f"iter{k}/{split}-select", run.cfg.prompt),
                              d / f"{split}_select.jsonl", greedy=True)))
    steps.append(Step(f"iter{k}/greedy_{split}", d / f"{split}_greedy.jsonl",
                      lambda: sample(run, k, problems(), cot(run, k, problems(), split), d / f"{split}_greedy.jsonl",
                                     greedy=True)))
    return steps


def iteration_steps(run: Run, k: int) -> list[Step]:
    cfg, d = run.cfg, run.iter_dir(k)
    steps = []
    if k >= 1:
        steps += [Step(f"iter{k}/mix", d / "sft_data" / "mix_stats.json", lambda: build_iteration_mix(run, k),
                       lambda: missing_files(d / "sft_data" / f"r3v_iter{k}.json", d / "sft_data" / "dataset_info.json")),
                  Step(f"iter{k}/train", d / DONE_FILE, lambda: train_iteration(run, k, d, f"r3v_iter{k}"),
                       lambda: missing_model_files(d / MODEL_DIR, cfg.train.finetuning_type))]
    if k < cfg.total_iters or cfg.sample_last_train:
        # Iteration 0 asks the untrained model with prompt.sample_instruction (the original's: a short
        # CoT ending in "Answer: X", REFERENCE.md §2); later iterations use the CoT prompt they were trained on.
        steps.append(Step(f"iter{k}/sample_train", d / "train_samples.jsonl",
                          lambda: sample(run, k, run.train, cot(run, k, run.train, "train", sampling_prompt=k == 0),
                                         d / "train_samples.jsonl")))
    steps += split_steps(run, k, "test")
    if cfg.data.val_questions > 0:
        steps += split_steps(run, k, "val")
    return steps


def export_steps(run: Run) -> list[Step]:
    cfg = run.cfg
    if not (cfg.export_final and cfg.total_iters >= 1 and cfg.train.finetuning_type == "lora"):
        return []
    from train.export import export_merged

    # Inside the last iteration's folder, so extending the run exports the new last model.
    merged = run.iter_dir(cfg.total_iters) / "merged"
    return [Step(f"iter{cfg.total_iters}/export", merged / "config.json",
                 lambda: export_merged(cfg.model.base_model, model_for(run, cfg.total_iters), merged),
                 lambda: missing_model_files(merged, "full"))]


def run_iteration(run: Run, k: int) -> dict:
    cfg, d = run.cfg, run.iter_dir(k)
    d.mkdir(parents=True, exist_ok=True)
    for s in iteration_steps(run, k):
        step(run, s.name, s.final, s.fn, s.missing)
    metrics = iteration_metrics(d, run.test, metrics=cfg.metrics)
    if run.val:
        metrics.update(validation_metrics(d, run.val, cfg.metrics))
    metrics["iteration"] = k
    stats = d / "sft_data" / "mix_stats.json"
    if stats.is_file():
        metrics["mix"] = read_json(stats)["kinds"]
    train_done = d / DONE_FILE
    if train_done.is_file():
        metrics["train"] = read_json(train_done)
    metrics["seconds"] = stage_seconds(run, k)
    atomic_write_json(d / "metrics.json", metrics)
    return metrics


def write_report(run: Run, all_metrics: list[dict]) -> str:
    k = run.cfg.sample.num_samples
    cols = ["iteration", "Test@1", f"MV@{k}", f"SS@{k}", f"pass@{k}", "sample_acc", "no_answer_rate",
            "mix_total", "minutes"]
    if run.val:
        cols[5:5] = ["val_Test@1", f"val_MV@{k}", f"val_SS@{k}"]
    rows = []
    for m in all_metrics:
        rows.append({**m, "mix_total": sum(m.get("mix", {}).values()) or None,
                     "minutes": round(sum(m.get("seconds", {}).values()) / 60, 1)})
    table = write_table(rows, cols, run.dir / "metrics", title=f"R3V on {run_name(run.cfg)} (test accuracy, %)")
    its = [m["iteration"] for m in all_metrics]
    plot_lines(its, {name: [m.get(name) for m in all_metrics] for name in ("Test@1", f"MV@{k}", f"SS@{k}", f"pass@{k}")},
               run.dir / "metrics.png", xlabel="iteration", ylabel="test accuracy (%)",
               title=f"R3V self-training: {run_name(run.cfg)}")
    return table


# --------------------------------------------------------------------------- dry run


def describe_data(cfg: RunConfig, run_dir: Path, data: Data | None) -> str:
    """What the run reads, without writing anything (GeoSynth is generated only by a real run)."""
    if data is None:
        if not (run_dir / "data" / "meta.json").is_file():
            return (f"GeoSynth, generated into {run_dir / 'data'} by the first real run: {cfg.data.geosynth_train} "
                    f"train / {cfg.data.geosynth_test} test questions (seed {cfg.seed})")
        data = load_data(cfg, run_dir)
    where = cfg.data.geoqa_dir or run_dir / "data"
    counts = " / ".join(f"{len(ps)} {split}" for split, ps in zip(("train", "test", "val"), data) if ps or split != "val")
    return f"{cfg.data.dataset} in {where}: {counts} questions"


def describe_devices(cfg: RunConfig) -> str:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nodes = node_setup(cfg.sample.num_machines)
    where = f"{gpus} GPU(s) visible" if gpus else "no GPU visible: CPU"
    per_node = num_processes(cfg.sample)
    return (f"{where}; sampling on {per_node} process(es) per node x {nodes.count if nodes else 1} node(s), "
            f"training on {(cfg.train.num_gpus or gpus) or 'CPU, one process'}"
            + (f" GPU(s) per node x {cfg.train.nnodes} node(s)" if (cfg.train.num_gpus or gpus) else ""))


def plan(cfg: RunConfig, checks: Checks | None = None, data: Data | None = None) -> str:
    """The resolved config and what a run of it would do, read from the run folder without changing it;
    `checks` and `data` come from preflight (run here when not given): a run stops at the failures listed
    under # checks."""
    if checks is None:
        checks, data = preflight(cfg)
    run_dir = Path(cfg.output_dir) / run_name(cfg)
    lines = ["# resolved config", yaml.safe_dump(to_dict(cfg), sort_keys=False, width=1 << 16).rstrip(), "", "# plan"]
    saved = run_dir / rundir.RUN_CONFIG_FILE
    if saved.is_file():
        changed, _ = config_changes(saved, to_dict(cfg), RESUMABLE_CHANGES, defaults=to_dict(RunConfig()))
        lines.append(f"run folder: {run_dir} (exists; " + ("the config matches: a run resumes it)" if not changed else
                     "a run would refuse it, changed keys: " + "; ".join(changed) + ")"))
    else:
        lines.append(f"run folder: {run_dir} (new)")
    if checks.ok("model"):
        lines.append(f"model: {cfg.model.base_model} (found; not loaded)")
    if checks.ok("data"):
        lines.append(f"data: {describe_data(cfg, run_dir, data)}")
    lines.append(f"devices: {describe_devices(cfg)}")
    run = Run(cfg, run_dir, [], [], [])
    all_steps = [*(warmup_steps(run) if cfg.warmup.enabled else [])]
    for k in range(cfg.total_iters + 1):
        all_steps += iteration_steps(run, k)
    all_steps += export_steps(run)
    done = [s for s in all_steps if s.final.exists()]
    lines.append(f"steps: {len(all_steps) - len(done)} to run, {len(done)} done")
    lines += [f"  [{'done' if s.final.exists() else 'todo'}] {s.name:<22} {s.final.relative_to(run_dir)}" for s in all_steps]
    lines += ["", "# checks", checks.report() or "every input passed (config values, plugins, model folder, data, images)"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


Data = tuple[list[Problem], list[Problem], list[Problem]]  # train, test, val


def load_data(cfg: RunConfig, run_dir: Path) -> Data:
    return tuple(load_problems(cfg.data, split, run_dir, cfg.seed) for split in ("train", "test", "val"))


def preflight(cfg: RunConfig, given: set[str] | None = None) -> tuple[Checks, Data | None]:
    """Every check on the inputs, run before the run folder is taken: config values, plugins and the
    variants they name, the model folder, and the data with every image opened (a data folder given;
    GeoSynth is generated into the run folder, under its lock). `given`: the keys the command line set
    (None from Python: the data need not be named). Returns the checks (their failures, if any) and the
    data loaded."""
    checks = Checks()
    checks.run("config", check_values, cfg)
    if given is not None:
        checks.run("data", check_data_named, given, SEED_COMMAND)
    checks.run("plugins", load_plugins, cfg.plugins)
    if checks.ok("plugins"):  # a plugin's variants are known only once it is imported
        checks.run("config", check_mix_config, cfg.mix)
        checks.run("config", check_metrics, cfg.metrics)
    checks.run("model", check_model_dir, cfg.model.base_model)
    run_dir = Path(cfg.output_dir) / run_name(cfg)
    checks.run("output", rundir.check_writable, run_dir, "output_dir")
    if not checks.ok("data") or generated_in_run(cfg.data):
        return checks, None
    train, test = (checks.run("data", load_problems, cfg.data, split, run_dir, cfg.seed) for split in ("train", "test"))
    val = checks.run("data", load_problems, cfg.data, "val", run_dir, cfg.seed) if train is not None else None
    if train is not None and test is not None:
        warn_shared_ids(train, test)  # GeoSynth's generated ids never repeat across splits
    return checks, (train, test, val) if checks.ok("data") else None


def main(cfg: RunConfig, restart: bool = False, given: set[str] | None = None) -> list[dict]:
    with held_for_file():  # what the checks log goes to run.log too, once the folder is taken
        checks, data = preflight(cfg, given)
        checks.raise_failures()
        run_dir = Path(cfg.output_dir) / run_name(cfg)
        working_in(run_dir)
        # One run per folder. On several nodes all run this command on one shared folder: node 0 holds it.
        nodes = node_setup(cfg.sample.num_machines)
        lock = rundir.lock_folder(run_dir) if nodes is None or nodes.rank == 0 else None
        try:
            return run_all(cfg, restart, lock, data)
        finally:
            if lock is not None:
                lock.release()


def run_all(cfg: RunConfig, restart: bool, lock: rundir.FolderLock | None, data: Data | None) -> list[dict]:
    run_dir = open_run_dir(cfg, restart)
    if lock is not None and lock.took_over:
        log.info("took over the run folder's lock from %s: that process is no longer running", lock.took_over)
    log.info("config: %s", to_dict(cfg))
    run = Run(cfg, run_dir, *(data or load_data(cfg, run_dir)))
    read_state(run)  # a damaged state.json is refused now, not after the next step
    log.info("data: %d train / %d test problems%s", len(run.train), len(run.test),
             f" / {len(run.val)} validation problems (held out of train, with their repeats)" if run.val else "")
    for s in warmup_steps(run) if cfg.warmup.enabled else []:
        step(run, s.name, s.final, s.fn, s.missing)
    all_metrics = []
    for k in range(cfg.total_iters + 1):
        all_metrics.append(run_iteration(run, k))
        table = write_report(run, all_metrics)
        log.info("\n%s", table)
    for s in export_steps(run):
        step(run, s.name, s.final, s.fn, s.missing)
    log.info("done: %s (table %s, plot %s)", run_dir, run_dir / "metrics.md", run_dir / "metrics.png")
    return all_metrics


SEED_COMMAND = "python run.py --base_model /models/Qwen2-VL-7B-Instruct --geoqa_dir geoQA-data --total_iters 3 --batch_size 4"

# `python run.py` with no config and the shipped model: the GPU recipe where a GPU is visible (4,000
# questions: it shows the gain), else the CPU one (120 questions: the loop end to end in minutes).
EMBEDDED_DEFAULTS = {"gpu": REPO_ROOT / "configs" / "geosynth_gpu.yaml", "cpu": REPO_ROOT / "configs" / "geosynth_small.yaml"}
CPU_DEFAULT_NOTE = """
This was the CPU recipe (configs/geosynth_small.yaml): the whole loop on 120 GeoSynth questions, too few
to move the shipped model (its Test@1 stays within a few points of where it starts). On a machine with
one GPU the same command, `python run.py`, runs configs/geosynth_gpu.yaml (4,000 questions; iterations
1-3 took ~14 minutes on an H200 shared with three other runs), which took the model from 38.5% to
59.4-61.1% Test@1 in 3 iterations (three runs on H200s, docs/results.md)."""


def embedded_default(argv: list[str]) -> Path | None:
    """The recipe `python run.py` runs when no config file, model or data is named (None otherwise)."""
    names = {a.split("=")[0].lstrip("-") for a in argv}
    if names & {"config", "base_model", "model.base_model", "geoqa_dir", "data.geoqa_dir", "data.dataset", "help", "h"}:
        return None
    import torch

    return EMBEDDED_DEFAULTS["gpu" if torch.cuda.is_available() else "cpu"]


def cli(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    default = embedded_default(argv)
    if default is not None:
        argv = ["--config", str(default), *argv]
    args = parse_args(RunConfig, argv, prog="run.py", doc=__doc__,
                      flags={"restart": "delete the run folder and start over",
                             "dry_run": "print the resolved config and the plan (steps to run and done, data, "
                                        "devices), then exit without loading the model"})
    if "dry_run" in args.flags:
        checks, data = preflight(args.config, args.keys)
        print(plan(args.config, checks, data))
        checks.raise_failures()  # and exit as a run would
        return
    main(args.config, restart="restart" in args.flags, given=args.keys)
    if default == EMBEDDED_DEFAULTS["cpu"]:
        print(CPU_DEFAULT_NOTE)


if __name__ == "__main__":
    run_command(cli, kept="every finished step, and the sampled batches or training checkpoints of the step in progress")
