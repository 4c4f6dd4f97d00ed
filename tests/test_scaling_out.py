"""Scaling out (docs/scaling.md): the exact commands and environments built for 1 GPU, 2 GPUs on one
node, and 2 nodes x 2 GPUs, for sampling (accelerate) and training (llamafactory-cli / torchrun);
and the multi-node finish: node 0 waits for every rank's records, then merges; other nodes wait for
its merged file. Pure: no GPU, no model, no subprocess (the launched ranks are played by threads).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import pytest

from core.config import REPO_ROOT, ConfigError, SampleConfig, TrainConfig
from core.io import read_json
from core import nodes
from infer import sample
from infer.generate import Output, Request
from core.nodes import Nodes, node_setup
from infer.sample import SampleJob, accelerate_command, launch, merge, run_shard, shard_path
from train import sft

NODE_VARS = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
RENDER = dict(model_path="/models/base", dataset_dir="/data", dataset_name="mix", output_dir="/out",
              seed=7, image_min_pixels=3136, image_max_pixels=401408)
TWO_NODES = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29555"}
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.fixture(autouse=True)
def one_node(monkeypatch):
    """Tests start on one node whatever the machine's environment says; fast polling."""
    for name in NODE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(nodes, "POLL_S", 0.02)


def fake_generate(requests, params):
    """Deterministic outputs: "Answer: A" for ids ending in an even digit, else B."""
    return [[Output(text=f"{r.id} #{i}. Answer: {'A' if int(r.id[-1]) % 2 == 0 else 'B'}", num_tokens=4,
                    truncated=False) for i in range(params.num_samples)] for r in requests]


def items(n: int = 10) -> list[Request]:
    return [Request(f"q{i}", "img.png", "x" * (i % 4), seed=i) for i in range(n)]


def job_in(folder: Path) -> SampleJob:
    folder.mkdir(parents=True, exist_ok=True)
    return SampleJob(out=str(folder / "s.jsonl"), model={}, checkpoint=None, params=dict(num_samples=2),
                     batch_size=3, items=items())


@pytest.fixture
def reference(tmp_path) -> list[dict]:
    """The one-process result every layout must reproduce."""
    job = job_in(tmp_path / "reference")
    run_shard(job, 0, 1, generate_fn=fake_generate)
    return merge(job)


def run_rank(job: SampleJob | str, rank: int, world: int) -> None:
    """One launched rank: the job itself, or the job file that `launch` wrote for accelerate."""
    if not isinstance(job, SampleJob):
        job = SampleJob.from_dict(read_json(job))
    run_shard(job, rank, world, generate_fn=fake_generate)


def flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def sample_cfg(**kw) -> SampleConfig:
    return SampleConfig(num_samples=2, batch_size=3, **kw)


def sample_with(cfg: SampleConfig, out: Path) -> list[dict]:
    return sample.sample_items(items(), out, model_cfg=sample.ModelConfig(), sample_cfg=cfg, checkpoint=None)


# --------------------------------------------------------------------------- (a) one GPU


def test_one_gpu_samples_in_process_and_trains_without_torchrun(monkeypatch, tmp_path, reference):
    launched = []
    monkeypatch.setattr(sample, "run_logged", lambda cmd, *a, **k: launched.append(cmd))
    monkeypatch.setattr(sample, "run_shard", lambda job, rank, world: run_shard(job, rank, world,
                                                                                  generate_fn=fake_generate))
    records = sample_with(sample_cfg(num_processes=1), tmp_path / "s.jsonl")
    assert launched == []  # no accelerate: the one process runs in this interpreter
    assert records == reference
    assert not list(tmp_path.glob("*.job.json"))

    argv, env = sft.build_train_command("/run/iter_1/sft.yaml", num_gpus=1)
    assert argv[-2:] == ["train", "/run/iter_1/sft.yaml"]
    assert env["NPROC_PER_NODE"] == "1"
    assert not {"FORCE_TORCHRUN", "NNODES", "NODE_RANK", "MASTER_ADDR"} & env.keys()
    args = sft.render_sft_config(TrainConfig(), num_gpus=1, on_gpu=True, **RENDER)
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (2, 32)


