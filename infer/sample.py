"""Sample K rationales per request over all visible GPUs, resumably: the `accelerate launch` entry point.

    python -m infer.sample --job outputs/run/iter_1/train_samples.job.json
    accelerate launch --num_processes 2 -m infer.sample --job ...    (what `launch` runs for 2 GPUs)

A job (JSON, written by `launch`) lists the requests, the model and the generation parameters.
Requests are sorted by prompt length and cut into fixed batches; batch i goes to rank
i % world_size, so every batch, and with per-row seeds every sample, is the same on 1 or N GPUs.
Each rank appends finished batches to its own shard `<out>.rank<r>.jsonl` (flushed to disk);
the launching process merges the shards by request id into `<out>` (written last, atomically).
A killed run, restarted with the same job, skips every request already in a shard.
On several nodes (NNODES > 1) every node runs the same command on a shared run folder; node 0
merges, the others wait for its merged file (docs/scaling.md).

Record per request: id, prompt, predictions[K], num_tokens[K], truncated[K], plus the request's
meta. The engine knows no prompt format and judges nothing: `merge` applies the caller's `finish`
(eval.judge adds answers[K] and correct[K]) before the merged file is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import REPO_ROOT, ConfigError, ModelConfig, SampleConfig
from core.io import append_jsonl, drop_torn_tail, atomic_write_json, atomic_write_jsonl, iter_jsonl, read_json
from core.log import get_logger
from core.nodes import Nodes, node_setup, wait_until
from core.proc import free_port, run_logged
from infer.generate import Request

log = get_logger("sample")

# Applied to the merged records before the merged file is written (e.g. eval.judge's judging).
Finish = Callable[[list[dict]], list[dict]]


@dataclass
class SampleJob:
    out: str
    model: dict                      # ModelConfig fields
    checkpoint: str | None
    params: dict                     # GenParams fields
    batch_size: int
    items: list[Request] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "SampleJob":
        d = dict(d)
        d["items"] = [Request(**it) for it in d.get("items", [])]
        d.pop("rel_tol", None)  # job files written before judging left the engine
        return cls(**d)


def shard_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.stem}.rank{rank}.jsonl")


def shard_paths(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.stem}.rank*.jsonl"))


def stats_path(out: Path, rank: int | None = None) -> Path:
    """Timing of sampling: one file per rank while running, `<out>.stats.json` once merged."""
    return out.with_name(f"{out.stem}.rank{rank}.stats.json" if rank is not None else f"{out.stem}.stats.json")


def record_attempt(out: Path, rank: int, entry: dict, *, new: bool) -> None:
    """Write this attempt's figures into the rank's file, where a resumed job keeps every attempt's: a new
    entry after its first batch (new=True), then that entry updated after each batch, so the finished
    batches of a killed attempt are counted too."""
    path = stats_path(out, rank)
    attempts = read_json(path)["attempts"] if path.is_file() else []
    atomic_write_json(path, {"rank": rank, "attempts": (attempts if new else attempts[:-1]) + [entry]})


def merge_stats(out: Path) -> dict | None:
    """Combine the ranks' timings into `<out>.stats.json` and drop the rank files.

    Per rank, its attempts are summed; for the job, questions and tokens are summed over ranks and the
    time is the slowest rank's (ranks run side by side). Rank files that should exist (by the world
    sizes recorded) but do not, e.g. a node whose files are not visible, are listed as missing.
    """
    paths = sorted(out.parent.glob(f"{out.stem}.rank*.stats.json"))
    if not paths:
        return None
    ranks = []
    for p in paths:
        data = read_json(p)
        attempts = data["attempts"]
        ranks.append({"rank": data["rank"], "attempts": len(attempts),
                      "questions": sum(a["questions"] for a in attempts), "tokens": sum(a["tokens"] for a in attempts),
                      "seconds": round(sum(a["seconds"] for a in attempts), 3),
                      "peak_gpu_memory_gib": max((a["peak_gpu_memory_gib"] for a in attempts
                                                  if a.get("peak_gpu_memory_gib") is not None), default=None),
                      "world_size": max(a["world_size"] for a in attempts),
                      "device": attempts[-1]["device"]})
    seconds = max(r["seconds"] for r in ranks)
    tokens = sum(r["tokens"] for r in ranks)
    questions = sum(r["questions"] for r in ranks)
    expected = max(r["world_size"] for r in ranks)
    stats = {"ranks": len(ranks), "missing_ranks": sorted(set(range(expected)) - {r["rank"] for r in ranks}),
             "attempts": max(r["attempts"] for r in ranks), "questions": questions, "tokens": tokens,
             "seconds": seconds, "questions_per_s": round(questions / seconds, 3) if seconds else None,
             "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
             "peak_gpu_memory_gib": max((r["peak_gpu_memory_gib"] for r in ranks
                                         if r["peak_gpu_memory_gib"] is not None), default=None),
             "per_rank": ranks}
    atomic_write_json(stats_path(out), stats)
    for p in paths:
        p.unlink()
    return stats


def done_records(out: Path) -> dict[str, dict]:
    """Records already written by any rank of any earlier attempt (a torn last line is redone)."""
    done: dict[str, dict] = {}
    for path in shard_paths(out):
        for _, record in iter_jsonl(path, allow_partial_last_line=True):
            done[record["id"]] = record
    return done


def plan_batches(items: list[Request], batch_size: int) -> list[list[Request]]:
    """Fixed batches of similar prompt length, longest first (an out-of-memory shows at once)."""
    ordered = sorted(items, key=lambda it: (-len(it.prompt), it.id))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def engine_record(request: Request, outputs: list) -> dict:
    """What the engine writes for one request: its texts and their token counts, plus its meta."""
    return {"id": request.id, "prompt": request.prompt, "predictions": [o.text for o in outputs],
            "num_tokens": [o.num_tokens for o in outputs], "truncated": [o.truncated for o in outputs],
            **(request.meta or {})}


def run_shard(job: SampleJob, rank: int, world_size: int, *, generate_fn=None) -> int:
    """Generate this rank's unfinished batches into its shard; returns the number of new records.

    generate_fn(requests, params) -> list[list[Output]] replaces the model (tests use a fake).
    """
    from infer.generate import GenParams

    out = Path(job.out)
    params = GenParams(**job.params)
    done = done_records(out)
    mine = [b for i, b in enumerate(plan_batches(job.items, job.batch_size)) if i % world_size == rank]
    todo = [[it for it in b if it.id not in done] for b in mine]
    todo = [b for b in todo if b]
    total = sum(len(b) for b in todo)
    if not total:
        return 0
    if generate_fn is None:
        from infer import generate, model

        loaded = model.load(ModelConfig(**job.model), job.checkpoint)
        generate_fn = lambda reqs, p: generate.generate_batch(loaded, reqs, p)  # noqa: E731

    from tqdm import tqdm

    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()  # this sampling's peak, not the process's so far
    bar = tqdm(total=total, desc=out.stem, unit="q", disable=rank != 0, dynamic_ncols=True)
    tokens, questions, start = 0, 0, time.perf_counter()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"

    def attempt(finished: bool) -> dict:
        """This attempt's figures so far (model loading excluded)."""
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        return {"questions": questions, "sequences": questions * params.num_samples, "tokens": tokens,
                "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
                "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None, "world_size": world_size,
                "device": device, "finished": finished}

    drop_torn_tail(shard_path(out, rank))
    with shard_path(out, rank).open("a", encoding="utf-8") as f:
        for i, batch in enumerate(todo):
            outputs = generate_fn(batch, params)
            records = [engine_record(it, outs) for it, outs in zip(batch, outputs)]
            append_jsonl(f, records)  # a finished batch survives a kill
            tokens += sum(sum(r["num_tokens"]) for r in records)
            questions += len(batch)
            record_attempt(out, rank, attempt(finished=False), new=i == 0)  # and so do its figures
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.0f}")
    bar.close()
    final = attempt(finished=True)
    seconds = final["seconds"]
    record_attempt(out, rank, final, new=False)
    log.info("%s rank %d: %d questions, %d tokens in %.1f s (%.0f tokens/s)", out.name, rank, total, tokens,
             seconds, tokens / seconds if seconds else 0.0)
    # In-process sampling must hand the GPU back before llamafactory-cli trains on the same card.
    generate_fn = None
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return total


