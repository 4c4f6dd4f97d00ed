"""Running LLaMA-Factory's CLI: where the command is, and the environment it gets.

One home for what training (train/sft.py) and LoRA export (train/export.py) both need: the
`llamafactory-cli` beside this interpreter, the variables that keep it offline and quiet, and the
removal of an enclosing distributed job's variables.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Variables of an enclosing torchrun / accelerate job: inherited by a single-process
# llamafactory-cli, they would make it join that job's process group.
PARENT_DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK")


def llamafactory_cli() -> list[str]:
    """The CLI beside this interpreter (the venv), else on PATH, else `python -m llamafactory.cli`
    (pip --target installs put no script next to the system interpreter)."""
    beside = Path(sys.executable).parent / "llamafactory-cli"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("llamafactory-cli")
    return [found] if found else [sys.executable, "-m", "llamafactory.cli"]


def base_env() -> dict[str, str]:
    """The variables every llamafactory-cli call gets: offline, no version check, no W&B."""
    return {
        "DISABLE_VERSION_CHECK": "1",  # the GPU machines carry other transformers versions (DESIGN.md §5)
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_DISABLED": "true",
        "TOKENIZERS_PARALLELISM": "false",
        # torchrun is looked up on PATH by llamafactory-cli: take the one beside this interpreter.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def subprocess_env(updates: dict[str, str]) -> dict[str, str]:
    """This process's environment without an enclosing job's distributed variables, plus `updates`."""
    env = {k: v for k, v in os.environ.items() if k not in PARENT_DIST_VARS}
    env.update(updates)
    return env
