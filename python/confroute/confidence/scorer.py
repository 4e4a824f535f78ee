"""Confidence of a model on a prompt: samples -> meaning clusters -> semantic entropy (core).

Three paths, one result type (:class:`~confroute.confidence.result.Confidence`):

- ``score``: n samples from any object with ``.sample(messages, n=, max_tokens=, temperature=,
  seed=)`` (the edge model, the cloud client, the in-process Qwen), embedded and clustered by
  cosine similarity; the core computes every SE kind and the baselines.
- ``score_exact``: the same samples clustered by their extracted final answer (a number, or an
  option letter, read by :mod:`confroute.confidence.answers` as grading reads them) — for
  tasks with a checkable answer, where meaning equals answer equality.
- ``score_options``: multiple choice without sampling — one forward pass gives the model's
  distribution over the option letters, and its exact entropy.
"""
from __future__ import annotations

import dataclasses
import time
from typing import List, Optional, Sequence

import numpy as np

from confroute.confidence.meaning import (MEANINGS, best_index_of, block_one_hot,
                                          embedding_disagreement, exact_answer,
                                          key_disagreement, meaning_keys, one_hot, visible)
from confroute.confidence.result import Confidence
from confroute.models.types import Messages, Samples, normalize_messages


class ConfidenceScorer:
    """Turns a prompt and a model into a :class:`Confidence`.

    ``similarity`` is the cosine similarity above which two answers share a meaning (MiniLM:
    paraphrases ~0.97, unrelated ~0); ``method`` the clustering ('greedy' as in Kuhn et al., or
    'components'); ``likelihood`` the sequence log-likelihood for the weighted and Kuhn forms
    ('mean' = length-normalized, or 'sum'). ``n``, ``max_tokens``, ``temperature``, ``seed``
    are the sampling defaults of ``score``; each call may override them. ``meaning``: how two
    answers are judged alike (:data:`MEANINGS`; ``auto`` chooses per prompt, see
    :meth:`score_samples`)."""

    def __init__(self, embedder=None, similarity: float = 0.8, method: str = "greedy",
                 n: int = 5, max_tokens: int = 64, temperature: float = 1.0,
                 likelihood: str = "mean", seed: Optional[int] = None, meaning: str = "auto"):
        if not -1.0 <= similarity <= 1.0:
            raise ValueError(f"similarity is a cosine in [-1, 1], got {similarity}")
        if meaning not in MEANINGS:
            raise ValueError(f"meaning must be one of {MEANINGS}, got {meaning!r}")
        self.meaning = meaning
        if method not in ("greedy", "components"):
            raise ValueError(f"method must be 'greedy' or 'components', got {method!r}")
        if likelihood not in ("mean", "sum"):
            raise ValueError(f"likelihood must be 'mean' or 'sum', got {likelihood!r}")
        self._embedder = embedder
        self.similarity, self.method, self.likelihood = float(similarity), method, likelihood
        self.n, self.max_tokens, self.temperature, self.seed = n, max_tokens, temperature, seed

    @property
    def embedder(self):
        if self._embedder is None:
            from confroute.models import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def _sample(self, messages, model, opts) -> Samples:
        normalize_messages(messages)  # a clear error before any model work
        return model.sample(messages, n=opts.get("n", self.n),
                            max_tokens=opts.get("max_tokens", self.max_tokens),
                            temperature=opts.get("temperature", self.temperature),
                            seed=opts.get("seed", self.seed))

    def score(self, messages: Messages, model, **opts) -> Confidence:
        """Samples ``model`` on the prompt, clusters by meaning, and scores."""
        return self.score_many([messages], model, **opts)[0]

    def score_many(self, prompts: Sequence[Messages], model, **opts) -> List[Confidence]:
        """Like ``score`` for many prompts: the samples are drawn prompt by prompt, but all
        answers are embedded in one batch and scored in one core call."""
        if isinstance(prompts, str):
            raise ValueError("score_many takes a list of prompts; use score() for one")
        t0 = time.perf_counter()
        samples = [self._sample(m, model, opts) for m in prompts]
        from confroute.models.types import last_user_text

        return self.score_samples(samples, t_generate=time.perf_counter() - t0,
                                  prompts=[last_user_text(m) for m in prompts])

    def score_samples(self, samples: Sequence[Samples], t_generate: float = 0.0,
                      prompts: Optional[Sequence[Optional[str]]] = None,
                      answers: Optional[Sequence[Optional[str]]] = None,
                      prefixes: Optional[Sequence[str]] = None) -> List[Confidence]:
        """Scores samples that were already drawn, clustered by meaning (``self.meaning``)
        per sample set:

        - ``execution``: behaviour on the example calls that the prompt (``prompts``: each
          set's last user message) shows of the function most samples define, run in the
          sandbox; a prompt without such calls falls back to ``exact`` (under ``auto``) or
          to embedding, and ``Confidence.method`` says so;
        - ``exact``: the final number (:func:`.answers.extract_number`); ``auto``
          takes it where the answer, or most samples, mark one ('the answer is', '\\boxed');
        - ``embedding``: cosine similarity of the MiniLM embeddings above ``similarity``.

        ``answers``: the edge's own answer per set (or None): ``Confidence.disagreement`` is
        then the share of samples whose meaning differs from it. ``prefixes``: the start of
        the answer that the texts continue (an assistant message the edge went on from); code
        and final answers are read from prefix + text, embeddings from the text alone."""
        if not samples:
            return []
        n = len(samples)
        prompts = list(prompts) if prompts is not None else [None] * n
        answers = list(answers) if answers is not None else [None] * n
        prefixes = list(prefixes) if prefixes is not None else [""] * n
        if not len(prompts) == len(answers) == len(prefixes) == n:
            raise ValueError("prompts, answers and prefixes need one entry per sample set")
        t0 = time.perf_counter()
        keyed = [meaning_keys(self.meaning, s, p, a, pre)
                 for s, p, a, pre in zip(samples, prompts, answers, prefixes)]
        t1 = time.perf_counter()
        out: List[Optional[Confidence]] = [None] * n
        by_key = [b for b in range(n) if keyed[b][1] is not None]
        by_emb = [b for b in range(n) if keyed[b][1] is None]
        if by_key:
            confs = self._score_by_keys([samples[b] for b in by_key], [keyed[b] for b in by_key],
                                        {"generate": t_generate, "execute": t1 - t0})
            for b, c in zip(by_key, confs):
                out[b] = c
        if by_emb:
            confs = self._score_by_embedding([samples[b] for b in by_emb],
                                             [keyed[b][0] for b in by_emb],
                                             [answers[b] for b in by_emb], t_generate)
            for b, c in zip(by_emb, confs):
                out[b] = c
        return out

    def _score_by_keys(self, samples, keyed, seconds) -> List[Confidence]:
        """Sample sets clustered by their keys (``keyed``: (meaning label, keys) per set, the
        answer's key last when one was given)."""
        emb = block_one_hot([keys[:s.n] for s, (_, keys) in zip(samples, keyed)])
        confs = self._core(samples, emb, 0.5, "keys", None, seconds)
        out = []
        for (label, keys), c in zip(keyed, confs):
            dis = key_disagreement(keys[:c.n_samples], keys[c.n_samples:])
            out.append(dataclasses.replace(c, method=label, similarity=None, disagreement=dis))
        return out

    def _score_by_embedding(self, samples, labels, answers, t_generate) -> List[Confidence]:
        """Sample sets clustered by embedding similarity; every text, and each given answer,
        embedded in one batch."""
        t2 = time.perf_counter()
        texts = [visible(t) for s in samples for t in s.texts]
        extra = [visible(a) for a in answers if a is not None]
        emb = self.embedder.embed(texts + extra) if texts or extra \
            else np.zeros((0, 1), np.float32)
        t3 = time.perf_counter()
        confs = self._core(samples, emb[:len(texts)], self.similarity, "embedding", None,
                           {"generate": t_generate, "embed": t3 - t2})
        out, row, arow = [], 0, len(texts)
        for label, answer, c in zip(labels, answers, confs):
            dis = float("nan")
            if answer is not None:
                dis = embedding_disagreement(emb[row:row + c.n_samples], emb[arow],
                                             self.similarity)
                arow += 1
            row += c.n_samples
            out.append(dataclasses.replace(c, method=label, disagreement=dis))
        return out

    def score_adaptive(self, messages: Messages, model, threshold: float, n_max: int = 10,
                       first: int = 3, step: int = 2, rule: str = "exact",
                       delta: float = 0.05, alpha: Optional[float] = None, **opts):
        """Discrete SE drawn in rounds (``first`` samples, then ``step`` at a time, at most
        ``n_max``), stopping once the route at ``threshold`` (nats; cloud where SE >
        threshold) is settled: ``rule='exact'`` when no completion to n_max can change it,
        ``'confidence'`` also when it holds with probability >= 1 - ``delta`` under a
        Pólya-urn predictive (``alpha``: weight of a new meaning, None = fitted), ``'none'`` draws all n_max
        (the full-n reference: the same samples, round by round). A round after k samples
        draws with seed ``seed + k`` (the first is the plain ``score`` draw). Returns an
        :class:`confroute.confidence.stopping.AdaptiveResult`; the rules are in that module."""
        from confroute.confidence import stopping

        if rule not in stopping.RULES:
            raise ValueError(f"rule must be one of {stopping.RULES}, got {rule!r}")
        if not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise ValueError(f"threshold must be a number >= 0 (nats), got {threshold!r}")
        if not 0 < delta < 0.5:
            raise ValueError(f"delta must lie in (0, 0.5), got {delta}")
        if self.method != "greedy" and rule != "none":
            raise ValueError("adaptive stopping needs greedy clustering: with 'components' a "
                             "later sample can merge clusters, and the bound no longer holds")
        sizes = stopping.schedule(int(n_max), int(first), int(step))
        seed = opts.get("seed", self.seed)
        drawn, embs, secs = [], [], {"generate": 0.0, "embed": 0.0}
        for r, size in enumerate(sizes):
            t0 = time.perf_counter()
            k = sum(d.n for d in drawn)
            drawn.append(self._sample(messages, model, {**opts, "n": size,
                                                        "seed": None if seed is None
                                                        else int(seed) + k}))
            t1 = time.perf_counter()
            embs.append(self.embedder.embed(list(drawn[-1].texts)))
            secs["generate"] += t1 - t0
            secs["embed"] += time.perf_counter() - t1
            conf = self._core([_concat_samples(drawn)], np.concatenate(embs), self.similarity,
                              "embedding", None, dict(secs))[0]
            decision, exact, p = stopping.verdict(conf.cluster_ids, conf.se_discrete,
                                                  int(n_max), threshold, rule, delta, alpha)
            if decision is not None:
                return stopping.AdaptiveResult(decision, float(threshold), conf.n_samples,
                                               int(n_max), r + 1, exact, rule, conf, p)
        raise AssertionError("unreachable: the last round draws n_max")

    def score_exact(self, messages: Messages, model, extract: str = "number",
                    letters: str = "ABCD", **opts) -> Confidence:
        """Samples clustered by their final answer: ``extract='number'`` or ``'option'``.
        Samples without an answer each form their own cluster."""
        if extract not in ("number", "option"):
            raise ValueError(f"extract must be 'number' or 'option', got {extract!r}")
        t0 = time.perf_counter()
        s = self._sample(messages, model, opts)
        t1 = time.perf_counter()
        answers = [exact_answer(t, extract, letters) for t in s.texts]
        emb = one_hot(answers)
        return self._core([s], emb, 0.5, "exact", [tuple(answers)],
                          {"generate": t1 - t0, "embed": time.perf_counter() - t1})[0]

    def _core(self, samples, emb, similarity, method_name, answers, seconds) -> List[Confidence]:
        """One core call for a batch of sample sets (embeddings given, rows = all samples)."""
        from confroute.confidence.core import confidence_batch

        t0 = time.perf_counter()
        lps, counts, has = [], [], []
        for s in samples:
            # A sample without logprobs has no likelihood (an empty answer from a server that
            # leaves the stop token out has none either): the core still clusters on one
            # placeholder value per sample, and every number that needs logprobs is NaN.
            has.append(s.token_logprobs is not None and all(len(lp) for lp in s.token_logprobs))
            for i in range(s.n):
                lp = s.token_logprobs[i] if has[-1] else np.zeros(1)
                lps.append(lp)
                counts.append(len(lp))
        token_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        sample_offsets = np.concatenate([[0], np.cumsum([s.n for s in samples])]).astype(np.int64)
        flat = np.concatenate(lps) if lps else np.zeros(0)
        r = confidence_batch(flat, token_offsets, emb, sample_offsets, threshold=similarity,
                             method=self.method if method_name == "embedding" else "greedy",
                             likelihood=self.likelihood)
        dt = time.perf_counter() - t0
        out = []
        for b, s in enumerate(samples):
            lo, hi = sample_offsets[b], sample_offsets[b + 1]
            ids = np.asarray(r.cluster_ids[lo:hi])
            nan = float("nan")
            mean = np.asarray(r.seq_logprob_mean[lo:hi]) if has[b] else np.full(s.n, nan)
            total = np.asarray(r.seq_logprob_sum[lo:hi]) if has[b] else np.full(s.n, nan)

            def val(x, needs_lp=True):
                return float(x[b]) if (has[b] or not needs_lp) else nan

            out.append(Confidence(
                method=method_name, n_samples=int(r.n_samples[b]),
                n_clusters=int(r.n_clusters[b]), cluster_ids=ids,
                se_discrete=val(r.se_discrete, False), se_weighted=val(r.se_weighted),
                se_kuhn=val(r.se_kuhn), mean_token_logprob=val(r.mean_token_logprob),
                max_sequence_prob=val(r.max_sequence_prob),
                mean_perplexity=val(r.mean_perplexity),
                seq_logprob_sum=total, seq_logprob_mean=mean,
                best_index=best_index_of(ids, mean if has[b] else None, s.texts),
                similarity=similarity if method_name == "embedding" else None, samples=s,
                answers=answers[b] if answers else None,
                seconds={**seconds, "core": dt}))
        return out

    def score_options(self, messages: Messages, model, letters: Sequence[str] = "ABCD"
                      ) -> Confidence:
        """Multiple choice in one forward pass: the model's next-token probabilities of the
        option letters (each letter with and without a leading space, which tokenize
        differently), renormalized over the options; the entropy is exact and is stored in all
        three SE kinds. ``model`` needs ``tokenize`` and ``next_token_logprobs`` (EdgeModel)."""
        from confroute.confidence.core import semantic_entropy

        letters = list(letters)
        if len(letters) < 2 or len(set(letters)) != len(letters):
            raise ValueError(f"need at least two distinct option letters, got {letters}")
        t0 = time.perf_counter()
        token_ids, cluster = [], []
        for c, letter in enumerate(letters):
            variants = {tuple(model.tokenize(v)) for v in (letter, " " + letter)}
            for v in variants:
                if len(v) == 1:  # a letter that takes several tokens cannot be read in one step
                    token_ids.append(v[0])
                    cluster.append(c)
            if c not in cluster:
                raise ValueError(f"option {letter!r} is not a single token for {model.name}")
        lp = np.asarray(model.next_token_logprobs(messages, token_ids), np.float64)
        t1 = time.perf_counter()
        cluster = np.asarray(cluster, np.int64)
        h = float(semantic_entropy(cluster, [0, len(cluster)], lp, kind="weighted")[0])
        # Per option: log sum of its token variants, renormalized over the options.
        per = np.array([np.logaddexp.reduce(lp[cluster == c]) for c in range(len(letters))])
        per -= np.logaddexp.reduce(per)
        best = int(np.argmax(per))
        return Confidence(
            method="options", n_samples=len(letters), n_clusters=len(letters),
            cluster_ids=np.arange(len(letters)), se_discrete=h, se_weighted=h, se_kuhn=h,
            mean_token_logprob=float(per[best]), max_sequence_prob=float(np.exp(per[best])),
            mean_perplexity=float("nan"), seq_logprob_sum=per, seq_logprob_mean=per,
            best_index=best, similarity=None, samples=None, answers=tuple(letters),
            seconds={"generate": t1 - t0, "embed": 0.0, "core": time.perf_counter() - t1})


def _concat_samples(parts: Sequence[Samples]) -> Samples:
    """Rounds of samples of one prompt as one Samples (answers in draw order)."""
    if len(parts) == 1:
        return parts[0]
    lps = None if any(s.token_logprobs is None for s in parts) else \
        tuple(lp for s in parts for lp in s.token_logprobs)
    ids = None if any(s.token_ids is None for s in parts) else \
        tuple(t for s in parts for t in s.token_ids)
    return Samples(texts=tuple(t for s in parts for t in s.texts), token_logprobs=lps,
                   token_ids=ids, finish_reasons=tuple(f for s in parts for f in s.finish_reasons),
                   model=parts[0].model, prompt_tokens=parts[0].prompt_tokens,
                   completion_tokens=sum(s.completion_tokens for s in parts),
                   temperature=parts[0].temperature, seconds=sum(s.seconds for s in parts))