# --------------------------------------------------------------------------- (b) two GPUs, one node


def test_two_gpus_one_node(monkeypatch, tmp_path, reference):
    launched = []

    def fake_accelerate(cmd, log_path, env=None):  # plays the ranks accelerate would start
        launched.append((cmd, log_path))
        world = int(flag(cmd, "--num_processes"))
        for rank in range(world):
            run_rank(flag(cmd, "--job"), rank, world)

    monkeypatch.setattr(sample, "run_logged", fake_accelerate)
    out = tmp_path / "s.jsonl"
    assert sample_with(sample_cfg(num_processes=2), out) == reference
    [(cmd, log_path)] = launched
    port = flag(cmd, "--main_process_port")
    assert cmd == ACCELERATE + ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                                "--dynamo_backend", "no", "--multi_gpu", "--main_process_port", port,
                                "-m", "infer.sample", "--job", str(tmp_path / "s.job.json")]
    assert log_path == tmp_path / "s.log"
    assert not list(tmp_path.glob("s.rank*.jsonl"))  # merged and cleaned up

    _, env = sft.build_train_command("/run/iter_1/sft.yaml", num_gpus=2)
    assert (env["FORCE_TORCHRUN"], env["NPROC_PER_NODE"]) == ("1", "2")
    assert not {"NNODES", "NODE_RANK", "MASTER_ADDR"} & env.keys()
    args = sft.render_sft_config(TrainConfig(), num_gpus=2, on_gpu=True, **RENDER)
    assert args["gradient_accumulation_steps"] == 16  # 64 = 2 per device x 2 GPUs x 16


# --------------------------------------------------------------------------- (c) two nodes x two GPUs


def test_two_nodes_two_gpus_each(monkeypatch):
    for name, value in TWO_NODES.items():
        monkeypatch.setenv(name, value)
    nodes = node_setup()
    assert nodes == Nodes(count=2, rank=1, master_addr="10.0.0.1", master_port=29555)
    cmd = accelerate_command(Path("/shared/run/s.job.json"), 2, nodes=nodes)
    assert cmd == ACCELERATE + ["--num_processes", "4", "--num_machines", "2", "--mixed_precision", "no",
                                "--dynamo_backend", "no", "--multi_gpu", "--machine_rank", "1",
                                "--main_process_ip", "10.0.0.1", "--main_process_port", "29555",
                                "-m", "infer.sample", "--job", "/shared/run/s.job.json"]

    cfg = TrainConfig(nnodes=2)
    _, env = sft.build_train_command("/shared/run/iter_1/sft.yaml", num_gpus=2, nnodes=cfg.nnodes)
    assert {k: env[k] for k in ("FORCE_TORCHRUN", "NPROC_PER_NODE", *NODE_VARS)} == {
        "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", **TWO_NODES}
    args = sft.render_sft_config(cfg, num_gpus=2, on_gpu=True, **RENDER)
    assert args["gradient_accumulation_steps"] == 8  # 64 = 2 per device x 2 GPUs x 2 nodes x 8


def test_master_port_defaults_like_torchrun(monkeypatch):
    monkeypatch.setenv("NNODES", "2")
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    assert node_setup().master_port == 29500
    assert node_setup(count=1) is None  # the config's node count wins over NNODES


@pytest.mark.parametrize("missing", ["MASTER_ADDR", "NODE_RANK"])
def test_a_missing_node_variable_is_named(monkeypatch, missing):
    for name, value in TWO_NODES.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{missing} is not set; set it"):
        node_setup()
    with pytest.raises(ValueError, match=missing):
        sft.build_train_command("/x.yaml", num_gpus=2, nnodes=2)


