"""The llama.cpp context of an in-process model: its KV cache, one ``llama_decode`` of a batch,
the logits in place, and the reuse of a prompt's prefill.

Each sequence has its own KV stream (``kv_unified = false``): with one unified pool, greedy
parallel sequences drifted apart from the single-sequence result after a few tokens (logprob
differences up to 0.3 nats), while separate streams reproduce it exactly.

A prompt's prefill is kept: while sequence 0 holds exactly one prompt's cells and nothing else
is in the cache, the next sample of that prompt starts from them instead of reading it again
(a router read the prompt's hidden state or drew samples; then a kept query's answer, or
adaptive SE's next round). The cells are those a fresh prefill makes (the same decode), so the
samples are the same.
"""
from __future__ import annotations

import ctypes
from typing import List, Sequence

import numpy as np


def context_params(llama_cpp, n_ctx: int, n_seq_max: int, n_batch: int, threads: int,
                   flash_attn: bool):
    """llama.cpp's context params: ``n_ctx`` cells for each of ``n_seq_max`` sequences, each
    in its own KV stream."""
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx * n_seq_max, n_batch, min(n_batch, 512)
    cp.n_seq_max = n_seq_max
    cp.n_threads = cp.n_threads_batch = threads
    cp.kv_unified = False  # a KV stream per sequence: exact (see the module doc)
    # llama.cpp's default 'auto' turns flash attention on for CPU, whose f16 accumulation
    # moves single logprobs (up to 1.5 on SmolLM2; not the mean likelihood): off unless asked,
    # as in `Llama`, so a GGUF path reproduces tables built so. The registry's default edge asks.
    cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                          else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    cp.no_perf = True
    return cp


class KVSession:
    """The context side of :class:`~confroute.models.llama.model.LlamaModel`: owns ``_ctx``,
    ``_batch`` and ``_kv_prompt`` (the kept prefill: prompt ids and the last logits row);
    uses its ``_ll``, ``_model``, ``name``, ``n_vocab`` and the hidden-state ``_capture`` and
    ``_hidden_sink``."""

    def _open_context(self, cp, n_seq_max: int, n_batch: int) -> None:
        ll = self._ll
        self._kv_prompt = None
        self._ctx = ll.llama_init_from_model(self._model.model, cp)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp could not create a context for {self.path}")
        self.n_ctx = int(ll.llama_n_ctx_seq(self._ctx))
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self._batch = ll.llama_batch_init(max(n_batch, n_seq_max), 0, 1)

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._ll.llama_batch_free(self._batch)
            self._ll.llama_free(self._ctx)
            self._ctx = None
            self._model.close()

    def _decode(self, items) -> None:
        """One llama_decode of (token, pos, seq, wants_logits) items."""
        b = self._batch
        for i, (tok, pos, seq, out) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, out
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        self._kv_prompt = None   # the cache and the logits change
        rc = self._ll.llama_decode(self._ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} ({self.name})")

    def _logits(self, rows: int, first_index: int = 0) -> np.ndarray:
        """float32 [rows, V]: the logits of batch tokens first_index .. first_index+rows-1 of
        the last decode (all must have asked for logits), viewed in place — llama.cpp stores
        outputs contiguously in batch order, which is checked — no copy."""
        get = self._ll.llama_get_logits_ith
        first = get(self._ctx, first_index)
        if not first:
            raise RuntimeError(f"llama.cpp has no logits for batch index {first_index}")
        if rows > 1:
            last = get(self._ctx, first_index + rows - 1)
            gap = ctypes.addressof(last.contents) - ctypes.addressof(first.contents)
            if gap != (rows - 1) * self.n_vocab * 4:
                return np.stack([np.ctypeslib.as_array(get(self._ctx, first_index + i),
                                                       shape=(self.n_vocab,))
                                 for i in range(rows)])
        return np.ctypeslib.as_array(first, shape=(rows, self.n_vocab))

    def _clear_kv(self) -> None:
        self._kv_prompt = None
        self._ll.llama_memory_clear(self._ll.llama_get_memory(self._ctx), True)

    def _prefill_prompt(self, prompt: List[int]) -> np.ndarray:
        """A fresh prefill of ``prompt`` into sequence 0, as a sample's first step does it;
        kept (``_kv_prompt``) for the next sample of the same prompt. The last logits row."""
        self._clear_kv()
        row = self._prefill(prompt, len(prompt) - 1)[-1]
        self._kv_prompt = (tuple(prompt), row)
        return row

    def _prefill(self, tokens: Sequence[int], logits_from: int, seq: int = 0
                 ) -> List[np.ndarray]:
        """Decodes ``tokens`` into sequence ``seq`` (which must be empty) from position 0 in
        chunks of n_batch; returns the logits (copies) of every position >= logits_from (always
        at least the last)."""
        rows = []
        last = len(tokens) - 1
        logits_from = min(logits_from, last)
        sink = self._hidden_sink   # hidden states asked for: read them in this prefill
        if sink is not None:
            self._capture.arm(sink.layers)
        for start in range(0, len(tokens), self.n_batch):
            chunk = range(start, min(start + self.n_batch, len(tokens)))
            self._decode([(tokens[p], p, seq, p >= logits_from) for p in chunk])
            k = sum(1 for p in chunk if p >= logits_from)
            if k:
                rows.append(self._logits(k, len(chunk) - k).copy())
        if sink is not None:
            sink.append(self._capture.take())
        return rows

    def _kept_prefill(self, prompt: List[int]):
        """The kept prefill's last logits row if sequence 0 holds ``prompt``'s and this
        prefill need not read hidden states; else None, and the cache is cleared. Either way
        the kept prefill is used up: its sequences are about to change."""
        kept = self._kv_prompt
        if kept is None or kept[0] != tuple(prompt) or self._hidden_sink is not None:
            kept = None
            self._clear_kv()
        self._kv_prompt = None
        return None if kept is None else kept[1]

    def _keep_prompt(self, prompt: List[int], row: np.ndarray, n_seq: int) -> None:
        """After a generation: drop every answer's cells, keeping the first prompt's cells in
        sequence 0 and its last logits row, so the next sample of that prompt (adaptive SE's
        next round, a kept query's answer) starts from them. The cells are those a fresh
        prefill makes (the same decode), and the next tokens go to the same places."""
        mem = self._ll.llama_get_memory(self._ctx)
        ok = self._ll.llama_memory_seq_rm(mem, 0, len(prompt), -1)
        for s in range(1, n_seq):
            ok = self._ll.llama_memory_seq_rm(mem, s, -1, -1) and ok
        self._kv_prompt = (tuple(prompt), row) if ok else None
        if not ok:
            self._clear_kv()
