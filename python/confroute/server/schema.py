"""Checks a chat-completions request the way OpenAI's API does, by hand, field by field.

Written by hand rather than as pydantic models because the request must stay *as sent*: list-form
content and nested tool JSON schemas are forwarded to the cloud untouched, and each rejection
must name the exact field (``messages[2].content[0].text``). Every problem raises
:class:`~confroute.server.errors.ApiError` (4xx); nothing here can raise anything else for any
JSON input.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from confroute.server.errors import ApiError, invalid, json_type
from confroute.server.model_names import parse_model

ROLES = ("system", "developer", "user", "assistant", "tool")
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# Fields the cloud understands and the edge ignores: checked for type, then forwarded as sent.
_PASSTHROUGH = ("top_p", "presence_penalty", "frequency_penalty", "logit_bias", "user",
                "response_format", "parallel_tool_calls", "logprobs", "top_logprobs")
# Accepted and dropped: they describe storage and billing on OpenAI's side, not the answer.
_IGNORED = ("store", "metadata", "service_tier", "stream_options")
_HANDLED = ("model", "messages", "n", "max_tokens", "max_completion_tokens", "temperature",
            "stop", "seed", "stream", "tools", "tool_choice")
KNOWN_FIELDS = frozenset(_PASSTHROUGH + _IGNORED + _HANDLED)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_messages: int = 256
    max_content_chars: int = 200_000     # all text of all messages together
    max_tokens: int = 2048
    max_n: int = 8
    max_tools: int = 128
    body_timeout_s: float = 30.0         # a body that trickles in slower is refused (408)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    router: str                    # e.g. "se"
    threshold: float
    messages: List[Dict[str, Any]]  # as sent (the cloud gets these)
    edge_messages: List[Dict[str, str]]  # role + plain text (what a local model can read)
    n: int = 1
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    stop: Optional[Tuple[str, ...]] = None
    seed: Optional[int] = None
    stream: bool = False
    include_usage: bool = False
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Any = None
    passthrough: Dict[str, Any] = field(default_factory=dict)
    # Why only the cloud can answer this request as asked (None: either model can).
    cloud_only: Optional[str] = None

    @property
    def chain(self) -> Optional[str]:
        """The configured chain the request names (``chain-<name>``), else None."""
        from confroute.decision.chain import PREFIX

        return self.router[len(PREFIX):] if self.router.startswith(PREFIX) else None

    def cloud_extra(self) -> Dict[str, Any]:
        """Keyword arguments for the cloud call beyond messages/n/max_tokens/temperature."""
        extra = dict(self.passthrough)
        if self.tools is not None:
            extra["tools"] = self.tools
        if self.tool_choice is not None:
            extra["tool_choice"] = self.tool_choice
        if self.stop is not None:
            extra["stop"] = list(self.stop)
        if self.seed is not None:
            extra["seed"] = self.seed
        return extra


def _json_object(body: bytes, limits: Limits) -> Dict[str, Any]:
    if len(body) > limits.max_body_bytes:
        raise ApiError(413, f"request body is {len(body)} bytes; the limit is "
                       f"{limits.max_body_bytes}", code="body_too_large")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise invalid(None, f"request body is not valid JSON: {e}", "invalid_json") from None
    if not isinstance(data, dict):
        raise invalid(None, f"request body must be a JSON object, got {json_type(data)}",
                      "invalid_type")
    return data


def parse_chat_request(body: bytes, limits: Limits, routers: Dict[str, Any],
                       chains: Dict[str, Any] = None) -> ChatRequest:
    return _chat_request(_json_object(body, limits), limits, routers, chains=chains)


def parse_route_request(body: bytes, limits: Limits, routers: Dict[str, Any],
                        chains: Dict[str, Any] = None) -> ChatRequest:
    """``POST /v1/route``: a chat request, checked as one, plus an optional ``threshold``
    (then the model may name the router alone); it is not answered, so no ``stream``."""
    data = _json_object(body, limits)
    threshold = None
    if "threshold" in data:
        data = dict(data)
        threshold = data.pop("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise invalid("threshold", f"threshold must be a number, got {json_type(threshold)}",
                          "invalid_type")
        if not (math.isfinite(threshold) and threshold >= 0):
            raise invalid("threshold", f"threshold must be a finite number >= 0, got "
                          f"{threshold}")
        threshold = float(threshold)
    if data.get("stream") is True:
        raise invalid("stream", "the route endpoint answers with the decision only; stream "
                      "is not allowed")
    return _chat_request(data, limits, routers, threshold, chains)


def _chat_request(data: Dict[str, Any], limits: Limits, routers: Dict[str, Any],
                  threshold: Optional[float] = None, chains: Dict[str, Any] = None
                  ) -> ChatRequest:
    for key in data:
        if key not in KNOWN_FIELDS:
            raise invalid(key, f"Unrecognized request argument supplied: {key}",
                          "unknown_parameter")
    if "model" not in data:
        raise invalid("model", "you must provide a model parameter", "missing_required_parameter")
    router, threshold = parse_model(data["model"], routers, threshold, chains)
    messages, edge_messages, needs = _messages(data.get("messages", _MISSING), limits)

    n = _int(data, "n", 1, 1, limits.max_n)
    max_tokens = _int(data, "max_tokens", None, 1, limits.max_tokens)
    mct = _int(data, "max_completion_tokens", None, 1, limits.max_tokens)
    if mct is not None:
        max_tokens = mct
    temperature = _number(data, "temperature", None, 0.0, 2.0)
    seed = _int(data, "seed", None, -(2 ** 63), 2 ** 63 - 1)
    stream = _bool(data, "stream", False)
    stop = _stop(data.get("stop"))
    include_usage = False
    opts = data.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise invalid("stream_options", "stream_options must be an object", "invalid_type")
        if not stream:
            raise invalid("stream_options", "stream_options is only allowed when stream is true")
        include_usage = _bool(opts, "include_usage", False, "stream_options.include_usage")
    tools = _tools(data.get("tools"), limits)
    tool_choice = _tool_choice(data.get("tool_choice"), tools)
    if tools and tool_choice != "none":
        needs = needs or "tools: the request offers tools and only the cloud model can call them"
    passthrough = _passthrough(data)
    return ChatRequest(model=data["model"], router=router, threshold=threshold, messages=messages,
                       edge_messages=edge_messages, n=n, max_tokens=max_tokens,
                       temperature=temperature, stop=stop, seed=seed, stream=stream,
                       include_usage=include_usage, tools=tools, tool_choice=tool_choice,
                       passthrough=passthrough, cloud_only=needs)


_MISSING = object()


def _messages(msgs: Any, limits: Limits):
    if msgs is _MISSING:
        raise invalid("messages", "messages is required", "missing_required_parameter")
    if not isinstance(msgs, list):
        raise invalid("messages", f"messages must be an array, got {json_type(msgs)}",
                      "invalid_type")
    if not msgs:
        raise invalid("messages", "messages must hold at least one message")
    if len(msgs) > limits.max_messages:
        raise invalid("messages", f"messages holds {len(msgs)} messages; the limit is "
                      f"{limits.max_messages}", "too_many_messages")
    edge, needs, total = [], None, 0
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid(where, f"{where} must be an object, got {json_type(m)}", "invalid_type")
        role = m.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role", f"{where}.role must be one of {', '.join(ROLES)}; "
                          f"got {role!r}")
        for key in ("name", "tool_call_id"):
            if key in m and not isinstance(m[key], str):
                raise invalid(f"{where}.{key}", f"{where}.{key} must be a string", "invalid_type")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise invalid(f"{where}.tool_call_id", f"{where} has role 'tool' and needs a string "
                          "tool_call_id", "missing_required_parameter")
        calls = m.get("tool_calls")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list):
                raise invalid(f"{where}.tool_calls", f"{where}.tool_calls must be an array on an "
                              "assistant message")
            needs = needs or "tools: the conversation holds tool calls"
        if role == "tool":
            needs = needs or "tools: the conversation holds tool results"
        content = m.get("content", _MISSING)
        if content is _MISSING or (content is None and calls is None):
            if not (role == "assistant" and calls):
                raise invalid(f"{where}.content", f"{where}.content is required",
                              "missing_required_parameter")
        text, chars, other = _content(content, f"{where}.content")
        total += chars
        if other:
            needs = needs or f"content: {where} holds {other} parts that only the cloud can read"
        edge.append({"role": role, "content": text})
    if total > limits.max_content_chars:
        raise invalid("messages", f"the messages hold {total} characters; the limit is "
                      f"{limits.max_content_chars}", "context_length_exceeded")
    return msgs, edge, needs


def _content(content: Any, where: str) -> Tuple[str, int, Optional[str]]:
    """(plain text for a local model, characters counted, type of a non-text part if any)."""
    if content is None or content is _MISSING:
        return "", 0, None
    if isinstance(content, str):
        return content, len(content), None
    if not isinstance(content, list):
        raise invalid(where, f"{where} must be a string or an array of content parts, got "
                      f"{json_type(content)}", "invalid_type")
    texts, chars, other = [], 0, None
    for j, part in enumerate(content):
        pw = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise invalid(pw, f"{pw} must be an object, got {json_type(part)}", "invalid_type")
        kind = part.get("type")
        if kind not in PART_TYPES:
            raise invalid(f"{pw}.type", f"{pw}.type must be one of {', '.join(PART_TYPES)}; "
                          f"got {kind!r}")
        if kind in ("text", "refusal"):
            value = part.get(kind)
            if not isinstance(value, str):
                raise invalid(f"{pw}.{kind}", f"{pw}.{kind} must be a string", "invalid_type")
            texts.append(value)
            chars += len(value)
        else:
            payload = part.get(kind)
            if not isinstance(payload, dict):
                raise invalid(f"{pw}.{kind}", f"{pw}.{kind} must be an object", "invalid_type")
            chars += sum(len(v) for v in payload.values() if isinstance(v, str))
            other = other or kind
    return "\n".join(texts), chars, other


def _int(d: dict, key: str, default, lo: int, hi: int, where: Optional[str] = None):
    v = d.get(key)
    where = where or key
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid(where, f"{where} must be an integer, got {json_type(v)}", "invalid_type")
    if not lo <= v <= hi:
        raise invalid(where, f"{where} must be between {lo} and {hi}, got {v}")
    return v


def _number(d: dict, key: str, default, lo: float, hi: float):
    v = d.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise invalid(key, f"{key} must be a number, got {json_type(v)}", "invalid_type")
    if not (lo <= v <= hi):   # also false for NaN
        raise invalid(key, f"{key} must be between {lo} and {hi}, got {v}")
    return float(v)


def _bool(d: dict, key: str, default: bool, where: Optional[str] = None) -> bool:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise invalid(where or key, f"{where or key} must be a boolean, got {json_type(v)}",
                      "invalid_type")
    return v


def _stop(v: Any) -> Optional[Tuple[str, ...]]:
    if v is None:
        return None
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not 1 <= len(items) <= 4:
        raise invalid("stop", "stop must be a string or an array of 1 to 4 strings")
    for i, s in enumerate(items):
        if not isinstance(s, str) or not s:
            raise invalid(f"stop[{i}]" if items is v else "stop", "each stop must be a non-empty "
                          "string", "invalid_type")
    return tuple(items)


def _tools(v: Any, limits: Limits) -> Optional[List[Dict[str, Any]]]:
    if v is None:
        return None
    if not isinstance(v, list):
        raise invalid("tools", f"tools must be an array, got {json_type(v)}", "invalid_type")
    if len(v) > limits.max_tools:
        raise invalid("tools", f"tools holds {len(v)} tools; the limit is {limits.max_tools}")
    for i, t in enumerate(v):
        w = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function":
            raise invalid(f"{w}.type", f"{w} must be an object with type 'function'")
        fn = t.get("function")
        if not isinstance(fn, dict):
            raise invalid(f"{w}.function", f"{w}.function must be an object", "invalid_type")
        if not isinstance(fn.get("name"), str) or not TOOL_NAME_RE.match(fn["name"]):
            raise invalid(f"{w}.function.name", f"{w}.function.name must be 1-64 letters, "
                          "digits, '_' or '-'")
        if "description" in fn and not isinstance(fn["description"], str):
            raise invalid(f"{w}.function.description", f"{w}.function.description must be a "
                          "string", "invalid_type")
        # The schema itself is the cloud's business: any JSON object, any depth, untouched.
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise invalid(f"{w}.function.parameters", f"{w}.function.parameters must be a JSON "
                          "schema object", "invalid_type")
    return v


def _tool_choice(v: Any, tools) -> Any:
    if v is None:
        return None
    if not tools:
        raise invalid("tool_choice", "tool_choice is only allowed when tools are given")
    if v in ("none", "auto", "required"):
        return v
    if isinstance(v, dict) and v.get("type") == "function" and isinstance(v.get("function"), dict):
        name = v["function"].get("name")
        if name not in [t["function"]["name"] for t in tools]:
            raise invalid("tool_choice.function.name", f"tool_choice names {name!r}, which is "
                          "not among the tools")
        return v
    raise invalid("tool_choice", "tool_choice must be 'none', 'auto', 'required' or "
                  "{'type': 'function', 'function': {'name': ...}}")


def _passthrough(d: dict) -> Dict[str, Any]:
    out = {}
    for key in _PASSTHROUGH:
        if key not in d or d[key] is None:
            continue
        v = d[key]
        if key in ("top_p",):
            _number(d, key, None, 0.0, 1.0)
        elif key in ("presence_penalty", "frequency_penalty"):
            _number(d, key, None, -2.0, 2.0)
        elif key == "top_logprobs":
            _int(d, key, None, 0, 20)
        elif key in ("parallel_tool_calls", "logprobs"):
            _bool(d, key, False)
        elif key == "user" and not isinstance(v, str):
            raise invalid(key, "user must be a string", "invalid_type")
        elif key in ("logit_bias", "response_format") and not isinstance(v, dict):
            raise invalid(key, f"{key} must be an object", "invalid_type")
        out[key] = v
    return out
