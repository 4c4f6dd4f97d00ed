r"""Train one SFT step with LLaMA-Factory: render the YAML, run `llamafactory-cli train`, check the result.

    # train a LoRA on a dataset written by mix.llamafactory.write_dataset
    python -m train.sft --base_model models/geosynth-small --dataset_dir outputs/run/iter1/data \
        --dataset_name r3v_iter1 --out_dir outputs/run/iter1 train.max_steps=10

The iteration folder (`out_dir`) receives `sft.yaml` (the rendered LLaMA-Factory config, usable by
hand with `llamafactory-cli train`), `train.log` (the full output), the trained model in `model/`
(a LoRA adapter, or a full model with finetuning_type=full) and `train_done.json`, written last, so
a rerun skips a finished training. A run killed mid-way resumes from its newest complete
`checkpoint-*` folder. A failed training raises `CommandError` with the log's tail: the loop stops.

Several GPUs: `llamafactory-cli` starts torchrun itself when FORCE_TORCHRUN=1 (set here whenever
more than one process trains). Several nodes: run the same command on every node with the run
folder on a shared filesystem, `train.nnodes=N`, and NODE_RANK / MASTER_ADDR / MASTER_PORT in each
node's environment (or passed to `train()`); they reach LLaMA-Factory's launcher as environment
variables, which hands them to `torchrun --nnodes --node_rank --master_addr --master_port`. Only
global rank 0 writes the model, so only node 0 checks it and writes `train_done.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import REPO_ROOT, ModelConfig, TrainConfig, _f, parse_args
from core.io import atomic_write_json, atomic_write_text, read_json
from core.log import get_logger
from core.nodes import node_count, node_setup, wait_until
from core.proc import CommandError, run_logged
from train import memory_plan
from train.memory_plan import TrainPlan
from train.llamafactory_cli import base_env, llamafactory_cli, subprocess_env

log = get_logger("train")

TEMPLATES = {"lora": "configs/llamafactory/sft_lora.yaml", "full": "configs/llamafactory/sft_full.yaml"}
PLACEHOLDER = "FILLED"  # template values the launcher must replace
DONE_FILE = "train_done.json"
SFT_CONFIG_FILE = "sft.yaml"
LOG_FILE = "train.log"
MODEL_DIR = "model"


# --------------------------------------------------------------------------- the YAML


def template_path(cfg: TrainConfig) -> Path:
    """The template to render: cfg.template, or the full-fine-tuning one when finetuning_type=full
    and the template was left at its (LoRA) default."""
    if cfg.finetuning_type not in TEMPLATES:
        raise ValueError(f"train.finetuning_type={cfg.finetuning_type!r}: use one of {sorted(TEMPLATES)}.")
    name = cfg.template
    if cfg.finetuning_type == "full" and name == TrainConfig().template:
        name = TEMPLATES["full"]
    path = Path(name) if Path(name).is_absolute() else REPO_ROOT / name
    if not path.is_file():
        raise FileNotFoundError(f"train.template={cfg.template!r}: no such file {path}; give a path "
                                f"relative to {REPO_ROOT} or an absolute one (see configs/llamafactory/).")
    return path


def gradient_accumulation(global_batch: int, per_device: int, world_size: int) -> int:
    """Accumulation steps that make per_device x world_size x steps reach the global batch."""
    steps = max(1, global_batch // (per_device * world_size))
    effective = steps * per_device * world_size
    if effective != global_batch:
        log.warning("global batch %d is not a multiple of %d per device x %d processes: training "
                    "with an effective global batch of %d (accumulation %d)",
                    global_batch, per_device, world_size, effective, steps)
    return steps


def render_sft_config(cfg: TrainConfig, *, model_path: str | Path, dataset_dir: str | Path,
                      dataset_name: str, output_dir: str | Path, num_gpus: int, seed: int,
                      image_min_pixels: int, image_max_pixels: int,
                      adapter_name_or_path: str | Path | None = None, on_gpu: bool) -> dict[str, Any]:
    """The LLaMA-Factory arguments for one training: the template, the per-run fields, then
    `cfg.overrides` (explicit user settings win).

    num_gpus: training processes per node (0 on CPU: one process). adapter_name_or_path: a LoRA
    adapter to keep training (LLaMA-Factory 0.9.5 loads the last adapter given as trainable when
    create_new_adapter is false; its own rank/alpha apply, not lora_rank/lora_alpha).
    """
    args: dict[str, Any] = yaml.safe_load(template_path(cfg).read_text(encoding="utf-8")) or {}
    world_size = max(1, num_gpus) * max(1, cfg.nnodes)
    args.update(
        model_name_or_path=str(model_path),
        dataset_dir=str(Path(dataset_dir).resolve()),
        dataset=dataset_name,
        output_dir=str(Path(output_dir).resolve()),
        seed=seed,
        image_min_pixels=image_min_pixels,
        image_max_pixels=image_max_pixels,
        finetuning_type=cfg.finetuning_type,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation(cfg.global_batch_size, cfg.per_device_batch_size,
                                                          world_size),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        cutoff_len=cfg.cutoff_len,
        bf16=on_gpu,  # fp32 on CPU: CPU bf16 autocast is slow and not what the GPUs run
    )
    if not on_gpu:
        args["fp16"] = False
    if cfg.finetuning_type == "lora":
        args.update(lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha)
    else:
        for key in [k for k in args if k.startswith("lora_")]:
            del args[key]
    if adapter_name_or_path is not None:
        if cfg.finetuning_type != "lora":
            raise ValueError(f"adapter {adapter_name_or_path}: only LoRA training continues an adapter; with "
                             f"finetuning_type=full start from the previous model (model_path) instead.")
        args.update(adapter_name_or_path=str(adapter_name_or_path), create_new_adapter=False)
    if cfg.max_steps > 0:
        args["max_steps"] = cfg.max_steps
    else:
        args.pop("max_steps", None)
    args.update(cfg.overrides)

    if args.get("deepspeed") and not Path(args["deepspeed"]).is_absolute():
        # LLaMA-Factory opens it relative to its working directory; the templates name it from the repo.
        args["deepspeed"] = str(REPO_ROOT / args["deepspeed"])
    left = sorted(k for k, v in args.items() if v == PLACEHOLDER)
    if left:
        raise ValueError(f"{template_path(cfg)}: {', '.join(left)} still {PLACEHOLDER!r} after rendering; "
                         f"set them through train.overrides.")
    return args


def write_sft_config(args: dict[str, Any], path: str | Path) -> Path:
    header = "# Rendered by train/sft.py; rerun by hand with: llamafactory-cli train THIS_FILE\n"
    return atomic_write_text(path, header + yaml.safe_dump(args, sort_keys=False, allow_unicode=True))


# --------------------------------------------------------------------------- the command


def build_train_command(yaml_path: str | Path, num_gpus: int, nnodes: int = 1, node_rank: int | None = None,
                        master_addr: str | None = None, master_port: int | None = None,
                        deepspeed: bool = False) -> tuple[list[str], dict[str, str]]:
    """argv and the environment updates for `llamafactory-cli train yaml_path`.

    num_gpus: processes per node (0 = CPU, one process). With more than one process in all, or with
    DeepSpeed (LLaMA-Factory refuses it outside torchrun), FORCE_TORCHRUN=1 makes llamafactory-cli
    start torchrun with NPROC_PER_NODE / NNODES / NODE_RANK / MASTER_ADDR / MASTER_PORT. Multi-node
    values come from the arguments, else from this process's environment.
    """
    if " " in str(yaml_path):
        # llamafactory-cli re-joins its arguments with spaces and splits them for torchrun.
        raise ValueError(f"{yaml_path}: LLaMA-Factory's launcher splits paths at spaces; use a run "
                         f"folder without spaces.")
    argv = [*llamafactory_cli(), "train", str(yaml_path)]
    env = base_env()
    if num_gpus > 0:
        # Also for one GPU: on a machine with more visible GPUs llamafactory-cli would use them all.
        env["NPROC_PER_NODE"] = str(num_gpus)
    if max(1, num_gpus) * nnodes > 1 or deepspeed:
        env["FORCE_TORCHRUN"] = "1"
    if nnodes > 1:
        nodes = node_setup(nnodes, explicit_env(node_rank, master_addr, master_port),
                           what="training", key="train.nnodes")
        env.update(NNODES=str(nnodes), NODE_RANK=str(nodes.rank), MASTER_ADDR=nodes.master_addr,
                   MASTER_PORT=str(nodes.master_port))
    elif master_port:
        env["MASTER_PORT"] = str(master_port)
    return argv, env


def explicit_env(node_rank: int | None = None, master_addr: str | None = None,
                 master_port: int | None = None) -> dict[str, str]:
    """This process's environment with the node settings passed to train() laid over it (they win)."""
    env = dict(os.environ)
    for name, value in (("NODE_RANK", node_rank), ("MASTER_ADDR", master_addr), ("MASTER_PORT", master_port)):
        if value is not None and value != "":
            env[name] = str(value)
    return env


