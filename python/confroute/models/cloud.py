"""A client for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp's and
llama-cpp-python's servers, ...), on httpx.

Every request has a timeout. 429, 5xx, connection errors and timeouts are retried with
exponential backoff and jitter (a ``Retry-After`` header is honoured, capped); other HTTP errors
are raised at once as :class:`CloudError` with the server's message. Extra keyword arguments of
``chat`` (tools, tool_choice, stop, seed, response_format, ...) go to the server untouched.
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from confroute.models.types import (
    ChatResult, Messages, Samples, check_generation, content_text, normalize_messages,
)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class CloudError(RuntimeError):
    """The endpoint could not be reached, kept failing, or refused the request."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class HttpClient:
    """JSON over HTTP with timeouts and retries; shared by the chat and embeddings clients."""

    def __init__(self, base_url: str, api_key: Optional[str] = None, timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, max_backoff: float = 8.0):
        import httpx

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        url = base_url.rstrip("/")
        # OpenAI-style base URLs end in /v1; a bare host gets it added.
        if url.count("/") == 2:
            url += "/v1"
        self.base_url = url
        self.api_key = api_key
        self.max_retries = int(max_retries)
        self.backoff, self.max_backoff = backoff, max_backoff
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._httpx = httpx
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout))

    def close(self) -> None:
        self._client.close()

    def _wait(self, attempt: int, response=None) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random())
        if response is not None and response.headers.get("retry-after"):
            try:
                delay = min(self.max_backoff, float(response.headers["retry-after"]))
            except ValueError:
                pass
        time.sleep(delay)

    def _request(self, path: str, payload: Dict[str, Any], stream: bool):
        """The response of a POST, retried on transient failures. A stream's response is open:
        the caller must close it."""
        httpx = self._httpx
        url = self.base_url + path
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                req = self._client.build_request("POST", url, json=payload)
                r = self._client.send(req, stream=stream)
            except (httpx.TransportError,) as e:  # connect/read timeouts, refused, reset
                last = f"{type(e).__name__}: {e}"
            else:
                if r.status_code < 400:
                    return r
                if stream:
                    r.read()
                    r.close()
                last = f"HTTP {r.status_code}: {_error_text(r)}"
                if r.status_code not in RETRY_STATUS:
                    raise CloudError(f"{url} refused the request ({last})", r.status_code)
                if attempt < self.max_retries:
                    self._wait(attempt, r)
                continue
            if attempt < self.max_retries:
                self._wait(attempt)
        raise CloudError(f"{url} failed after {self.max_retries + 1} tries ({last})")

    def post_json(self, path: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        r = self._request(path, payload, stream=False)
        try:
            return r.json()
        except ValueError as e:
            raise CloudError(f"{self.base_url}{path} answered with non-JSON: "
                             f"{r.text[:200]!r}") from e

    def post_stream(self, path: str, payload: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        """Server-sent events of a streaming POST, one parsed JSON object each."""
        r = self._request(path, payload, stream=True)
        try:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    yield json.loads(data)
                except ValueError as e:
                    raise CloudError(f"bad event in the stream: {data[:200]!r}") from e
        except self._httpx.TransportError as e:
            raise CloudError(f"the stream from {self.base_url}{path} broke off: {e}") from e
        finally:
            r.close()


def _error_text(r) -> str:
    try:
        body = r.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    except ValueError:
        return r.text[:300]


class OpenAIChatModel:
    """A chat model behind an OpenAI-compatible API (the role it plays by default:
    ``CloudModel``). The key comes from ``api_key``, else ``CONFROUTE_API_KEY``, else
    ``OPENAI_API_KEY`` (none is fine for local servers)."""

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5):
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string (the server's model name)")
        key = api_key or os.environ.get("CONFROUTE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._http = HttpClient(base_url, key, timeout, max_retries, backoff)
        self.base_url = self._http.base_url
        self.model = model
        self.name = model
        self._gives_logprobs: Optional[bool] = None  # asked on first need

    def __repr__(self):
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        self._http.close()

    def _payload(self, messages, n, max_tokens, temperature, extra) -> Dict[str, Any]:
        check_generation(n, max_tokens, temperature)
        payload = {"model": self.model, "messages": _text_lists_flattened(messages),
                   "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if n != 1:
            payload["n"] = int(n)
        payload.update(extra)
        return payload

    def chat(self, messages: Messages, n: int = 1, max_tokens: int = 256,
             temperature: float = 0.7, stream: bool = False, **extra):
        """A :class:`ChatResult`; with ``stream=True`` an iterator of the server's chunks
        (dicts as OpenAI sends them; ``choices[0].delta.content`` holds the text)."""
        payload = self._payload(messages, n, max_tokens, temperature, extra)
        if stream:
            payload["stream"] = True
            return self._http.post_stream("/chat/completions", payload)
        t0 = time.perf_counter()
        data = self._http.post_json("/chat/completions", payload)
        choices = data.get("choices") or []
        if not choices:
            raise CloudError(f"{self.base_url} returned no choices: {str(data)[:200]}")
        msgs = [c.get("message") or {} for c in choices]
        usage = data.get("usage") or {}
        return ChatResult(
            texts=tuple(m.get("content") or "" for m in msgs), model=data.get("model", self.model),
            usage={"prompt_tokens": int(usage.get("prompt_tokens", 0)),
                   "completion_tokens": int(usage.get("completion_tokens", 0))},
            finish_reason=choices[0].get("finish_reason") or "",
            finish_reasons=tuple(c.get("finish_reason") or "" for c in choices),
            tool_calls=msgs[0].get("tool_calls"), seconds=time.perf_counter() - t0, raw=data)

    def gives_logprobs(self) -> bool:
        """Whether the server returns token logprobs: asked once, with a one-token request,
        so a job that needs them can refuse before it samples anything."""
        if self._gives_logprobs is None:
            r = self.chat("Hi", n=1, max_tokens=1, temperature=0.0, logprobs=True,
                          top_logprobs=1)
            self._gives_logprobs = _choice_logprobs(r.raw["choices"][0]) is not None
        return self._gives_logprobs

    def generate(self, messages: Messages, max_tokens: int = 256, temperature: float = 0.0,
                 **extra) -> ChatResult:
        return self.chat(messages, n=1, max_tokens=max_tokens, temperature=temperature, **extra)

    def sample(self, messages: Messages, n: int = 5, max_tokens: int = 64,
               temperature: float = 1.0, seed: Optional[int] = None,
               logprobs: bool = True, **extra) -> Samples:
        """n answers with per-token logprobs where the server gives them (``Samples.
        token_logprobs`` is None otherwise). Servers that ignore ``n`` (llama.cpp's) are asked
        again for the rest; with a seed, each follow-up request uses seed + i."""
        check_generation(n, max_tokens, temperature)
        t0 = time.perf_counter()
        texts: List[str] = []
        lps: List[Optional[np.ndarray]] = []
        finish: List[str] = []
        prompt_tokens = completion_tokens = 0
        for attempt in range(n):
            if len(texts) >= n:
                break
            opts = dict(extra)
            if seed is not None:
                opts["seed"] = int(seed) + attempt
            if logprobs:
                # top_logprobs must be set too: some servers return none without it.
                opts.update(logprobs=True, top_logprobs=1)
            r = self.chat(messages, n=n - len(texts), max_tokens=max_tokens,
                          temperature=temperature, **opts)
            prompt_tokens = prompt_tokens or r.usage["prompt_tokens"]
            completion_tokens += r.usage["completion_tokens"]
            for c in r.raw["choices"][: n - len(texts)]:
                texts.append((c.get("message") or {}).get("content") or "")
                finish.append(c.get("finish_reason") or "")
                lps.append(_choice_logprobs(c))
        have = all(lp is not None for lp in lps)
        return Samples(texts=tuple(texts),
                       token_logprobs=tuple(lps) if have else None, token_ids=None,
                       finish_reasons=tuple(finish), model=self.model,
                       prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                       temperature=float(temperature), seconds=time.perf_counter() - t0)


# The role it plays by default; the name users import.
CloudModel = OpenAIChatModel


def _text_lists_flattened(messages: Messages) -> List[Dict[str, Any]]:
    """Checked messages; list-form content made only of text parts is sent as one string
    (llama.cpp-based servers fail on lists), anything with other parts (images) as it is."""
    out = normalize_messages(messages, flatten=False)
    for m in out:
        c = m.get("content")
        if isinstance(c, (list, tuple)) and all(
                isinstance(p, str) or (isinstance(p, dict) and p.get("type", "text") == "text")
                for p in c):
            m["content"] = content_text(c)
    return out


def _choice_logprobs(choice: Dict[str, Any]) -> Optional[np.ndarray]:
    content = (choice.get("logprobs") or {}).get("content")
    if content is None:
        return None
    return np.asarray([float(t["logprob"]) for t in content], dtype=np.float64)
