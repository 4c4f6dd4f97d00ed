"""Several nodes: this node's place in a launch that runs the same command on every node, and waiting
for another node's files on the shared run folder. Sampling (infer/sample.py) and training
(train/sft.py) both read these settings (docs/scaling.md).

NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT come from each node's environment, as torchrun names
them; a config's node count overrides NNODES.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.config import ConfigError

# How often a node looks for the other nodes' files on the shared run folder (seconds).
POLL_S = 2.0
# torchrun's default rendezvous port, used when MASTER_PORT is unset.
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class Nodes:
    """This node's place in a multi-node launch (every node runs the same command)."""

    count: int
    rank: int
    master_addr: str
    master_port: int


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer; set it to a whole number "
                          f"(docs/scaling.md).") from None


def node_count(env: Mapping[str, str] | None = None) -> int:
    """NNODES from the environment (1 when unset)."""
    return _env_int(os.environ if env is None else env, "NNODES", 1)


def node_setup(count: int = 0, env: Mapping[str, str] | None = None, *,
               what: str = "sampling", key: str = "sample.num_machines") -> Nodes | None:
    """Multi-node settings: the node count from the config (`count`, named `key` in messages), else
    NNODES; this node's rank and node 0's address from NODE_RANK / MASTER_ADDR / MASTER_PORT. None on
    one node. `what` names the stage in error messages ("sampling", "training")."""
    env = os.environ if env is None else env
    count = count or node_count(env)
    if count <= 1:
        return None
    for name, meaning in (("NODE_RANK", f"this node's rank, 0..{count - 1}"), ("MASTER_ADDR", "node 0's address")):
        if not env.get(name):
            raise ConfigError(f"{what} on {count} nodes (NNODES / {key}) but {name} is not set; "
                              f"set it ({meaning}) in every node's environment, e.g. NNODES={count} NODE_RANK=1 "
                              f"MASTER_ADDR=10.0.0.1 MASTER_PORT={DEFAULT_MASTER_PORT} (docs/scaling.md).")
    rank = _env_int(env, "NODE_RANK", 0)
    if not 0 <= rank < count:
        raise ConfigError(f"NODE_RANK={rank} is outside 0..{count - 1} for {count} nodes; give each node "
                          f"its own rank, node 0 being the one at MASTER_ADDR.")
    return Nodes(count, rank, env["MASTER_ADDR"], _env_int(env, "MASTER_PORT", DEFAULT_MASTER_PORT))


def wait_until(ready: Callable[[], bool], timeout_s: float, poll_s: float | None = None) -> bool:
    """Poll ready() every poll_s (default POLL_S, read at call time) until it holds; False after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S if poll_s is None else poll_s)
    return True
