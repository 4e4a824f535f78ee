"""An in-process GGUF chat model on llama.cpp's low-level API, built for sampling n answers fast.

``sample`` decodes the prompt once into sequence 0, copies its KV cells to sequences 1..n-1
(``llama_memory_seq_cp``) and then runs one ``llama_decode`` per step for all live sequences.
``sample_many`` does the same for several prompts at once (each on its own block of sequences,
all advanced by the same ``llama_decode``); ``sample`` is its one-prompt case, so there is one
decode loop (``_steps``).
Each sequence has its own KV stream (``kv_unified = false``): with one unified pool, greedy
parallel sequences drifted apart from the single-sequence result after a few tokens (logprob
differences up to 0.3 nats), while separate streams reproduce it exactly.
Token log-probabilities come from the raw logits (``llama_get_logits_ith``) through the core's
``token_logprobs`` — llama-cpp-python's own logprobs sort the vocabulary in Python per token and
need ``logits_all``.

Logprobs are under the **model** (temperature 1), not under the sampling temperature: semantic
entropy estimates the model's own distribution over meanings, and the sampling temperature is
only a knob for how widely the samples explore it. Weighting clusters by temperature-scaled
probabilities would make the score move with that knob (at T -> 0 every sample looks certain).
An answer that ends with an end-of-generation token keeps it in ``token_ids`` and its logprob
in ``token_logprobs`` (the probability of stopping belongs to the answer's likelihood: without
it an empty answer would have no tokens, log-probability 0, probability 1); the text leaves it
out.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from confroute.models import llama_probe
from confroute.models.types import (
    ChatResult, Messages, SampleRequest, Samples, check_generation, normalize_messages,
)


@dataclass
class _Run:
    """The state of one generation, filled in step by step."""

    tokens: List[List[int]]
    logprobs: List[List[float]]
    finish: List[str]
    n_prompt: int
    started: float = field(default_factory=time.perf_counter)


class EdgeModel:
    """Any GGUF chat model run in-process (the default edge model, and the default local
    stand-in for the cloud). Not thread-safe by itself: calls are serialized by a lock.

    ``n_ctx`` is the context of each sequence (prompt + answer); ``n_seq_max`` bounds ``n``.
    The KV cache holds ``n_ctx * n_seq_max`` cells (SmolLM2: 23 KB each)."""

    def __init__(self, path, n_ctx: int = 2048, n_threads: Optional[int] = None,
                 seed: Optional[int] = None, n_seq_max: int = 8, n_batch: int = 512,
                 flash_attn: bool = False, name: Optional[str] = None, verbose: bool = False,
                 hidden_states: bool = False):
        import llama_cpp
        from llama_cpp import _internals, _logger

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"model file {path!r} does not exist")
        if n_ctx < 16 or n_seq_max < 1 or n_batch < 1:
            raise ValueError(f"n_ctx >= 16, n_seq_max >= 1, n_batch >= 1 needed; got "
                             f"{n_ctx}, {n_seq_max}, {n_batch}")
        _logger.set_verbose(verbose)
        llama_cpp.llama_backend_init()
        self._ll = llama_cpp
        self.path = path
        self.seed = seed
        self._lock = threading.Lock()
        # Extra buffer types (AMX kernels, repacked weights) only where a probe showed they
        # do not crash this CPU (see llama_probe).
        self.cpu_choice = llama_probe.choose(path)
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = self.cpu_choice.extra_bufts
        self._model = _internals.LlamaModel(path_model=path, params=params, verbose=verbose)
        self._vocab = self._model.vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        # llama.cpp's threads spin-wait: on a busy machine fewer threads can be much faster,
        # hence the CONFROUTE_N_THREADS override.
        threads = (n_threads or int(os.environ.get("CONFROUTE_N_THREADS") or 0)
                   or max(1, min(os.cpu_count() or 1, 8)))
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx * n_seq_max, n_batch, min(n_batch, 512)
        cp.n_seq_max = n_seq_max
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = False  # a KV stream per sequence: exact (see the module doc)
        # llama.cpp's default 'auto' turns flash attention on for CPU, whose f16 accumulation
        # moved SmolLM2's logits by up to 1.5 against the plain path; off, as in `Llama`.
        cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cp.no_perf = True
        self.n_layer = int(llama_cpp.llama_model_n_layer(self._model.model))
        self.n_embd = int(llama_cpp.llama_model_n_embd(self._model.model))
        # Hidden states need llama.cpp's eval callback, which is fixed at context creation:
        # opt-in, since every graph node then calls into Python (see models/hidden.py).
        self._capture = self._hidden_sink = None
        # (prompt ids, last logits row) while sequence 0 holds exactly that prompt's prefill
        # and nothing else is in the cache: the next sample of the same prompt starts from it
        # (a router read the prompt's hidden state or drew samples; then a kept query's
        # answer, or adaptive SE's next round)
        self._kv_prompt: Optional[Tuple[Tuple[int, ...], np.ndarray]] = None
        self._cand = None   # the candidates array of _sample_row, made once
        if hidden_states:
            from confroute.models.hidden import HiddenCapture

            self._capture = HiddenCapture(llama_cpp, self.n_layer, self.n_embd)
            cp.cb_eval = self._capture.callback
        self._ctx = llama_cpp.llama_init_from_model(self._model.model, cp)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp could not create a context for {path}")
        self.n_ctx = int(llama_cpp.llama_n_ctx_seq(self._ctx))
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(max(n_batch, n_seq_max), 0, 1)
        meta = self._model.metadata()
        self.name = name or meta.get("general.name") or os.path.basename(path)
        self._formatter = self._chat_formatter(meta)

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._ll.llama_batch_free(self._batch)
            self._ll.llama_free(self._ctx)
            self._ctx = None
            self._model.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return f"EdgeModel({self.name!r}, path={self.path!r}, n_ctx={self.n_ctx})"

    # --- text <-> tokens ---------------------------------------------------------------------
    def _chat_formatter(self, meta):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = meta.get("tokenizer.chat_template")
        if not template:
            return None
        m = self._model

        def text_of(tok):
            return m.token_get_text(tok) if tok != -1 else ""

        return Jinja2ChatFormatter(template=template, eos_token=text_of(m.token_eos()),
                                   bos_token=text_of(m.token_bos()), add_generation_prompt=True)

    def format_prompt(self, messages: Messages) -> str:
        """The prompt text the model sees: the GGUF's own chat template; for a model without
        one (a base model, e.g. Gemma 3 270M) the messages' texts joined by newlines, so a
        few-shot prompt reaches it verbatim."""
        msgs = normalize_messages(messages)
        if self._formatter is not None:
            return self._formatter(messages=msgs).prompt
        return "\n".join(m["content"] for m in msgs)

    def tokenize(self, text: str, special: bool = False, add_bos: bool = False) -> List[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def prompt_tokens(self, messages: Messages) -> List[int]:
        """The prompt's token ids. A conversation that ends with an assistant message asks
        the model to continue that message (its text is the start of the answer)."""
        msgs = normalize_messages(messages)
        prefix = ""
        if len(msgs) > 1 and msgs[-1]["role"] == "assistant":
            prefix, msgs = msgs[-1]["content"], msgs[:-1]
        # The template writes any BOS itself (llama-cpp-python's chat handlers do the same).
        toks = self.tokenize(self.format_prompt(msgs), special=True,
                             add_bos=self._formatter is None and self._model.add_bos_token())
        if prefix:
            toks = toks + self.tokenize(prefix)
        if not toks:
            raise ValueError("the prompt is empty after tokenization")
        return toks

    def detokenize(self, tokens: Sequence[int]) -> str:
        arr = (self._ll.llama_token * len(tokens))(*tokens)
        size = 8 * len(tokens) + 16
        buf = ctypes.create_string_buffer(size)
        n = self._ll.llama_detokenize(self._vocab, arr, len(tokens), buf, size, False, False)
        if n < 0:  # buffer too small: -n is the size needed
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_detokenize(self._vocab, arr, len(tokens), buf, -n, False, False)
        return buf.raw[:n].decode("utf-8", errors="replace")

    # --- low-level decode helpers -------------------------------------------------------------
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

    def _sampler(self, temperature, top_k, top_p, min_p, seed):
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if temperature == 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        if top_k:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(int(top_k)))
        if top_p < 1.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(float(top_p), 1))
        if min_p > 0.0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(float(min_p), 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(float(temperature)))
        if seed is None:
            seed = self.seed
        seed = ll.LLAMA_DEFAULT_SEED if seed is None else int(seed) & 0xFFFFFFFF
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        return chain

    # --- generation ----------------------------------------------------------------------------
    def sample(self, messages: Messages, n: int = 5, max_tokens: int = 64,
               temperature: float = 1.0, seed: Optional[int] = None, top_k: int = 0,
               top_p: float = 1.0, min_p: float = 0.0,
               hidden_layers: Optional[Sequence[int]] = None,
               keep: Optional[Callable[[List[np.ndarray]], bool]] = None) -> Samples:
        """n answers drawn at ``temperature`` (0 = greedy) as parallel sequences of one batch,
        each with its per-token log-probabilities under the model (see the module doc).
        ``top_k``/``top_p``/``min_p`` truncate the sampling distribution (off by default, so
        the samples follow the model); ``seed`` makes the draw reproducible. ``messages`` may
        also be the prompt's token ids (see ``SampleRequest``). ``hidden_layers`` and
        ``keep``: see ``sample_many``."""
        return self.sample_many([SampleRequest(messages, n, max_tokens, temperature, seed,
                                               top_k, top_p, min_p)], hidden_layers, keep)[0]

    def hidden_states(self, messages: Messages, layers: Sequence[int]) -> np.ndarray:
        """float32 [len(layers), n_embd]: the hidden state at the prompt's last token after
        each of ``layers`` (0..n_layer-1 the blocks' outputs, n_layer or -1 the final-normed
        state), from one prefill and no generation. Needs ``hidden_states=True`` at
        construction. ``messages`` may be token ids, as for ``sample``. The prefill stays in
        the cache: a sample of the same prompt next (a kept query's answer) starts from it
        instead of reading the prompt again, and draws the same samples."""
        from confroute.models.hidden import HiddenSink

        sink = HiddenSink(self._hidden_layers(layers))
        prompt = self._prompt_ids(messages)
        if len(prompt) > self.n_ctx:
            raise ValueError(f"the prompt ({len(prompt)} tokens) exceeds the context of "
                             f"{self.n_ctx} tokens")
        with self._lock:
            self._hidden_sink = sink
            try:
                self._prefill_prompt(prompt)
            finally:
                self._hidden_sink = None
        return sink[0]

    def hidden_state(self, messages: Messages) -> np.ndarray:
        """Every layer's state at the prompt's last token, [n_layer + 1, n_embd] (row i as
        ``hidden_states(messages, [i])``): what the decision path hands a probe, which picks
        its own layer."""
        return self.hidden_states(messages, list(range(self.n_layer + 1)))

    def _hidden_layers(self, layers) -> List[int]:
        from confroute.models.hidden import check_layers

        if self._capture is None:
            raise ValueError(f"{self.name}: hidden states need EdgeModel(..., "
                             "hidden_states=True) (llama.cpp's eval callback is set when the "
                             "context is made)")
        return check_layers(layers, self.n_layer)

    def sample_many(self, requests: Sequence[SampleRequest],
                    hidden_layers: Optional[Sequence[int]] = None,
                    keep: Optional[Callable[[List[np.ndarray]], bool]] = None
                    ) -> List[Samples]:
        """One Samples per request, the same as ``sample`` draws for it alone, with all the
        requests' samples drawn together: each prompt is decoded once into the first of its
        own n sequences and copied to the others, then one ``llama_decode`` per step advances
        every live sequence of every request. Decode of a small model on a CPU is
        compute-bound per step, so one step for 15 sequences costs far less than three steps
        of 5. All requests together may use at most ``n_seq_max`` sequences (one per sample),
        and each prompt + max_tokens must fit ``n_ctx``; otherwise ValueError.

        ``hidden_layers`` (with ``hidden_states=True``): each Samples also carries ``hidden``,
        the prompt's last-token state after those layers (as ``hidden_states``), read in the
        same prefill — the samples are the same as without. ``keep(hiddens)``, called after
        the prefills with the list of those arrays, may stop the generation there: on False
        every Samples comes back with no answers (n = 0), only ``hidden`` — a router decides
        from the prefill, and a kept query goes on from the same KV cache."""
        from confroute.models.hidden import HiddenSink

        requests = list(requests)
        if not requests:
            return []
        if keep is not None and hidden_layers is None:
            raise ValueError("keep needs hidden_layers (it decides from the hidden states)")
        sink = None if hidden_layers is None else HiddenSink(self._hidden_layers(hidden_layers))
        prompts = self._checked_prompts(requests)
        kept = True
        with self._lock:
            runs = []
            self._hidden_sink = sink
            steps = self._steps(prompts, requests)
            try:
                for step, runs in enumerate(steps):
                    if step == 0:
                        self._hidden_sink = None   # the decode steps read no hidden states
                        if keep is not None and not keep(list(sink)):
                            kept = False
                            break
            finally:
                self._hidden_sink = None
                steps.close()   # frees the sampler chains at once when stopped early
            texts = [tuple(self.detokenize(self._text_tokens(run, s))
                           for s in range(len(run.tokens))) for run in runs]
        out = [self._samples(run, r, txt) for run, r, txt in zip(runs, requests, texts)]
        if not kept:
            out = [replace(s, texts=(), token_logprobs=(), token_ids=(), finish_reasons=(),
                           completion_tokens=0) for s in out]
        if sink is not None:
            out = [replace(s, hidden=h) for s, h in zip(out, sink)]
        return out

    def _samples(self, run: _Run, req: SampleRequest, texts) -> Samples:
        return Samples(
            texts=texts,
            token_logprobs=tuple(np.asarray(lp, dtype=np.float64) for lp in run.logprobs),
            token_ids=tuple(np.asarray(t, dtype=np.int32) for t in run.tokens),
            finish_reasons=tuple(run.finish), model=self.name, prompt_tokens=run.n_prompt,
            completion_tokens=sum(len(t) for t in run.tokens),
            temperature=float(req.temperature), seconds=time.perf_counter() - run.started)

    def _checked_prompts(self, requests: Sequence[SampleRequest]) -> List[List[int]]:
        """The requests' prompt tokens, after checking that together they fit this model."""
        prompts = []
        for i, r in enumerate(requests):
            if not isinstance(r, SampleRequest):
                raise ValueError(f"requests[{i}] must be a SampleRequest, got "
                                 f"{type(r).__name__}")
            check_generation(r.n, r.max_tokens, r.temperature)
            prompts.append(self._prompt_ids(r.prompt))
        total = sum(r.n for r in requests)
        if total > self.n_seq_max:
            what = f"n={total}" if len(requests) == 1 else \
                f"{len(requests)} requests with n summing to {total}"
            raise ValueError(f"{what} need {total} sequences (one per sample), more than this "
                             f"model's n_seq_max={self.n_seq_max}; construct it with a larger "
                             "n_seq_max")
        for i, (p, r) in enumerate(zip(prompts, requests)):
            need = len(p) + r.max_tokens
            if need > self.n_ctx:
                which = "" if len(requests) == 1 else f"request {i}: "
                raise ValueError(f"{which}prompt ({len(p)} tokens) + max_tokens "
                                 f"({r.max_tokens}) = {need} exceeds the context of "
                                 f"{self.n_ctx} tokens: shorten the prompt, lower max_tokens, "
                                 "or raise n_ctx")
        return prompts

    def _prompt_ids(self, prompt) -> List[int]:
        """Chat messages through the chat template; token ids as given, range-checked."""
        if not _is_token_ids(prompt):
            return self.prompt_tokens(prompt)
        ids = [int(t) for t in prompt]
        if min(ids) < 0 or max(ids) >= self.n_vocab:
            raise ValueError(f"prompt token ids must lie in [0, {self.n_vocab})")
        return ids

    def _steps(self, prompts: List[List[int]], requests: Sequence[SampleRequest]
               ) -> Iterator[List[_Run]]:
        """The decode loop: every request's n answers as parallel sequences (request k on
        sequences base_k .. base_k + n_k - 1); yields the runs after every step (for
        streaming). The caller holds the lock and has checked the requests."""
        from confroute._core import token_logprobs

        ll = self._ll
        runs = [_Run([[] for _ in range(r.n)], [[] for _ in range(r.n)], ["length"] * r.n,
                     len(p)) for p, r in zip(prompts, requests)]
        base = [sum(r.n for r in requests[:k]) for k in range(len(requests))]
        # The first prompt's prefill may already be in sequence 0 (see _prefill_prompt and
        # _keep_prompt): the same decode, done earlier, so the samples are the same. Not when
        # this prefill must read hidden states.
        kept = self._kv_prompt
        if kept is None or kept[0] != tuple(prompts[0]) or self._hidden_sink is not None:
            kept = None
            self._clear_kv()
        self._kv_prompt = None   # its sequences are about to change
        chains = []
        try:
            live = []   # (request, sample) of each sequence still generating, in batch order
            first_row = None
            for k, (p, r) in enumerate(zip(prompts, requests)):
                chains.append(self._sampler(r.temperature, r.top_k, r.top_p, r.min_p, r.seed))
                row = kept[1] if kept is not None and k == 0 else \
                    self._prefill(p, len(p) - 1, base[k])[-1]
                first_row = row if k == 0 else first_row
                live += [(k, s) for s in self._first_step(runs[k], r, chains[k], base[k], row)]
            yield runs
            while live:
                self._decode([(runs[k].tokens[s][-1], runs[k].n_prompt + len(runs[k].tokens[s])
                               - 1, base[k] + s, True) for k, s in live])
                # Each request's own sampler chain, drawn for its sequences in order: the same
                # draws as for the request alone.
                toks = [ll.llama_sampler_sample(chains[k], self._ctx, i)
                        for i, (k, _) in enumerate(live)]
                lps = token_logprobs(self._logits(len(live)), toks, 1.0)
                live = [(k, s) for (k, s), tok, lp in zip(live, toks, lps)
                        if self._accept(runs[k], s, tok, lp, requests[k].max_tokens)]
                yield runs
            self._keep_prompt(prompts[0], first_row, sum(r.n for r in requests))
        finally:
            for chain in chains:
                ll.llama_sampler_free(chain)

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

    def _first_step(self, run: _Run, req: SampleRequest, chain, base: int,
                    row: np.ndarray) -> List[int]:
        """With the prompt in sequence ``base``: copies its KV cells to the request's other
        sequences and samples every sequence's first token from the prompt's last logits
        ``row``. Returns the samples that go on."""
        from confroute._core import token_logprobs

        ll = self._ll
        mem = ll.llama_get_memory(self._ctx)
        for s in range(1, req.n):
            ll.llama_memory_seq_cp(mem, base, base + s, -1, -1)
        toks = [self._sample_row(chain, row) for _ in range(req.n)]
        lps = token_logprobs(np.broadcast_to(row, (req.n, self.n_vocab)), toks, 1.0)
        return [s for s, tok, lp in zip(range(req.n), toks, lps)
                if self._accept(run, s, tok, lp, req.max_tokens)]

    def _sample_row(self, chain, row: np.ndarray) -> int:
        """One token drawn by ``chain`` from a logits row we hold (a kept prompt's, which the
        context no longer has): what ``llama_sampler_sample`` does with the context's row —
        every token with its logit, the chain applied, the pick accepted."""
        ll = self._ll
        if self._cand is None:
            self._cand = (ll.llama_token_data * self.n_vocab)()
            self._cand_np = np.frombuffer(self._cand, dtype=np.dtype(
                [("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        c = self._cand_np
        c["id"], c["logit"], c["p"] = np.arange(self.n_vocab, dtype=np.int32), row, 0.0
        arr = ll.llama_token_data_array(self._cand, self.n_vocab, -1, False)
        ll.llama_sampler_apply(chain, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError(f"the sampler selected no token ({self.name})")
        tok = int(self._cand[arr.selected].id)
        ll.llama_sampler_accept(chain, tok)
        return tok

    def _accept(self, run: _Run, s: int, tok, lp, max_tokens: int) -> bool:
        """Appends sample s's new token and its logprob; False once the sample has ended. An
        end-of-generation token is kept (its logprob is the model's probability of stopping
        there, part of the answer's likelihood) and ends the sample; the text leaves it out."""
        run.tokens[s].append(int(tok))
        run.logprobs[s].append(float(lp))
        if self._ll.llama_vocab_is_eog(self._vocab, tok):
            run.finish[s] = "stop"
            return False
        return len(run.tokens[s]) < max_tokens

    @staticmethod
    def _text_tokens(run: _Run, s: int) -> List[int]:
        """Sample s's tokens without its end-of-generation token: what its text is made of."""
        return run.tokens[s][:-1] if run.finish[s] == "stop" else run.tokens[s]

    def generate(self, messages: Messages, max_tokens: int = 256, temperature: float = 0.0,
                 seed: Optional[int] = None, **sampling) -> ChatResult:
        """One answer (greedy by default)."""
        return self.chat(messages, n=1, max_tokens=max_tokens, temperature=temperature,
                         seed=seed, **sampling)

    def chat(self, messages: Messages, n: int = 1, max_tokens: int = 256,
             temperature: float = 0.7, stream: bool = False, seed: Optional[int] = None,
             **sampling):
        """The same call shape as ``CloudModel.chat``: a ChatResult, or with ``stream=True``
        an iterator of text pieces (n must be 1). Only ``top_k``, ``top_p`` and ``min_p`` are
        accepted as extra options; anything else (tools, stop, ...) raises ValueError rather
        than being silently ignored."""
        unknown = set(sampling) - {"top_k", "top_p", "min_p"}
        if unknown:
            raise ValueError(f"the in-process model {self.name!r} does not support "
                             f"{sorted(unknown)}")
        if stream:
            if n != 1:
                raise ValueError("stream=True needs n=1")
            return self._stream(messages, max_tokens, temperature, seed, sampling)
        s = self.sample(messages, n=n, max_tokens=max_tokens, temperature=temperature,
                        seed=seed, **sampling)
        return ChatResult(texts=s.texts, model=s.model,
                          usage={"prompt_tokens": s.prompt_tokens,
                                 "completion_tokens": s.completion_tokens},
                          finish_reason=s.finish_reasons[0], finish_reasons=s.finish_reasons,
                          seconds=s.seconds)

    def _stream(self, messages, max_tokens, temperature, seed, sampling) -> Iterator[str]:
        req = SampleRequest(messages, 1, max_tokens, temperature, seed, **sampling)
        prompts = self._checked_prompts([req])

        def pieces():
            with self._lock:
                sent = ""
                for runs in self._steps(prompts, [req]):
                    text = self.detokenize(self._text_tokens(runs[0], 0))
                    # Hold back a trailing partial UTF-8 character until it is complete.
                    if text.endswith("\ufffd"):
                        continue
                    if len(text) > len(sent):
                        yield text[len(sent):]
                        sent = text

        return pieces()

    # --- teacher forcing and one-pass scores ----------------------------------------------------
    def score_tokens(self, messages: Messages, token_ids: Sequence[int]) -> np.ndarray:
        """float64 log-probabilities of ``token_ids`` as the continuation of the prompt, by
        teacher forcing (one forward pass over prompt + tokens)."""
        from confroute._core import token_logprobs

        prompt = self.prompt_tokens(messages)
        ids = [int(t) for t in token_ids]
        if not ids:
            return np.zeros(0)
        if len(prompt) + len(ids) > self.n_ctx:
            raise ValueError(f"{len(prompt)} prompt + {len(ids)} tokens exceed n_ctx "
                             f"{self.n_ctx}")
        with self._lock:
            self._clear_kv()
            rows = self._prefill(prompt + ids[:-1], len(prompt) - 1)
        return token_logprobs(np.concatenate(rows), np.asarray(ids, np.int32), 1.0)

    def next_token_logprobs(self, messages: Messages, token_ids: Sequence[int]) -> np.ndarray:
        """float64 log-probabilities of candidate next tokens right after the prompt (one
        forward pass, no sampling): the basis of the multiple-choice letter distribution.
        ``messages`` may also be the prompt's token ids (as in ``sample``)."""
        from confroute._core import token_logprobs

        ids = np.asarray([int(t) for t in token_ids], np.int32)
        if ids.size == 0:
            raise ValueError("token_ids is empty")
        if ids.min() < 0 or ids.max() >= self.n_vocab:
            raise ValueError(f"token ids must lie in [0, {self.n_vocab})")
        prompt = self._prompt_ids(messages)  # messages, or token ids (a prompt + answer cue)
        with self._lock:
            row = self._prefill_prompt(prompt)[-1]
        # One core call gives the log-normalizer of the row (lse = logit - logprob); every
        # candidate then costs a subtraction, however many there are.
        lse = float(row[ids[0]]) - float(token_logprobs(row[None, :], ids[:1], 1.0)[0])
        return row[ids].astype(np.float64) - lse


def _is_token_ids(prompt) -> bool:
    """A non-empty list of integers (token ids), as opposed to chat messages."""
    return (not isinstance(prompt, (str, dict)) and isinstance(prompt, (Sequence, np.ndarray))
            and len(prompt) > 0
            and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool)
                    for t in prompt))