def test_config_node_count_needs_the_variables_too():
    with pytest.raises(ConfigError, match="sampling on 2 nodes .* NODE_RANK is not set"):
        node_setup(count=2, env={})


@pytest.mark.parametrize("env, match", [
    ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"}, r"NODE_RANK=2 is outside 0\.\.1"),
    ({"NNODES": "two"}, "NNODES='two' is not an integer"),
    ({"NNODES": "2", "NODE_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "x"}, "MASTER_PORT='x'"),
])
def test_bad_node_variables(env, match):
    with pytest.raises(ConfigError, match=match):
        node_setup(env=env)


# --------------------------------------------------------------------------- accelerate itself


def parsed_by_accelerate(cmd: list[str]):
    """What accelerate 1.11's own launcher makes of our argv, down to the torchrun arguments."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[len(ACCELERATE):]))
    prepare_multi_gpu_env(args)
    return args


@pytest.mark.parametrize("config_file", ["", "configs/accelerate/multi_node.yaml"])
def test_accelerate_reads_our_multi_node_argv(config_file):
    cmd = accelerate_command(Path("/j.json"), 2, nodes=Nodes(2, 1, "10.0.0.1", 29555), config_file=config_file)
    args = parsed_by_accelerate(cmd)
    assert args.multi_gpu and args.mixed_precision == "no"
    # --num_processes is the total: accelerate starts total / num_machines processes per node.
    assert (args.nproc_per_node, args.nnodes, args.node_rank) == ("2", "2", 1)
    assert args.rdzv_endpoint == "10.0.0.1:29555"


def test_accelerate_reads_our_one_node_argv_with_a_config_file():
    cmd = accelerate_command(Path("/j.json"), 4, config_file="configs/accelerate/multi_gpu.yaml")
    assert flag(cmd, "--config_file") == str(REPO_ROOT / "configs/accelerate/multi_gpu.yaml")
    args = parsed_by_accelerate(cmd)
    assert args.multi_gpu and args.nproc_per_node == "4" and args.num_machines == 1


@pytest.mark.parametrize("name, distributed_type, num_processes", [
    ("single_gpu", "NO", 1), ("multi_gpu", "MULTI_GPU", -1), ("multi_node", "MULTI_GPU", -1)])
def test_accelerate_config_files_load(name, distributed_type, num_processes):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.compute_environment.value == "LOCAL_MACHINE" and cfg.mixed_precision == "no"
    assert cfg.distributed_type.value == distributed_type and cfg.num_processes == num_processes


def test_a_missing_accelerate_config_is_named():
    with pytest.raises(ConfigError, match="sample.accelerate_config='nope.yaml': no such file"):
        accelerate_command(Path("/j.json"), 2, config_file="nope.yaml")


# --------------------------------------------------------------------------- the multi-node finish


def late(delay: float, fn, *args) -> threading.Thread:
    def later():
        time.sleep(delay)
        fn(*args)

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    return thread


def test_node0_waits_for_a_late_shard_then_merges(monkeypatch, tmp_path, reference):
    job = job_in(tmp_path / "shared")
    threads = []

    def node0_returns_early(cmd, log_path, env=None):
        # accelerate on node 0 returns after its own rank; node 1's rank shows up on the share later.
        run_rank(job, 0, 2)
        threads.append(late(0.3, run_rank, job, 1, 2))
        assert log_path.name == "s.node0.log"

    monkeypatch.setattr(sample, "run_logged", node0_returns_early)
    started = time.monotonic()
    records = launch(job, 1, nodes=Nodes(2, 0, "10.0.0.1", 29555), wait_s=30)
    assert time.monotonic() - started >= 0.3  # it waited for the late shard
    assert records == reference
    assert not shard_path(Path(job.out), 1).exists()  # merged after the late shard, then cleaned up
    threads[0].join()


def test_other_nodes_wait_for_node0s_merged_file(monkeypatch, tmp_path, reference):
    job = job_in(tmp_path / "shared")

    def node1_then_node0_merges(cmd, log_path, env=None):
        run_rank(job, 1, 2)
        assert log_path.name == "s.node1.log"

        def node0():
            run_rank(job, 0, 2)
            merge(job)

        late(0.3, node0)

    monkeypatch.setattr(sample, "run_logged", node1_then_node0_merges)
    merged = []
    monkeypatch.setattr(sample, "merge", lambda j: merged.append(j))  # only node 0 merges
    assert launch(job, 1, nodes=Nodes(2, 1, "10.0.0.1", 29555), wait_s=30) == reference
    assert merged == []


def test_node0_gives_up_with_a_clear_message(monkeypatch, tmp_path):
    job = job_in(tmp_path / "shared")
    monkeypatch.setattr(sample, "run_logged", lambda cmd, log_path, env=None: run_rank(job, 0, 2))
    with pytest.raises(RuntimeError, match=r"node 0: .*requests still have no record 0 s .*shared by all nodes"):
        launch(job, 1, nodes=Nodes(2, 0, "h", 29500), wait_s=0.1)


def test_other_node_gives_up_with_a_clear_message(monkeypatch, tmp_path):
    job = job_in(tmp_path / "shared")
    monkeypatch.setattr(sample, "run_logged", lambda cmd, log_path, env=None: run_rank(job, 1, 2))
    with pytest.raises(RuntimeError, match=re.escape("node 1: ") + r".*did not appear.*s\.node0\.log"):
        launch(job, 1, nodes=Nodes(2, 1, "h", 29500), wait_s=0.1)


def test_two_nodes_through_the_run_config(monkeypatch, tmp_path, reference):
    """sample.num_machines / accelerate_config / node_wait_s reach the launch (what run.py passes)."""
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    launched = []

    def all_ranks(cmd, log_path, env=None):
        launched.append(cmd)
        world = int(flag(cmd, "--num_processes"))
        for rank in range(world):
            run_rank(flag(cmd, "--job"), rank, world)

    monkeypatch.setattr(sample, "run_logged", all_ranks)
    cfg = sample_cfg(num_processes=2, num_machines=2, accelerate_config="configs/accelerate/multi_node.yaml")
    assert sample_with(cfg, tmp_path / "s.jsonl") == reference
    [cmd] = launched
    assert flag(cmd, "--config_file") == str(REPO_ROOT / "configs/accelerate/multi_node.yaml")
    assert (flag(cmd, "--num_processes"), flag(cmd, "--num_machines"), flag(cmd, "--machine_rank")) == ("4", "2", "0")
    assert (flag(cmd, "--main_process_ip"), flag(cmd, "--main_process_port")) == ("10.0.0.1", "29500")


def test_training_names_its_own_key_when_a_node_variable_is_missing(monkeypatch):
    """core.nodes.node_setup serves both stages; training's message names train.nnodes, not sampling's key."""
    monkeypatch.setenv("NNODES", "2")
    monkeypatch.setenv("NODE_RANK", "1")
    with pytest.raises(ConfigError, match=r"training on 2 nodes \(NNODES / train.nnodes\) but MASTER_ADDR is not set"):
        sft.build_train_command("/x.yaml", num_gpus=2, nnodes=2)
    # what train() is given wins over the environment
    _, env = sft.build_train_command("/x.yaml", num_gpus=2, nnodes=2, master_addr="10.0.0.9", node_rank=0)
    assert (env["NODE_RANK"], env["MASTER_ADDR"], env["MASTER_PORT"]) == ("0", "10.0.0.9", "29500")


def test_wait_until_reads_the_poll_interval_when_called(monkeypatch):
    calls = []
    monkeypatch.setattr(nodes.time, "sleep", lambda s: calls.append(s))
    state = iter([False, False, True])
    assert nodes.wait_until(lambda: next(state), timeout_s=60)
    assert calls == [0.02, 0.02]  # the fixture's patched POLL_S, not the default bound at definition
    assert not nodes.wait_until(lambda: False, timeout_s=0)
