"""Small file helpers shared by every writer: atomic writes, JSON and JSONL, hashes.

Everything a later step reads as complete is written to a temporary name in the same folder and
renamed into place, so a kill never leaves a half-written file behind under the final name. A JSON
or JSONL file that does not parse anyway (a disk that filled up, a hand edit) is a
:class:`CorruptFileError` naming the file, the line and the column.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Atomic, stable (sorted keys, indented) JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


class CorruptFileError(ValueError):
    """A JSON or JSONL file that cannot be parsed. The message names the file, the line and column
    and what is wrong; these files are artifacts written by the pipeline, so one that does not parse
    is damaged (a write cut short by a kill or a full disk, or a hand edit) and has to be removed or
    regenerated: which step regenerates it is the caller's to say. A missing file is not this error
    but :class:`FileNotFoundError`."""

    def __init__(self, path: str | Path, line: int, column: int, problem: str):
        self.path, self.line, self.column, self.problem = Path(path), line, column, problem
        super().__init__(f"{path}, line {line}, column {column}: {problem}. The file is damaged "
                         f"(truncated or edited): remove or regenerate it")


def _decode(data: bytes, path: str | Path, line_offset: int = 0) -> str:
    """``data`` as UTF-8; bytes that are not UTF-8 are a :class:`CorruptFileError` at their line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = line_offset + before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise CorruptFileError(path, line, column, f"not UTF-8 text ({exc.reason})") from None


def read_json(path: str | Path) -> Any:
    """The value of a JSON file; one that does not parse is a :class:`CorruptFileError` naming the
    file, the line and the column (a missing file stays :class:`FileNotFoundError`)."""
    text = _decode(Path(path).read_bytes(), path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(path, exc.lineno, exc.colno, _json_problem(exc)) from None


def _json_problem(exc: json.JSONDecodeError) -> str:
    """json's message without its position (the error names it), e.g. ``Unterminated string starting at``."""
    return f"not valid JSON ({exc.msg}{' this column' if exc.msg.endswith(' at') else ''})"


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Atomic JSONL, one row a line, keys in the order given."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a malformed line is a :class:`CorruptFileError` naming the file, the
    line number and the column (a missing file stays :class:`FileNotFoundError`)."""
    rows = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = _decode(raw, path, number - 1).rstrip("\r\n")
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CorruptFileError(path, number, exc.pos + 1, _json_problem(exc)) from None
    return rows


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    """Hash of a JSON-able value (stable key order): the identity of a configuration."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