# --------------------------------------------------------------------------- outputs


def _step(path: Path) -> int:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else -1


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete `checkpoint-N` with the largest N (by number, not modification time).

    transformers writes trainer_state.json last into a checkpoint, so a folder without it was cut
    off mid-save and is skipped.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = sorted((p for p in output_dir.iterdir() if p.is_dir() and _step(p) >= 0), key=_step, reverse=True)
    for ckpt in found:
        if (ckpt / "trainer_state.json").is_file():
            return ckpt
        log.warning("%s is incomplete (no trainer_state.json; killed while saving): not resuming from it", ckpt)
    return None


def missing_model_files(output_dir: str | Path, finetuning_type: str) -> str | None:
    """What output_dir lacks to hold a LoRA adapter (lora) or a full model (full); None when it holds one."""
    output_dir = Path(output_dir)
    if finetuning_type == "lora":
        weights = [output_dir / "adapter_model.safetensors", output_dir / "adapter_model.bin"]
        if not (output_dir / "adapter_config.json").is_file() or not any(p.is_file() for p in weights):
            return f"{output_dir} lacks adapter_config.json and adapter_model.safetensors"
    else:
        has_weights = any(output_dir.glob("*.safetensors")) or any(output_dir.glob("pytorch_model*.bin"))
        if not (output_dir / "config.json").is_file() or not has_weights:
            return f"{output_dir} lacks config.json and *.safetensors"
    return None