def merge(job: SampleJob, finish: Finish | None = None) -> list[dict]:
    """Merge the shards by id into job.out (request order), written last; then drop the shards.

    finish(records) -> records runs before the write, so the final file holds what it returns."""
    out = Path(job.out)
    done = done_records(out)
    missing = [it.id for it in job.items if it.id not in done]
    if missing:
        raise RuntimeError(f"{out}: {len(missing)} requests have no record after sampling "
                           f"(first: {missing[:5]}); rerun the same command to finish them.")
    records = [done[it.id] for it in job.items]
    if finish is not None:
        records = finish(records)
    merge_stats(out)
    atomic_write_jsonl(out, records)
    for path in shard_paths(out):
        path.unlink()
    return records


def launch(job: SampleJob, num_processes: int = 1, *, log_path: Path | None = None,
           main_process_port: int | None = None, nodes: Nodes | None = None, config_file: str = "",
           wait_s: float = 900.0, finish: Finish | None = None) -> list[dict]:
    """Run a job to completion (resuming if shards exist) and return the merged records.

    num_processes: processes on this node. One process in all runs in this interpreter; more run
    under `accelerate launch`, one per GPU. With `nodes`, every node runs this with the same job in
    a run folder on storage shared by all nodes: node 0 merges once every rank's records are
    there, the other nodes wait (up to wait_s) for its merged file. `finish` is merge's.
    """
    out = Path(job.out)
    if out.is_file():
        return [r for _, r in iter_jsonl(out)]
    out.parent.mkdir(parents=True, exist_ok=True)
    if num_processes * (nodes.count if nodes else 1) <= 1:
        run_shard(job, 0, 1)
        return merge(job, finish)
    job_path = out.with_name(f"{out.stem}.job.json")
    atomic_write_json(job_path, dataclasses.asdict(job))
    cmd = accelerate_command(job_path, num_processes, main_process_port=main_process_port, nodes=nodes,
                             config_file=config_file)
    # One log per node: on shared storage the nodes would otherwise interleave their lines.
    node_log = out.with_name(f"{out.stem}.node{nodes.rank}.log") if nodes else out.with_name(f"{out.stem}.log")
    run_logged(cmd, log_path or node_log)
    if nodes is None:
        return merge(job, finish)
    return finish_on_nodes(job, nodes, wait_s, finish)


