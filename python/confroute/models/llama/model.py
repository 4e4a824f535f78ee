"""An in-process GGUF chat model on llama.cpp's low-level API, built for sampling n answers fast.

:class:`LlamaModel` (the role it plays by default: ``EdgeModel``) is made of parts, each in
its own module of this package:

- :mod:`~confroute.models.llama.tokens`: the chat template, tokenize, detokenize;
- :mod:`~confroute.models.llama.session`: the context, its KV cache (a stream per sequence),
  one ``llama_decode``, and the reuse of a prompt's prefill;
- :mod:`~confroute.models.llama.decoding`: the decode loop that draws n answers of one or
  several prompts as parallel sequences, with their log-probabilities under the model;
- :mod:`~confroute.models.llama.hidden`: hidden states read during a prefill;
- this module: construction and the calls a user makes (``sample``, ``sample_many``,
  ``chat``, ``generate``, ``score_tokens``, ``next_token_logprobs``).
"""
from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np

from confroute.models.llama import probe
from confroute.models.llama.decoding import DecodeLoop, text_tokens
from confroute.models.llama.hidden import HiddenSink, HiddenStates
from confroute.models.llama.session import KVSession, context_params
from confroute.models.llama.tokens import Tokens, chat_formatter
from confroute.models.types import ChatResult, Messages, SampleRequest, Samples


def _threads(n_threads: Optional[int]) -> int:
    # llama.cpp's threads spin-wait: on a busy machine fewer threads can be much faster,
    # hence the CONFROUTE_N_THREADS override.
    return (n_threads or int(os.environ.get("CONFROUTE_N_THREADS") or 0)
            or max(1, min(os.cpu_count() or 1, 8)))


class LlamaModel(Tokens, KVSession, DecodeLoop, HiddenStates):
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
        self.flash_attn = flash_attn
        self._lock = threading.Lock()
        # Extra buffer types (AMX kernels, repacked weights) only where a probe showed they
        # do not crash this CPU (see llama.probe).
        self.cpu_choice = probe.choose(path)
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = self.cpu_choice.extra_bufts
        self._model = _internals.LlamaModel(path_model=path, params=params, verbose=verbose)
        self._vocab = self._model.vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_layer = int(llama_cpp.llama_model_n_layer(self._model.model))
        self.n_embd = int(llama_cpp.llama_model_n_embd(self._model.model))
        self._cand = None   # the candidates array of _sample_row, made once
        cp = context_params(llama_cpp, n_ctx, n_seq_max, n_batch, _threads(n_threads),
                            flash_attn)
        self._install_capture(llama_cpp, cp, hidden_states)
        self._open_context(cp, n_seq_max, n_batch)
        meta = self._model.metadata()
        self.name = name or meta.get("general.name") or os.path.basename(path)
        self._formatter = chat_formatter(self._model, meta)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, path={self.path!r}, n_ctx={self.n_ctx})"

    # --- generation ----------------------------------------------------------------------------
    def sample(self, messages: Messages, n: int = 5, max_tokens: int = 64,
               temperature: float = 1.0, seed: Optional[int] = None, top_k: int = 0,
               top_p: float = 1.0, min_p: float = 0.0,
               hidden_layers: Optional[Sequence[int]] = None,
               keep: Optional[Callable[[List[np.ndarray]], bool]] = None) -> Samples:
        """n answers drawn at ``temperature`` (0 = greedy) as parallel sequences of one batch,
        each with its per-token log-probabilities under the model (see
        :mod:`~confroute.models.llama.decoding`). ``top_k``/``top_p``/``min_p`` truncate the
        sampling distribution (off by default, so the samples follow the model); ``seed``
        makes the draw reproducible. ``messages`` may also be the prompt's token ids (see
        ``SampleRequest``). ``hidden_layers`` and ``keep``: see ``sample_many``."""
        return self.sample_many([SampleRequest(messages, n, max_tokens, temperature, seed,
                                               top_k, top_p, min_p)], hidden_layers, keep)[0]

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
            texts = [tuple(self.detokenize(text_tokens(run, s))
                           for s in range(len(run.tokens))) for run in runs]
        out = [self._samples(run, r, txt) for run, r, txt in zip(runs, requests, texts)]
        if not kept:
            out = [replace(s, texts=(), token_logprobs=(), token_ids=(), finish_reasons=(),
                           completion_tokens=0) for s in out]
        if sink is not None:
            out = [replace(s, hidden=h) for s, h in zip(out, sink)]
        return out

    def generate(self, messages: Messages, max_tokens: int = 256, temperature: float = 0.0,
                 seed: Optional[int] = None, **sampling) -> ChatResult:
        """One answer (greedy by default)."""
        return self.chat(messages, n=1, max_tokens=max_tokens, temperature=temperature,
                         seed=seed, **sampling)

    def chat(self, messages: Messages, n: int = 1, max_tokens: int = 256,
             temperature: float = 0.7, stream: bool = False, seed: Optional[int] = None,
             **sampling):
        """The same call shape as ``OpenAIChatModel.chat``: a ChatResult, or with
        ``stream=True`` an iterator of text pieces (n must be 1). Only ``top_k``, ``top_p``
        and ``min_p`` are accepted as extra options; anything else (tools, stop, ...) raises
        ValueError rather than being silently ignored."""
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
                    text = self.detokenize(text_tokens(runs[0], 0))
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


# The role it plays by default (the edge, and the local stand-in for the cloud); the name
# users import.
EdgeModel = LlamaModel