def check_output(output_dir: str | Path, finetuning_type: str, log_path: str | Path | None = None) -> Path:
    """Raise unless output_dir holds a LoRA adapter (lora) or a full model (full)."""
    missing = missing_model_files(output_dir, finetuning_type)
    if missing:
        what = "an adapter" if finetuning_type == "lora" else "a model"
        raise RuntimeError(f"training ended without {what}: {missing}" + (f"; see {log_path}" if log_path else ""))
    return Path(output_dir)


RESUMED_FILE = "train_resumed.json"  # in the iteration folder: the step the last resume of its training started at


def whole_training_loss(log_history: list[dict], resumed_loss: float, global_step: int,
                        resumed_from: int) -> tuple[float, int]:
    """(the mean loss per step, the steps it covers) of a training resumed at step `resumed_from`.

    transformers' train_loss of a resumed training is the resumed part's loss sum over *all* steps: too
    low. The resumed part's sum is resumed_loss * global_step; the part before comes from the logged
    interval means (each `loss` in log_history is the mean since the previous log) up to the checkpoint.
    Steps after the last log before the checkpoint have no logged loss: they are left out, and the
    count of steps covered says so."""
    logged = sorted((h["step"], h["loss"]) for h in log_history if "loss" in h and h.get("step") is not None)
    before_sum, last = 0.0, 0
    for step, loss in logged:
        if step > resumed_from:
            break
        before_sum += loss * (step - last)
        last = step
    covered = last + (global_step - resumed_from)
    return (before_sum + resumed_loss * global_step) / covered if covered else resumed_loss, covered


