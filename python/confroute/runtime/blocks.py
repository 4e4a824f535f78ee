"""Committed blocks: the results of a job's items, a block at a time, each block committed once.

A block's results go to their own file by atomic rename, then one line naming the block, its
keys and the file's checksum is appended to a manifest. A rerun reads the committed keys back
and skips them, so a killed job resumes where it was. Knows nothing of Ray: the Ray job
(:mod:`confroute.runtime.distributed`) commits here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Dict, Sequence

from confroute.runtime import checkpoint as ckpt


class BlockStore:
    """Committed blocks under one folder: ``<name>.jsonl`` holds a block's results, one JSON
    per line, and ``manifest.jsonl`` one line per committed block ``{"block", "keys",
    "sha256"}``. A block is committed when its manifest line is on disk: the file is written
    first and renamed into place, so a kill at any moment leaves either no trace of the block
    or a file the manifest does not name (redone and overwritten on resume)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.manifest = os.path.join(self.folder, "manifest.jsonl")

    def committed(self) -> Dict[int, Any]:
        """key -> result of every committed block; cuts a torn last manifest line."""
        out: Dict[int, Any] = {}
        for n, line in ckpt.load(self.manifest):
            where = f"{self.manifest}: line {n}"
            try:
                entry = json.loads(line)
                name, keys, digest = entry["block"], entry["keys"], entry["sha256"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{where}: not a block manifest entry") from None
            path = os.path.join(self.folder, os.path.basename(name))
            try:
                with open(path, "rb") as f:
                    body = f.read()
            except OSError as e:
                raise ValueError(f"{where}: committed block {path} is unreadable: {e}") from None
            if hashlib.sha256(body).hexdigest() != digest:
                raise ValueError(f"{path}: does not match its manifest checksum (changed "
                                 f"after commit); remove {self.folder} to redo the blocks")
            # split on "\n" only: answers may hold U+2028, a line end to str.splitlines
            results = [json.loads(x) for x in body.decode("utf-8").split("\n")[:-1]]
            if len(results) != len(keys):
                raise ValueError(f"{path}: {len(results)} results for {len(keys)} keys")
            for k, r in zip(keys, results):
                if k in out:
                    raise ValueError(f"{where}: key {k} was committed twice")
                out[k] = r
        return out

    def commit(self, keys: Sequence[int], results: Sequence[Any]) -> None:
        os.makedirs(self.folder, exist_ok=True)
        name = f"{keys[0]:09d}-{keys[-1]:09d}.jsonl"
        body = ckpt.rewrite(os.path.join(self.folder, name), results)
        entry = {"block": name, "keys": list(keys), "sha256": hashlib.sha256(body).hexdigest()}
        with ckpt.open_append(self.manifest) as f:
            ckpt.append(f, entry, ensure_ascii=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
