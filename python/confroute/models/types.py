"""What flows out of every model backend, and the one place chat messages are checked."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass(frozen=True)
class Samples:
    """n answers to one prompt. ``token_logprobs[i]`` holds the float64 log-probability of each
    generated token of answer i under the model (temperature 1, see ``LlamaModel.sample``), or
    the whole field is None when the backend offers no logprobs. ``finish_reasons[i]`` is
    'stop' (end of generation token) or 'length' (max_tokens reached). The edge model's
    ``token_ids[i]`` and ``token_logprobs[i]`` align and, for 'stop', end with the
    end-of-generation token, which ``texts[i]`` leaves out and ``completion_tokens`` counts;
    a remote server's logprobs are what it sends (OpenAI's leave the stop token out).
    ``hidden``: see ``LlamaModel.sample_many``."""

    texts: Tuple[str, ...]
    token_logprobs: Optional[Tuple[np.ndarray, ...]]
    token_ids: Optional[Tuple[np.ndarray, ...]]
    finish_reasons: Tuple[str, ...]
    model: str
    prompt_tokens: int
    completion_tokens: int
    temperature: float
    seconds: float
    # the prompt's last-token hidden states [layers, n_embd] when asked for (LlamaModel)
    hidden: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def has_logprobs(self) -> bool:
        return self.token_logprobs is not None


@dataclass(frozen=True)
class ChatResult:
    """One (or n) chat completions. ``text`` is the first choice; ``usage`` holds
    ``prompt_tokens`` and ``completion_tokens``; ``raw`` the server's JSON where there was one."""

    texts: Tuple[str, ...]
    model: str
    usage: Dict[str, int]
    finish_reason: str
    seconds: float
    finish_reasons: Tuple[str, ...] = ()
    tool_calls: Optional[List[Dict[str, Any]]] = None
    raw: Optional[Dict[str, Any]] = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


Message = Dict[str, Any]
Messages = Union[str, Sequence[Message]]


@dataclass(frozen=True)
class SampleRequest:
    """One prompt's share of ``LlamaModel.sample_many``: ``prompt`` is chat messages (as
    ``sample`` takes them) or the already-tokenized prompt (a list of token ids, e.g. from
    ``LlamaModel.prompt_tokens``); the other fields are ``sample``'s arguments."""

    prompt: Union[Messages, Sequence[int]]
    n: int = 5
    max_tokens: int = 64
    temperature: float = 1.0
    seed: Optional[int] = None
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0


def content_text(content: Any, where: str = "content") -> str:
    """A message's content as plain text: a string, or OpenAI's list form
    ``[{"type": "text", "text": ...}, ...]`` whose text parts are joined. ValueError for a
    part a local model cannot read (an image)."""
    text, other = _text_and_other(content, where)
    if other:
        raise ValueError(f"{where}[{other[1]}] has type {other[0]!r}; only text parts can be "
                         "read by a local model")
    return text


def _text_and_other(content: Any, where: str):
    """(the text parts joined, None or (type, index) of the first other part)."""
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    if isinstance(content, (list, tuple)):
        parts, other = [], None
        for i, part in enumerate(content):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                if not isinstance(part.get("text"), str):
                    raise ValueError(f"{where}[{i}] is a text part without a string 'text'")
                parts.append(part["text"])
            elif isinstance(part, dict):
                other = other or (str(part.get("type")), i)
            else:
                raise ValueError(f"{where}[{i}] must be a string or a dict, got "
                                 f"{type(part).__name__}")
        return "\n".join(parts), other
    raise ValueError(f"{where} must be a string or a list of parts, got {type(content).__name__}")


def normalize_messages(messages: Messages, flatten: bool = True,
                       cloud_parts: bool = False) -> List[Message]:
    """Checks chat messages and returns them as a new list of dicts; a bare string becomes one
    user message. ``flatten`` turns list-form content into plain text (local models need it;
    the cloud client keeps it as is); ``cloud_parts`` lets unflattened content hold parts only
    a cloud reads (images). Raises ValueError saying what is wrong."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if isinstance(messages, dict) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a string or a list of {'role', 'content'} dicts")
    if len(messages) == 0:
        raise ValueError("messages is empty: give at least one message")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}] has unknown role {role!r}; use one of {ROLES}")
        if "content" not in m and not m.get("tool_calls"):
            raise ValueError(f"messages[{i}] has no 'content'")
        m = dict(m)
        if flatten:
            m["content"] = content_text(m.get("content"), f"messages[{i}].content")
        elif cloud_parts:
            _text_and_other(m.get("content"), f"messages[{i}].content")  # validate only
        else:
            content_text(m.get("content"), f"messages[{i}].content")  # validate only
        out.append(m)
    return out


def edge_view(messages: Messages) -> Tuple[List[Message], List[Message], Optional[str]]:
    """(the messages as given, checked; role + plain text for a local model; why only the
    cloud can serve them, or None). Image, audio or file parts, tool calls and tool results
    are the cloud's: the local text leaves them out, and the reason says so. ValueError
    for what no model can read (a bad role, a part without its text)."""
    msgs = normalize_messages(messages, flatten=False, cloud_parts=True)
    edge, why = [], None
    for i, m in enumerate(msgs):
        text, other = _text_and_other(m.get("content"), f"messages[{i}].content")
        if other:
            why = why or f"content: messages[{i}] holds {other[0]} parts that only the cloud " \
                         "can read"
        if m.get("tool_calls") or m["role"] == "tool":
            why = why or "tools: the conversation holds tool calls or results"
        edge.append({"role": m["role"], "content": text})
    return msgs, edge, why


def last_user_text(messages: Messages) -> str:
    """The text of the last user message: what a router judges a conversation by."""
    msgs = normalize_messages(messages)
    for m in reversed(msgs):
        if m["role"] == "user":
            return m["content"]
    return msgs[-1]["content"]


def check_generation(n: int = 1, max_tokens: int = 1, temperature: float = 0.0) -> None:
    """ValueError for n < 1, max_tokens < 1 or a negative/NaN temperature."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) \
            or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if not isinstance(temperature, (int, float, np.floating)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