def read_train_summary(output_dir: str | Path, resumed_from: int | None = None) -> dict[str, Any]:
    """Final loss, steps and runtime from LLaMA-Factory's all_results.json, trainer_state.json and
    trainer_log.jsonl (whichever exist). resumed_from: the step a resumed training started at; its
    train_loss is then the whole training's (whole_training_loss), with the steps it covers."""
    output_dir = Path(output_dir)
    summary: dict[str, Any] = {"train_loss": None, "final_loss": None, "global_step": None,
                               "total_steps": None, "epoch": None, "runtime_s": None}
    results = output_dir / "all_results.json"
    if results.is_file():
        r = read_json(results)
        summary.update(train_loss=r.get("train_loss"), runtime_s=r.get("train_runtime"), epoch=r.get("epoch"))
    state = output_dir / "trainer_state.json"
    if state.is_file():
        s = read_json(state)
        summary["global_step"] = s.get("global_step")
        summary["total_steps"] = s.get("max_steps")
        losses = [h["loss"] for h in s.get("log_history", []) if "loss" in h]
        if losses:
            summary["final_loss"] = losses[-1]
    trainer_log = output_dir / "trainer_log.jsonl"
    if trainer_log.is_file():
        for line in trainer_log.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if entry.get("loss") is not None:
                summary["final_loss"] = entry["loss"]
            summary["global_step"] = summary["global_step"] or entry.get("current_steps")
            summary["total_steps"] = summary["total_steps"] or entry.get("total_steps")
    if summary["train_loss"] is None:
        summary["train_loss"] = summary["final_loss"]
    elif resumed_from is not None and state.is_file() and summary["global_step"]:
        steps = summary["global_step"]
        loss, covered = whole_training_loss(s.get("log_history", []), summary["train_loss"], steps, resumed_from)
        summary.update(train_loss=round(loss, 4), resumed_from_step=resumed_from,
                       train_loss_covers=f"all {steps} steps" if covered == steps else
                       f"{covered} of {steps} steps (the losses of the steps between the last log and "
                       f"checkpoint-{resumed_from} were lost with the killed process)")
    return summary


def train_done(iter_dir: str | Path) -> dict | None:
    """The record of a finished training in iter_dir, or None."""
    path = Path(iter_dir) / DONE_FILE
    return read_json(path) if path.is_file() else None


def starting_point(cfg: TrainConfig, base_model: str | Path,
                   previous: str | Path | None) -> tuple[str, str | None]:
    """(model_path, adapter_name_or_path) to train from. R3V trains a fresh LoRA on the base model
    each iteration; with continue_from_previous, LoRA keeps training the previous adapter and full
    fine-tuning starts from the previous model."""
    if not cfg.continue_from_previous or previous is None:
        return str(base_model), None
    if cfg.finetuning_type == "lora":
        return str(base_model), str(previous)
    return str(previous), None


# --------------------------------------------------------------------------- training


def wait_for_file(path: Path, timeout_s: float, poll_s: float = 5.0) -> None:
    """Block until `path` exists (written by node 0 on shared storage), or raise after timeout_s."""
    if not wait_until(path.is_file, timeout_s, poll_s):
        raise TimeoutError(f"{path} did not appear within {timeout_s:.0f} s: node 0 did not finish "
                           f"training, or the run folder is not on storage shared by all nodes.")


