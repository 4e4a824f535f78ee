"""Resumable JSONL checkpoints: one JSON object per line, each flushed and fsynced as it is
written, so a killed run loses at most the record in flight.

A kill can only tear the line being written. Opening a checkpoint cuts everything after the
last newline off the file, so that record is redone rather than misread, and the next append
starts on a line of its own. A checkpoint may start with a header line (a JSON object with a
``kind`` and the settings the file was made with): resuming with other settings is refused,
since one file would then mix two runs.

Lines are split on ``\\n`` only: answers written with ``ensure_ascii=False`` may hold U+2028 or
U+0085, which ``str.splitlines`` would take for line ends.

:func:`read_jsonl` reads any JSONL file (a checkpoint or a data file) object by object.
"""
from __future__ import annotations

import json
import os
from typing import IO, Iterable, Iterator, List, Mapping, Optional, Tuple

TMP_SUFFIX = ".tmp"


def repair(path) -> bytes:
    """The complete lines of ``path`` (b"" when there is no file), after cutting a torn last
    line, everything after the last newline, off the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return b""
    with open(path, "rb") as f:
        data = f.read()
    good = data.rfind(b"\n") + 1
    if good < len(data):  # only then opened for writing: an intact file may be read-only
        with open(path, "r+b") as f:
            f.truncate(good)
    return data[:good]


def load(path, header: Optional[Mapping] = None, *,
         what: str = "checkpoint") -> List[Tuple[int, str]]:
    """(line number, text) of each record line of the checkpoint at ``path``, after
    :func:`repair`; none for a missing or empty file. With ``header`` (a dict with a
    ``kind``), line 1 must be that kind of header with the same settings (ValueError
    otherwise, ``what`` naming the kind of file), and the records follow it."""
    path = os.fspath(path)
    data = repair(path)
    raw = data[:-1].split(b"\n") if data else []
    if header is not None and raw:
        _check_header(path, raw[0], header, what)
    out = []
    for n, line in enumerate(raw, 1):
        if n == 1 and header is not None:
            continue
        try:
            out.append((n, line.decode("utf-8")))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: line {n}: not UTF-8 text") from None
    return out


def _check_header(path: str, line: bytes, header: Mapping, what: str) -> None:
    try:
        found = json.loads(line.decode("utf-8"))
    except ValueError:  # JSON or UTF-8
        found = None
    if not isinstance(found, dict) or found.get("kind") != header["kind"]:
        raise ValueError(f"{path}: line 1: not a {what}")
    diff = {k: (found.get(k), v) for k, v in header.items() if found.get(k) != v}
    if diff:
        why = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: the checkpoint was made with other settings ({why}); "
                         f"use another checkpoint file or the same settings")


def _line(obj, ensure_ascii: bool) -> str:
    return json.dumps(obj, ensure_ascii=ensure_ascii) + "\n"


def append(f: IO[str], obj, *, ensure_ascii: bool = False) -> None:
    """Writes ``obj`` as one JSON line to ``f`` and puts it on disk before returning."""
    f.write(_line(obj, ensure_ascii))
    f.flush()
    os.fsync(f.fileno())


def open_append(path, header: Optional[Mapping] = None) -> IO[str]:
    """``path`` opened for :func:`append`, with ``header`` written first when the file is
    new or empty. Read the file with :func:`load` first: that checks the header and cuts a
    torn last line, which this does not."""
    f = open(os.fspath(path), "a", encoding="utf-8")
    try:
        if header is not None and os.fstat(f.fileno()).st_size == 0:
            append(f, dict(header))
    except BaseException:
        f.close()
        raise
    return f


def rewrite(path, objs: Iterable, header: Optional[Mapping] = None, *,
            ensure_ascii: bool = False) -> bytes:
    """Replaces ``path`` at once with ``header`` (if any) and one JSON line per object: a
    kill leaves the old file or the new one, never a mix. Returns the bytes written."""
    path = os.fspath(path)
    lines = [] if header is None else [_line(dict(header), ensure_ascii)]
    lines += [_line(o, ensure_ascii) for o in objs]
    body = "".join(lines).encode("utf-8")
    with open(path + TMP_SUFFIX, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + TMP_SUFFIX, path)
    return body


def read_jsonl(path) -> Iterator[Tuple[int, dict]]:
    """(line number, object) for each non-blank line; ValueError naming file and line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: line {lineno}: expected a JSON object")
            yield lineno, obj