def missing_ids(job: SampleJob) -> list[str]:
    done = done_records(Path(job.out))
    return [it.id for it in job.items if it.id not in done]


def finish_on_nodes(job: SampleJob, nodes: Nodes, wait_s: float, finish: Finish | None = None) -> list[dict]:
    """Node 0 merges; the other nodes read its merged file.

    `accelerate launch` returns when this node's processes exit. Every rank ends at a barrier
    (main()), so the other nodes' ranks have finished too, but a shared filesystem may show their
    last lines late, and a node that crashed leaves its shard short: node 0 polls until every
    request has a record before merging (merge() refuses missing ones).
    """
    out = Path(job.out)
    if nodes.rank == 0:
        if not wait_until(lambda: not missing_ids(job), wait_s):
            missing = missing_ids(job)
            raise RuntimeError(
                f"node 0: {out}: {len(missing)} requests still have no record {wait_s:.0f} s after "
                f"`accelerate launch` returned (first: {missing[:5]}). Every node's ranks write "
                f"{out.stem}.rank*.jsonl into {out.parent}: put the run folder on storage shared by all "
                f"nodes, check the other nodes' logs ({out.stem}.node*.log), or raise sample.node_wait_s; "
                f"rerunning the same command on every node resumes.")
        return merge(job, finish)
    log.info("node %d: waiting up to %.0f s for node 0 to merge %s", nodes.rank, wait_s, out)
    if not wait_until(out.is_file, wait_s):
        raise RuntimeError(
            f"node {nodes.rank}: {out} did not appear within {wait_s:.0f} s of `accelerate launch` "
            f"returning; node 0 writes it after merging the shards. Check node 0's log "
            f"({out.with_name(out.stem + '.node0.log')}), that the run folder is on storage shared by "
            f"all nodes, or raise sample.node_wait_s.")
    return [r for _, r in iter_jsonl(out)]