def longest_item_tokens(dataset_file: Path, tokenizer_dir: str | Path, image_max_pixels: int, cutoff_len: int) -> int:
    """The longest item of a LLaMA-Factory (sharegpt) dataset in tokens: its messages' text through the
    model's tokenizer, and each image at the pixel cap (one token per 28 x 28 pixels); at most cutoff_len."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    items = read_json(dataset_file)
    longest = 0
    for item in items:
        text = "".join(m["content"] for m in item["messages"])
        longest = max(longest, len(tokenizer(text)["input_ids"]) + 16 * len(item["messages"])  # role markers
                      + len(item.get("images") or []) * (image_max_pixels // (28 * 28)))
    return min(longest, cutoff_len)


def training_plan(cfg: TrainConfig, *, model_path: str | Path, dataset_file: Path, image_max_pixels: int,
                  gpus: int, world_size: int) -> TrainPlan | None:
    """The memory-aware plan (train/memory_plan.py) when train.per_device_batch_size=0 (auto); None when it is
    set. Without a GPU: R3V's 2 per device with checkpointing."""
    if cfg.per_device_batch_size > 0:
        return None
    if gpus == 0:
        return TrainPlan(*memory_plan.REFERENCE, 0.0, 0.0, "no GPU: R3V's 2 per device, checkpointing on")
    import torch

    free = min(torch.cuda.mem_get_info(i)[0] for i in range(gpus))
    seq_len = longest_item_tokens(dataset_file, model_path, image_max_pixels, cfg.cutoff_len)
    return memory_plan.plan(memory_plan.ModelShape.from_folder(model_path), free, cfg.finetuning_type, seq_len,
                            cfg.global_batch_size, world_size)


