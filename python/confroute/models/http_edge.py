"""The edge served over HTTP: any OpenAI-compatible chat endpoint (llama.cpp's llama-server,
llama-cpp-python's server, Ollama, vLLM) as the edge of the decision path, on
:class:`~confroute.models.cloud.OpenAIChatModel`'s client (timeouts, retries, the fallback for
servers that ignore ``n``).

What it gives the :class:`~confroute.decision.edge.EdgeSupplier`: ``sample`` (the answer at
temperature 0 and the samples are requests like any other, with ``logprobs: true,
top_logprobs: 1`` and ``n``) and ``name``. What an endpoint cannot give is refused with a
message, never a silent NaN:

- **no token logprobs** (``gives_logprobs()``, asked once with a one-token request): the
  likelihood-based policies (``answer_logprob``, ``se``, ``se_weighted``) are refused by
  :meth:`HttpEdge.check_policy`; ``disagreement``, ``se_discrete`` and ``se_adaptive`` (and
  the trained routers that read the prompt alone) remain;
- **hidden states** (``sep``) are in-process only: :meth:`HttpEdge.check_policy` refuses a
  policy that reads them (``needs_hidden``), and ``hidden_state`` raises ValueError;
- **an answer prefix** (a conversation ending with an assistant message, which the edge
  should continue): the OpenAI API has no reliable way to continue a message (llama-cpp-
  python's server renders it as a finished turn and starts a new answer), so such a query is
  refused (:meth:`HttpEdge.cannot_serve`, the supplier's ``refusal``) and goes to the cloud.

Logprobs over HTTP are what the server sends: under the model (llama.cpp-based servers and
vLLM's default ``raw_logprobs``), but without the stop token (OpenAI leaves it out), where
the in-process edge counts it. Sampling settings the OpenAI API does not name (llama-cpp-
python's default ``repeat_penalty`` 1.1, ``top_k`` 40, ``min_p`` 0.05) go in ``extra_body``:
``{"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}`` makes such a server draw as the
in-process edge does (``top_p`` 1 is always sent).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from confroute.models.cloud import CloudError, OpenAIChatModel
from confroute.models.types import Messages, Samples, normalize_messages

# the policies that read token logprobs (router-string names), and those that do not
LIKELIHOOD_POLICIES = ("answer_logprob", "se", "se_weighted")
COUNT_POLICIES = ("disagreement", "se_discrete", "se_adaptive")
# HTTP statuses that mean: this request cannot be served by this edge (too long for its
# context, a template it cannot render), not: the edge is down
_REFUSED = {400, 413, 422}


def needs_logprobs(policy) -> bool:
    """Whether a policy reads token logprobs: its ``needs_logprobs`` attribute where it has
    one (:mod:`confroute.decision.policies`), else False (a count-based or trained policy)."""
    return bool(getattr(policy, "needs_logprobs", False))


class HttpEdge:
    """The edge behind an OpenAI-compatible endpoint: ``HttpEdge(base_url, model,
    api_key=...)``, passed to ``Controller`` (or built by ``confroute serve`` from
    ``edge.base_url``). ``extra_body``: request fields sent with every call (sampling
    settings the server has beyond the OpenAI API); ``name``: the model's name in answers
    and usage (default ``model``)."""

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None,
                 timeout: float = 60.0, max_retries: int = 3,
                 extra_body: Optional[Dict[str, Any]] = None, name: Optional[str] = None):
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ValueError(f"extra_body must be a dict of request fields, got "
                             f"{type(extra_body).__name__}")
        self.client = OpenAIChatModel(base_url, model, api_key=api_key, timeout=timeout,
                                      max_retries=max_retries)
        self.base_url, self.model = self.client.base_url, model
        self.name = name or model
        self.extra_body = {"top_p": 1.0, **(extra_body or {})}

    def __repr__(self):
        return f"HttpEdge({self.base_url!r}, model={self.model!r})"

    def describe(self) -> str:
        return f"the HTTP edge {self.model!r} at {self.base_url}"

    def close(self) -> None:
        self.client.close()

    # --- what it cannot do ------------------------------------------------------------------
    def gives_logprobs(self) -> bool:
        """Whether the endpoint returns token logprobs (asked once)."""
        return self.client.gives_logprobs()

    def settings(self) -> Dict[str, Any]:
        """What its draws depend on besides the request: the endpoint, the model and the
        extra request fields (what an outcome checkpoint's header records of it)."""
        return {"base_url": self.base_url, "model": self.model,
                "extra_body": dict(self.extra_body)}

    def check_policy(self, policy) -> None:
        """ValueError when ``policy`` reads the prompt's hidden state (in-process only), or
        reads token logprobs and the endpoint returns none."""
        if getattr(policy, "needs_hidden", False):
            raise ValueError(f"{policy!r}: {self._no_hidden()}")
        if needs_logprobs(policy) and not self.gives_logprobs():
            raise ValueError(
                f"{policy!r} weighs the edge's answers by their token logprobs, and "
                f"{self.describe()} returns none (asked with logprobs: true, top_logprobs: 1): "
                f"the likelihood-based policies ({', '.join(LIKELIHOOD_POLICIES)}) cannot be "
                f"served on it; {', '.join(COUNT_POLICIES)} (and trained routers that read the "
                "prompt alone) can, or use a server that returns logprobs")

    def cannot_serve(self, messages: Messages) -> Optional[str]:
        """Why this edge cannot answer these messages, or None: a conversation that ends with
        an assistant message asks the edge to continue it, which the OpenAI API does not do
        reliably."""
        msgs = normalize_messages(messages)
        if len(msgs) > 1 and msgs[-1]["role"] == "assistant":
            return (f"prefix: the conversation ends with an assistant message for the edge to "
                    f"continue, and {self.describe()} cannot continue a message over the "
                    "OpenAI API (it would start a new answer)")
        return None

    def hidden_state(self, messages: Messages):
        raise ValueError(self._no_hidden())

    def _no_hidden(self) -> str:
        return (f"the policy needs the edge's hidden state (e.g. router sep), which is "
                f"in-process only: {self.describe()} returns text and logprobs, not hidden "
                "states; the policies that read the edge's answers and samples "
                f"({', '.join(LIKELIHOOD_POLICIES + COUNT_POLICIES)}) and trained routers that "
                "read the prompt alone remain; an in-process edge serves it (the server's "
                "edge.model, eval build's --edge)")

    # --- generation -----------------------------------------------------------------------
    def sample(self, messages: Messages, n: int = 5, max_tokens: int = 64,
               temperature: float = 1.0, seed: Optional[int] = None, **extra) -> Samples:
        """n answers with their token logprobs (None where the server gives none), n in one
        request where the server honours it (else asked again for the rest, seed + i).
        ValueError for what this edge cannot serve (a prefix to continue, a request the server
        refuses as malformed or too long): the supplier then sends the query to the cloud."""
        why = self.cannot_serve(messages)
        if why:
            raise ValueError(why)
        try:
            s = self.client.sample(messages, n=n, max_tokens=max_tokens,
                                   temperature=temperature, seed=seed, logprobs=True,
                                   **{**self.extra_body, **extra})
        except CloudError as e:
            if e.status in _REFUSED:
                raise ValueError(f"{self.describe()} refused the request: {e}") from None
            raise
        return dataclasses.replace(s, model=self.name)

    def chat(self, messages: Messages, n: int = 1, max_tokens: int = 256,
             temperature: float = 0.7, stream: bool = False, seed: Optional[int] = None,
             **extra):
        """``OpenAIChatModel.chat`` with this edge's ``extra_body``; with ``stream=True`` an
        iterator of text pieces (as the in-process edge streams)."""
        opts = {**self.extra_body, **extra}
        if seed is not None:
            opts["seed"] = int(seed)
        if not stream:
            r = self.client.chat(messages, n=n, max_tokens=max_tokens, temperature=temperature,
                                 **opts)
            return dataclasses.replace(r, model=self.name)
        chunks = self.client.chat(messages, n=n, max_tokens=max_tokens,
                                  temperature=temperature, stream=True, **opts)

        def pieces():
            for c in chunks:
                for ch in c.get("choices") or ():
                    text = (ch.get("delta") or {}).get("content")
                    if text:
                        yield text

        return pieces()

    def generate(self, messages: Messages, max_tokens: int = 256, temperature: float = 0.0,
                 **extra):
        return self.chat(messages, n=1, max_tokens=max_tokens, temperature=temperature,
                         **extra)
