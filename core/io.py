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

from core.checks import InputError


class FileError(InputError):
    """A file that cannot be read as it should be; the message names the file, its line and the fix."""


def decode_text(data: bytes, path: str | Path, fix: str = "save it as UTF-8") -> str:
    """UTF-8 text (a byte-order mark is dropped), or a FileError naming the file, line and byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise FileError(f"{path}: UTF-16 text or binary data (it has NUL bytes), not UTF-8 text (UTF-16 converts "
                        f"with iconv -f UTF-16 -t UTF-8 IN > OUT); {fix}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise FileError(f"{path}: line {line}: byte {e.start} is not UTF-8 text ({e.reason}); {fix}.") from None


def read_text(path: str | Path, fix: str = "save it as UTF-8") -> str:
    """A text file as UTF-8 (a byte-order mark is dropped); other encodings are refused with `fix`."""
    return decode_text(Path(path).read_bytes(), path, fix)


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


def read_json(path: str | Path, fix: str = "fix the file, or delete it to redo the step that wrote it") -> Any:
    path = Path(path)
    try:
        return json.loads(read_text(path, fix))
    except json.JSONDecodeError as e:
        raise FileError(f"{path}: line {e.lineno}: not valid JSON ({e.msg}); {fix}.") from None


def iter_jsonl(path: str | Path, *, allow_partial_last_line: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) from a JSON Lines file.

    allow_partial_last_line: a writer killed mid-line leaves an unterminated last line; resumable
    readers pass True to drop it (it is redone) instead of failing.
    """
    path = Path(path)
    lines = path.read_bytes().splitlines(keepends=True)
    fix = "fix or remove that line, or delete the file to redo the step that wrote it"
    for lineno, raw in enumerate(lines, 1):
        torn = allow_partial_last_line and lineno == len(lines) and not raw.endswith(b"\n")
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            if not line.strip():
                continue
            record = json.loads(line)
        except UnicodeDecodeError as e:
            if torn:  # a writer killed inside a multi-byte character
                return
            raise FileError(f"{path}: line {lineno}: byte {e.start} of the line is not UTF-8 text ({e.reason}); "
                            f"{fix}.") from None
        except json.JSONDecodeError as e:
            if torn:
                return
            raise FileError(f"{path}: line {lineno}: not valid JSON ({e.msg}); {fix}.") from None
        if not isinstance(record, dict):
            raise FileError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}; {fix}.")
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