def is_out_of_memory(error: CommandError) -> bool:
    text = str(error)
    return "CUDA out of memory" in text or "OutOfMemoryError" in text


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def train(cfg: TrainConfig, *, model_path: str | Path, dataset_dir: str | Path, dataset_name: str,
          iter_dir: str | Path, seed: int, image_min_pixels: int, image_max_pixels: int,
          adapter_name_or_path: str | Path | None = None, output_dir: str | Path | None = None,
          node_rank: int | None = None, master_addr: str | None = None,
          master_port: int | None = None) -> Path:
    """Train on `dataset_name` from `dataset_dir`; return the folder with the adapter (or full model).

    Idempotent: a finished training (train_done.json) is skipped; one killed after saving its model
    is recorded; one killed mid-way resumes from its newest complete checkpoint.
    """
    iter_dir = Path(iter_dir).resolve()
    output_dir = Path(output_dir).resolve() if output_dir else iter_dir / MODEL_DIR
    yaml_path, log_path = iter_dir / SFT_CONFIG_FILE, iter_dir / LOG_FILE

    done = train_done(iter_dir)
    if done is not None:
        missing = missing_model_files(output_dir, cfg.finetuning_type)
        if missing:
            raise RuntimeError(f"{iter_dir / DONE_FILE} marks this training done, but {missing}: delete "
                               f"{iter_dir / DONE_FILE} and rerun to train it again.")
        log.info("training already done (%s): train loss %s; skipping", iter_dir / DONE_FILE, done.get("train_loss"))
        return output_dir

    # After the done check: rerunning a finished multi-node training needs no node variables.
    nodes = node_setup(cfg.nnodes if cfg.nnodes > 1 else 1, explicit_env(node_rank, master_addr, master_port),
                       what="training", key="train.nnodes")
    node_rank = nodes.rank if nodes else 0
    main_node = node_rank == 0
    env_nodes = node_count()
    if env_nodes != cfg.nnodes and (env_nodes > 1 or cfg.nnodes > 1):
        raise ValueError(f"NNODES={env_nodes} in the environment but train.nnodes={cfg.nnodes}: set "
                         f"train.nnodes={env_nodes} (sampling follows NNODES, training must match it).")
    gpus = visible_gpus()
    if cfg.num_gpus > gpus:
        raise ValueError(f"train.num_gpus={cfg.num_gpus} but {gpus} GPU(s) are visible; lower it or "
                         f"set CUDA_VISIBLE_DEVICES.")
    num_gpus = cfg.num_gpus or gpus
    plan = None
    if not (main_node and (output_dir / "all_results.json").is_file()):
        plan = training_plan(cfg, model_path=model_path, dataset_file=Path(dataset_dir) / f"{dataset_name}.json",
                             image_max_pixels=image_max_pixels, gpus=gpus,
                             world_size=max(1, num_gpus) * max(1, cfg.nnodes))
    if plan is not None:
        log.info("training plan: %d per device, gradient checkpointing %s (%s; estimate %.1f GiB)", plan.per_device,
                 "on" if plan.checkpointing else "off", plan.why, plan.estimate_gib)

    def render(plan: TrainPlan | None) -> dict[str, Any]:
        planned = cfg if plan is None else dataclasses.replace(cfg, per_device_batch_size=plan.per_device)
        args = render_sft_config(planned, model_path=model_path, dataset_dir=dataset_dir, dataset_name=dataset_name,
                                 output_dir=output_dir, num_gpus=num_gpus, seed=seed,
                                 image_min_pixels=image_min_pixels, image_max_pixels=image_max_pixels,
                                 adapter_name_or_path=adapter_name_or_path, on_gpu=gpus > 0)
        if plan is not None and "disable_gradient_checkpointing" not in cfg.overrides:  # explicit settings win
            args["disable_gradient_checkpointing"] = not plan.checkpointing
        return args

    args = render(plan)

    if main_node and (output_dir / "all_results.json").is_file():
        # Killed after LLaMA-Factory saved the model and its results, before train_done.json.
        log.info("%s holds a finished training; recording it", output_dir)
        return _finish(cfg, output_dir, iter_dir, yaml_path, log_path)
    def resume_or_clear(args: dict[str, Any]) -> None:
        """Resume from the newest complete checkpoint of an earlier attempt (killed, or out of memory), or
        clear what an attempt left before its first checkpoint."""
        resume = latest_checkpoint(output_dir)
        if resume is not None and "resume_from_checkpoint" not in cfg.overrides:
            log.info("resuming the killed training from %s", resume)
            args["resume_from_checkpoint"] = str(resume)
            if main_node:  # checkpoints cut off mid-save would be rewritten or rotated confusingly
                for partial in [p for p in output_dir.glob("checkpoint-*") if _step(p) > _step(resume)]:
                    shutil.rmtree(partial)
                atomic_write_json(iter_dir / RESUMED_FILE, {"from_step": _step(resume), "checkpoint": str(resume)})
        elif main_node:
            (iter_dir / RESUMED_FILE).unlink(missing_ok=True)  # a training from step 0
            if resume is None and output_dir.is_dir() and any(output_dir.iterdir()):
                # Killed before its first checkpoint: nothing to resume, and LLaMA-Factory refuses an output
                # folder that already holds model files.
                log.warning("%s holds a training killed before its first checkpoint; starting it again", output_dir)
                shutil.rmtree(output_dir)

    resume_or_clear(args)

    write_sft_config(args, yaml_path)
    argv, env = build_train_command(yaml_path, num_gpus, cfg.nnodes, node_rank, master_addr, master_port,
                                    deepspeed=bool(args.get("deepspeed")))
    log.info("training %s on %s/%s: %s processes, accumulation %d, lr %g, %s epochs%s (log: %s)",
             cfg.finetuning_type, dataset_dir, dataset_name, max(1, num_gpus) * cfg.nnodes,
             args["gradient_accumulation_steps"], args["learning_rate"], args["num_train_epochs"],
             f", max_steps {args['max_steps']}" if args.get("max_steps") else "", log_path)
    started = time.time()
    with log_path.open("a", encoding="utf-8") as f:
        f.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
    # A datasets cache of this training's own: concurrent trainings (e.g. a run and its ablations on
    # one machine) then never wait on each other's cache locks in ~/.cache/huggingface/datasets.
    # One per node: on shared storage the nodes' preprocessing would otherwise share one folder.
    datasets_cache = None
    if "HF_DATASETS_CACHE" not in os.environ:
        datasets_cache = iter_dir / f"hf_datasets_cache.node{node_rank}"
        env["HF_DATASETS_CACHE"] = str(datasets_cache)
    while True:
        try:
            run_logged(argv, log_path, env=subprocess_env(env))  # raises CommandError with the log's tail
            break
        except CommandError as e:
            # A planned batch that still runs out of memory: half of it, twice the accumulation, the same data.
            if plan is None or plan.per_device == 1 or not is_out_of_memory(e):
                raise
            plan = dataclasses.replace(plan, per_device=plan.per_device // 2,
                                       why=f"{plan.per_device} per device ran out of memory: retried with half")
            log.warning("training ran out of GPU memory at the planned per-device batch; retrying with %d per "
                        "device (gradient checkpointing %s)", plan.per_device, "on" if plan.checkpointing else "off")
            retry = render(plan)
            resume_or_clear(retry)
            write_sft_config(retry, yaml_path)
    if datasets_cache is not None:
        shutil.rmtree(datasets_cache, ignore_errors=True)  # only this training reads it
    log.info("training took %.0f s", time.time() - started)
    if not main_node:
        # Node 0 writes the model and train_done.json to the shared folder; wait for them so this
        # node's run.py does not go on before the step is recorded.
        wait_for_file(iter_dir / DONE_FILE, timeout_s=float(os.environ.get("R3V_NODE_WAIT_S", "1800")))
        return output_dir
    return _finish(cfg, output_dir, iter_dir, yaml_path, log_path, plan)


