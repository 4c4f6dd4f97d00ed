"""Files: JSON / JSON Lines reading and writing, atomic replacement.

A step writes its final file last through `atomic_write_*` (write to a temporary file in the
same folder, then rename), so a killed process never leaves a half-written final file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; final files are ordinary readable files
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}).") from None


def iter_jsonl(path: str | Path, *, allow_partial_last_line: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from a JSON Lines file.

    allow_partial_last_line: a writer killed mid-line leaves an unterminated last line; resumable
    readers pass True to drop it (it is redone) instead of failing.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if allow_partial_last_line and lineno == len(lines) and not line.endswith("\n"):
                return
            raise ValueError(f"{path}: line {lineno}: not valid JSON ({e.msg}); fix or remove "
                             f"that line.") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}.")
        yield lineno, record


def read_jsonl(path: str | Path, **kw: Any) -> list[dict]:
    return [r for _, r in iter_jsonl(path, **kw)]


def drop_torn_tail(path: str | Path) -> None:
    """Cut an unterminated last line (a writer killed mid-line) so appends start on a fresh line."""
    path = Path(path)
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def append_jsonl(f, records: Iterable[dict]) -> None:
    """Append records to an open text file and flush them to disk (a finished batch survives a kill)."""
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
