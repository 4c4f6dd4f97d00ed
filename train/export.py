r"""Merge a LoRA adapter into its base model with `llamafactory-cli export`.

    python -m train.export --base_model models/geosynth-small --adapter outputs/run/iter1/model \
        --export_dir outputs/run/iter1/merged

The merged folder (weights, tokenizer, processor) loads with `AutoModelForImageTextToText` /
`AutoProcessor`, e.g. for tools that cannot apply an adapter (vLLM without LoRA). The export is
written to `<export_dir>.partial` and renamed at the end, so an existing `export_dir` is complete
and a rerun skips it. Beside it: `<name>.export.yaml` and `<name>.export.log`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import yaml

from core.io import atomic_write_text
from core.log import get_logger
from core.proc import run_logged
from train.llamafactory_cli import base_env, llamafactory_cli, subprocess_env

log = get_logger("export")


def render_export_config(base_model: str | Path, adapter_dir: str | Path, export_dir: str | Path,
                         template: str = "qwen2_vl", export_size: int = 5, export_device: str = "cpu",
                         infer_dtype: str = "auto") -> dict[str, Any]:
    """LLaMA-Factory 0.9.5 export arguments (hparams/model_args.py ExportArguments).

    export_size: shard size in GB. export_device: cpu (any machine) or auto (GPUs, faster).
    infer_dtype auto keeps the base model's dtype (an fp32 base becomes bf16 where supported).
    """
    return {
        "model_name_or_path": str(base_model),
        "adapter_name_or_path": str(Path(adapter_dir).resolve()),
        "template": template,
        "finetuning_type": "lora",
        "trust_remote_code": False,
        "export_dir": str(Path(export_dir).resolve()),
        "export_size": export_size,
        "export_device": export_device,
        "export_legacy_format": False,  # safetensors, not .bin
        "infer_dtype": infer_dtype,
    }


def export_merged(base_model: str | Path, adapter_dir: str | Path, export_dir: str | Path,
                  template: str = "qwen2_vl", *, export_size: int = 5, export_device: str = "cpu",
                  infer_dtype: str = "auto") -> Path:
    """Write base + adapter merged into export_dir and return it; raise CommandError on failure."""
    export_dir = Path(export_dir).resolve()
    if (export_dir / "config.json").is_file():
        log.info("%s already holds the merged model; skipping the export", export_dir)
        return export_dir
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json; give the folder of a LoRA adapter "
                                f"(train/sft.py writes it to <iteration>/model).")
    partial = export_dir.with_name(export_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    args = render_export_config(base_model, adapter_dir, partial, template, export_size, export_device,
                                infer_dtype)
    yaml_path = export_dir.with_name(export_dir.name + ".export.yaml")
    log_path = export_dir.with_name(export_dir.name + ".export.log")
    atomic_write_text(yaml_path, yaml.safe_dump(args, sort_keys=False))
    argv = [*llamafactory_cli(), "export", str(yaml_path)]
    run_logged(argv, log_path, env=subprocess_env(base_env()))  # raises CommandError with the log's tail
    if not (partial / "config.json").is_file() or not any(partial.glob("*.safetensors")):
        raise RuntimeError(f"export ended without a model: {partial} lacks config.json / *.safetensors; "
                           f"see {log_path}")
    shutil.rmtree(export_dir, ignore_errors=True)
    partial.rename(export_dir)
    log.info("merged %s into %s -> %s", adapter_dir, base_model, export_dir)
    return export_dir


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_model", required=True, help="The base model the adapter was trained on.")
    parser.add_argument("--adapter", required=True, help="The LoRA adapter folder.")
    parser.add_argument("--export_dir", required=True, help="Where to write the merged model.")
    parser.add_argument("--template", default="qwen2_vl", help="LLaMA-Factory chat template.")
    parser.add_argument("--export_size", type=int, default=5, help="Shard size in GB.")
    parser.add_argument("--export_device", default="cpu", choices=["cpu", "auto"], help="Device for merging.")
    a = parser.parse_args(argv)
    return export_merged(a.base_model, a.adapter, a.export_dir, a.template, export_size=a.export_size,
                         export_device=a.export_device)


if __name__ == "__main__":
    main()