def _finish(cfg: TrainConfig, output_dir: Path, iter_dir: Path, yaml_path: Path, log_path: Path,
            plan: TrainPlan | None = None) -> Path:
    check_output(output_dir, cfg.finetuning_type, log_path)
    resumed = iter_dir / RESUMED_FILE
    summary = read_train_summary(output_dir, read_json(resumed)["from_step"] if resumed.is_file() else None)
    # The final model sits at the top of output_dir; the checkpoints only served resuming (a full
    # 7B one carries ~90 GB of optimizer state).
    for ckpt in output_dir.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    record = {"output_dir": str(output_dir), "finetuning_type": cfg.finetuning_type, **summary,
              **({"plan": plan.as_dict()} if plan is not None else {}),
              "config": str(yaml_path), "log": str(log_path),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(iter_dir / DONE_FILE, record)  # last: marks the step finished
    log.info("trained: %s (train loss %s, %s steps)", output_dir, summary["train_loss"], summary["global_step"])
    return output_dir


# --------------------------------------------------------------------------- entry point


@dataclass
class SFTConfig:
    """python -m train.sft: one LLaMA-Factory SFT run on a written dataset."""

    dataset_dir: str = _f("", "Folder with dataset_info.json (mix.llamafactory.write_dataset).")
    dataset_name: str = _f("", "Dataset name registered in dataset_info.json.")
    out_dir: str = _f("", "Folder for sft.yaml, train.log, model/ and train_done.json.")
    adapter: str = _f("", "A LoRA adapter to keep training (empty = a fresh adapter).")
    seed: int = _f(42, "Training seed.")
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def main(cfg: SFTConfig) -> Path:
    missing = [k for k in ("dataset_dir", "dataset_name", "out_dir") if not getattr(cfg, k)]
    if missing:
        raise SystemExit(f"train.sft: give {', '.join('--' + k for k in missing)} (see --help).")
    return train(cfg.train, model_path=cfg.model.base_model, dataset_dir=cfg.dataset_dir,
                 dataset_name=cfg.dataset_name, iter_dir=cfg.out_dir, seed=cfg.seed,
                 image_min_pixels=cfg.model.min_pixels, image_max_pixels=cfg.model.max_pixels,
                 adapter_name_or_path=cfg.adapter or None)


if __name__ == "__main__":
    main(parse_args(SFTConfig, prog="-m train.sft", doc=__doc__).config)
