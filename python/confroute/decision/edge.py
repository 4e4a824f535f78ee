"""The edge's side of the decision path (:mod:`confroute.decision.path`): :class:`EdgeSupplier`
fetches what a policy needs from the edge model — samples (several queries' together, rounds
merged), hidden states — and says when the edge cannot serve a query at all."""
from __future__ import annotations

import dataclasses
import time
from typing import List, Optional, Sequence, Tuple

from confroute.decision.path import Evidence, Need, Query
from confroute.models.types import SampleRequest, Samples


class EdgeSupplier:
    """What the path asks of the edge model: samples (drawn, merged with earlier rounds and
    scored by ``scorer``) and hidden states. With ``batch`` (an edge with ``sample_many``),
    the samples of several queries in one round are drawn in shared llama.cpp batches of at
    most ``edge.n_seq_max`` sequences; ``on_batch(k)`` is told each time k > 1 queries
    shared one. Not thread-safe: runs where the edge may be used (the server's edge thread).

    The edge needs ``sample``; the context check uses ``prompt_tokens`` and ``n_ctx`` where the
    edge has them; a policy that needs hidden states needs ``hidden_state(messages)``. An
    edge may say what it cannot serve: ``check_policy(policy)`` (ValueError) and
    ``cannot_serve(messages)`` (a reason; the query goes to the cloud) — see
    :class:`confroute.models.http_edge.HttpEdge`."""

    def __init__(self, edge, scorer, batch: bool = False, on_batch=None):
        self.edge, self.scorer = edge, scorer
        self.batch = batch
        self.on_batch = on_batch or (lambda k: None)

    def check_policy(self, policy) -> None:
        """ValueError when the edge cannot serve ``policy`` at all (an HTTP edge without
        token logprobs and a policy that reads them: the edge's own ``check_policy``)."""
        check = getattr(self.edge, "check_policy", None)
        if check is not None:
            check(policy)

    def refusal(self, query: Query) -> Optional[str]:
        """Why the edge cannot serve this query at all (it does not fit its context; the
        edge's own ``cannot_serve``, e.g. an HTTP edge asked to continue a prefix), or None."""
        edge = self.edge
        cannot = getattr(edge, "cannot_serve", None)
        why = cannot(query.edge_messages) if cannot is not None else None
        if why:
            return why
        if not (hasattr(edge, "prompt_tokens") and hasattr(edge, "n_ctx")):
            return None
        n_prompt = len(edge.prompt_tokens(query.edge_messages))
        max_tokens = query.sampling.max_tokens
        # EdgeModel.n_ctx is each sequence's context (prompt + answer)
        if n_prompt + max_tokens > edge.n_ctx:
            return (f"context: the prompt ({n_prompt} tokens) and max_tokens ({max_tokens}) "
                    f"exceed the edge model's context ({edge.n_ctx})")
        return None

    def supply(self, asks: Sequence[Tuple[Query, Need, Evidence]]) -> List[Evidence]:
        """For each (query, need, evidence so far): the evidence with what was missing added
        (the answer and the samples drawn in one batch, then scored together), or with
        ``refused`` set when the edge cannot sample this prompt."""
        out = []
        draws = []      # (position in out, "answer" | "samples", SampleRequest)
        for query, need, ev in asks:
            if need.hidden and ev.hidden is None:
                ev = dataclasses.replace(ev, hidden=self._hidden(query))
            s = query.sampling
            if need.answer and ev.answer is None:
                draws.append((len(out), "answer", SampleRequest(
                    query.edge_messages, 1, s.max_tokens, s.answer_temperature, s.seed)))
            more = need.samples - ev.n_samples
            if more > 0:
                # seed + 1: not the answer's draw; a later round after k samples: + k
                seed = None if s.seed is None else s.seed + 1 + ev.n_samples
                draws.append((len(out), "samples", SampleRequest(
                    query.edge_messages, more, s.max_tokens, s.temperature, seed)))
            out.append(ev)
        if not draws:
            return out
        t0 = time.perf_counter()
        drawn = self._draw([r for _, _, r in draws])
        spent = time.perf_counter() - t0
        for k in {k for k, _, _ in draws}:
            out[k] = dataclasses.replace(out[k], seconds=out[k].seconds + spent)
        new = {}
        for (k, what, _), got in zip(draws, drawn):
            if not isinstance(got, Samples):
                out[k] = dataclasses.replace(out[k], refused=got)
            elif what == "answer":
                out[k] = dataclasses.replace(out[k], answer=got)
                new.setdefault(k, out[k].samples)
            else:
                new[k] = _merged(out[k].samples, got)
        keep = [k for k, v in new.items() if v is not None and out[k].refused is None]
        confs = self.scorer.score_samples(
            [new[k] for k in keep], t_generate=time.perf_counter() - t0,
            prompts=[asks[k][0].prompt for k in keep],
            answers=[out[k].answer_text for k in keep],
            prefixes=[asks[k][0].prefix for k in keep])
        for k, c in zip(keep, confs):
            out[k] = dataclasses.replace(out[k], confidence=c)
        return out

    def _draw(self, requests: List[SampleRequest]) -> list:
        """Samples per request, or a string saying why the edge cannot sample it."""
        if self.batch and len(requests) > 1:
            out = []
            for group in _fitting(requests, self.edge.n_seq_max):
                ids = [dataclasses.replace(r, prompt=self.edge.prompt_tokens(r.prompt))
                       for r in group]
                out += self.edge.sample_many(ids)
                if len(group) > 1:
                    self.on_batch(len(group))
            return out
        out = []
        for r in requests:
            try:
                out.append(self.edge.sample(r.prompt, n=r.n, max_tokens=r.max_tokens,
                                            temperature=r.temperature, seed=r.seed))
            except ValueError as e:   # the edge model's own limits (the request is valid)
                out.append(f"edge: {e}")
        return out

    def _hidden(self, query: Query):
        fn = getattr(self.edge, "hidden_state", None)
        if fn is None:
            raise ValueError(f"the policy needs the edge's hidden state, and "
                             f"{getattr(self.edge, 'name', type(self.edge).__name__)} offers "
                             "none (no hidden_state method)")
        return fn(query.edge_messages)


def _fitting(requests: List[SampleRequest], n_seq_max: int) -> List[List[SampleRequest]]:
    """Consecutive groups whose samples fit one llama.cpp batch."""
    groups: List[List[SampleRequest]] = []
    for r in requests:
        if groups and sum(g.n for g in groups[-1]) + r.n <= n_seq_max:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _merged(a: Optional[Samples], b: Samples) -> Samples:
    """Samples of two rounds of one prompt as one set (token counts add up: each round
    processed the prompt again)."""
    if a is None:
        return b

    def cat(x, y):
        return None if x is None or y is None else tuple(x) + tuple(y)

    return Samples(texts=a.texts + b.texts, token_logprobs=cat(a.token_logprobs, b.token_logprobs),
                   token_ids=cat(a.token_ids, b.token_ids),
                   finish_reasons=a.finish_reasons + b.finish_reasons, model=a.model,
                   prompt_tokens=a.prompt_tokens + b.prompt_tokens,
                   completion_tokens=a.completion_tokens + b.completion_tokens,
                   temperature=b.temperature, seconds=a.seconds + b.seconds)
