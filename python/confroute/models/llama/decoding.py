"""The decode loop of an in-process model: n answers of one or several prompts as parallel
sequences, one ``llama_decode`` per step for all of them, each token drawn by llama.cpp's
sampler chain.

Each prompt is decoded once into the first of its own block of sequences and its KV cells are
copied to the others (``llama_memory_seq_cp``); ``sample`` is the one-prompt case of
``sample_many``, so there is one loop (``_steps``). Token log-probabilities come from the raw
logits (``llama_get_logits_ith``) through the core's ``token_logprobs`` — llama-cpp-python's
own logprobs sort the vocabulary in Python per token and need ``logits_all``.

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
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Sequence

import numpy as np

from confroute.models.types import SampleRequest, Samples, check_generation


@dataclass
class Run:
    """The state of one request's generation, filled in step by step."""

    tokens: List[List[int]]
    logprobs: List[List[float]]
    finish: List[str]
    n_prompt: int
    started: float = field(default_factory=time.perf_counter)


def text_tokens(run: Run, s: int) -> List[int]:
    """Sample s's tokens without its end-of-generation token: what its text is made of."""
    return run.tokens[s][:-1] if run.finish[s] == "stop" else run.tokens[s]


class DecodeLoop:
    """The sampling side of :class:`~confroute.models.llama.model.LlamaModel`: uses its
    context (:class:`~confroute.models.llama.session.KVSession`), its ``_prompt_ids``,
    ``seed``, ``name``, ``n_vocab``, ``n_ctx`` and ``n_seq_max``."""

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

    def _steps(self, prompts: List[List[int]], requests: Sequence[SampleRequest]
               ) -> Iterator[List[Run]]:
        """The decode loop: every request's n answers as parallel sequences (request k on
        sequences base_k .. base_k + n_k - 1); yields the runs after every step (for
        streaming). The caller holds the lock and has checked the requests."""
        from confroute._core import token_logprobs

        ll = self._ll
        runs = [Run([[] for _ in range(r.n)], [[] for _ in range(r.n)], ["length"] * r.n,
                    len(p)) for p, r in zip(prompts, requests)]
        base = [sum(r.n for r in requests[:k]) for k in range(len(requests))]
        # The first prompt's prefill may already be in sequence 0: the same decode, done
        # earlier, so the samples are the same.
        kept_row = self._kept_prefill(prompts[0])
        chains = []
        try:
            live = []   # (request, sample) of each sequence still generating, in batch order
            first_row = None
            for k, (p, r) in enumerate(zip(prompts, requests)):
                chains.append(self._sampler(r.temperature, r.top_k, r.top_p, r.min_p, r.seed))
                row = kept_row if kept_row is not None and k == 0 else \
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

    def _first_step(self, run: Run, req: SampleRequest, chain, base: int,
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
        if self._cand is None:   # the candidates array, made once
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

    def _accept(self, run: Run, s: int, tok, lp, max_tokens: int) -> bool:
        """Appends sample s's new token and its logprob; False once the sample has ended. An
        end-of-generation token is kept (its logprob is the model's probability of stopping
        there, part of the answer's likelihood) and ends the sample; the text leaves it out."""
        run.tokens[s].append(int(tok))
        run.logprobs[s].append(float(lp))
        if self._ll.llama_vocab_is_eog(self._vocab, tok):
            run.finish[s] = "stop"
            return False
        return len(run.tokens[s]) < max_tokens

    def _samples(self, run: Run, req: SampleRequest, texts) -> Samples:
        return Samples(
            texts=texts,
            token_logprobs=tuple(np.asarray(lp, dtype=np.float64) for lp in run.logprobs),
            token_ids=tuple(np.asarray(t, dtype=np.int32) for t in run.tokens),
            finish_reasons=tuple(run.finish), model=self.name, prompt_tokens=run.n_prompt,
            completion_tokens=sum(len(t) for t in run.tokens),
            temperature=float(req.temperature), seconds=time.perf_counter() - run.started)