def accelerate_config_path(name: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else REPO_ROOT / name
    if not path.is_file():
        raise ConfigError(f"sample.accelerate_config={name!r}: no such file {path}; give a path relative to "
                          f"{REPO_ROOT} or an absolute one (see configs/accelerate/), or leave it empty.")
    return path


def accelerate_command(job_path: Path, num_processes: int, *, main_process_port: int | None = None,
                       nodes: Nodes | None = None, config_file: str = "") -> list[str]:
    """`accelerate launch` argv for num_processes on this node (of nodes.count nodes).

    accelerate's --num_processes counts all machines' processes (it starts total / num_machines
    per node). Flags win over config_file's values, so the file only adds what is not passed here.
    """
    machines = nodes.count if nodes else 1
    total = num_processes * machines
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        cmd += ["--config_file", str(accelerate_config_path(config_file))]
    # mixed_precision no: sampling loads the model in its own dtype (model.dtype).
    cmd += ["--num_processes", str(total), "--num_machines", str(machines), "--mixed_precision", "no",
            "--dynamo_backend", "no"]
    if total > 1:
        cmd += ["--multi_gpu"]
    if nodes:
        # Every node must name the same port: node 0's, from MASTER_PORT.
        cmd += ["--machine_rank", str(nodes.rank), "--main_process_ip", nodes.master_addr,
                "--main_process_port", str(main_process_port or nodes.master_port)]
    else:
        # A free port per run, so two runs on one machine do not collide (the reference fixed 20650).
        cmd += ["--main_process_port", str(main_process_port or free_port())]
    return cmd + ["-m", "infer.sample", "--job", str(job_path)]


def num_processes(cfg: SampleConfig) -> int:
    """Data-parallel workers on this node: the configured number, else one per visible GPU, else 1 (CPU)."""
    if cfg.num_processes:
        return cfg.num_processes
    import torch

    return max(1, torch.cuda.device_count())


def sample_items(items: list[Request], out: Path, *, model_cfg: ModelConfig, sample_cfg: SampleConfig,
                 checkpoint: str | None, greedy: bool = False, num_samples: int | None = None,
                 finish: Finish | None = None) -> list[dict]:
    """Sample (or greedily answer) every request with the given model; resumable, returns the records
    (after `finish`, which runs once, on the node that merges)."""
    params = dict(num_samples=1 if greedy else (num_samples or sample_cfg.num_samples), greedy=greedy,
                  temperature=sample_cfg.temperature, top_p=sample_cfg.top_p, top_k=sample_cfg.top_k,
                  max_new_tokens=sample_cfg.max_new_tokens, min_pixels=model_cfg.min_pixels,
                  max_pixels=model_cfg.max_pixels)
    job = SampleJob(out=str(out), model=dataclasses.asdict(model_cfg), checkpoint=checkpoint, params=params,
                    batch_size=sample_cfg.batch_size, items=items)
    return launch(job, num_processes(sample_cfg), nodes=node_setup(sample_cfg.num_machines),
                  config_file=sample_cfg.accelerate_config, wait_s=sample_cfg.node_wait_s, finish=finish)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", required=True, help="job JSON written by infer.sample.launch")
    args = parser.parse_args(argv)
    from accelerate import PartialState

    state = PartialState()  # this rank's index and device, from accelerate's environment
    if state.device.type == "cuda":
        import torch

        # One process gets a bare "cuda" device; with several, each rank its own index.
        torch.cuda.set_device(state.device.index if state.device.index is not None else 0)
    job = SampleJob.from_dict(read_json(args.job))
    run_shard(job, state.process_index, state.num_processes)
    state.wait_for_everyone()


if __name__ == "__main__":
    main()
