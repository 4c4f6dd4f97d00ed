"""The LLaMA-Factory writer: the only module that knows LLaMA-Factory's dataset schema.

A mix item {"kind", "id", "image", "prompt", "response"} becomes a sharegpt record

    {"messages": [{"role": "user", "content": "<image>{prompt}"},
                  {"role": "assistant", "content": "{response}"}],
     "images": ["/abs/path.png"]}

and the dataset is registered in a `dataset_info.json` inside the run's own dataset folder (never
a shared one, so two runs cannot overwrite each other's entries, REFERENCE.md §7.14).
"""

from __future__ import annotations

from pathlib import Path

from core.io import atomic_write_json, read_json

IMAGE_TOKEN = "<image>"


def to_sharegpt(item: dict) -> dict:
    prompt, response = item["prompt"], item["response"]
    if IMAGE_TOKEN in prompt or IMAGE_TOKEN in response:
        # LLaMA-Factory matches each <image> to one path; a stray one would shift the pairing.
        raise ValueError(f"mix item {item.get('id')}: its text already contains {IMAGE_TOKEN!r}; "
                         f"remove it from the question text.")
    return {"messages": [{"role": "user", "content": f"{IMAGE_TOKEN}{prompt}"},
                         {"role": "assistant", "content": response}],
            "images": [item["image"]]}


def dataset_info_entry(file_name: str) -> dict:
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant"}}


def write_dataset(items: list[dict], dataset_dir: str | Path, name: str) -> Path:
    """Write `<dataset_dir>/<name>.json` and register it in `<dataset_dir>/dataset_info.json`."""
    dataset_dir = Path(dataset_dir)
    if not items:
        raise ValueError(f"dataset {name}: no items to write; check the mix counts (mix_stats.json).")
    path = atomic_write_json(dataset_dir / f"{name}.json", [to_sharegpt(it) for it in items])
    info_path = dataset_dir / "dataset_info.json"
    info = read_json(info_path) if info_path.is_file() else {}
    info[name] = dataset_info_entry(path.name)
    atomic_write_json(info_path, info)
    return path
