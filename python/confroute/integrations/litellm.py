"""LiteLLM: a ``litellm.Router``, and LiteLLM's proxy, pick the edge or the cloud deployment of
a model group by confroute's decision (docs/litellm.md).

The decision is the one decision path's, asked of a running ``confroute serve`` over HTTP
(``POST /v1/route``): it decides without generating the served answer and without calling the
cloud. The hook is LiteLLM's deployment filter, ``CustomLogger.async_filter_deployments``, which
the Router runs on every async pick and the proxy on every request. In a model group whose
deployments carry ``model_info: {confroute: edge}`` or ``{confroute: cloud}``, it keeps the
deployments of the route confroute chose; LiteLLM's strategy, cooldowns and retries then work
among those. Groups without the tag are left alone.

The decision's facts (the route endpoint's answer, plus ``model_group``, ``routed_to`` and
``degraded``) go into the request's metadata under ``confroute``, onto the response as
``response._hidden_params["confroute"]``, and, on the proxy, into ``x-confroute-*`` headers.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlparse

import httpx

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("confroute.integrations.litellm needs LiteLLM: "
                      "pip install 'confroute[litellm]'") from e

log = logging.getLogger("confroute.integrations.litellm")

TAG = "confroute"                # model_info key: "edge" or "cloud"; also the metadata key
ROUTER_TAG = "confroute_router"  # model_info key: the router string of the deployment's group
ROUTES = ("edge", "cloud")
# What of a request changes its decision and the route endpoint accepts: the answer's length,
# temperature, stop and seed; tools send a request to the cloud.
FORWARDED = ("max_tokens", "max_completion_tokens", "temperature", "stop", "seed", "tools",
             "tool_choice")
# Answers that mean the request or the configuration is wrong, not that confroute is down.
REFUSED = (400, 401, 403, 404, 405, 422)
ON_ERROR = ("cloud", "raise")
_CHOSEN = ("model_group", "routed_to", "degraded", "note")  # what choose() adds to a decision


def tagged_routes(model_group: str, deployments: Sequence[Mapping[str, Any]]
                  ) -> Optional[Dict[str, List[Mapping[str, Any]]]]:
    """A group's deployments by route, or None when none of them is tagged (not confroute's
    group). A group that tags some deployments and not others, or tags one with anything but
    'edge' or 'cloud', is a ValueError."""
    routes: Dict[str, List[Mapping[str, Any]]] = {r: [] for r in ROUTES}
    untagged = []
    for d in deployments:
        tag = _info(d).get(TAG)
        if tag is None:
            untagged.append(_name(d))
        elif tag in ROUTES:
            routes[tag].append(d)
        else:
            raise ValueError(f"model group {model_group!r}: deployment {_name(d)!r} has "
                             f"model_info.{TAG} = {tag!r}; it must be 'edge' or 'cloud'")
    if not routes["edge"] and not routes["cloud"]:
        return None
    if untagged:
        raise ValueError(f"model group {model_group!r} is routed by confroute, but deployment "
                         f"{untagged[0]!r} has no model_info.{TAG} ('edge' or 'cloud')")
    return routes


def group_router(model_group: str, deployments: Sequence[Mapping[str, Any]],
                 default: Optional[str]) -> str:
    """The router string for a group: its deployments' ``model_info.confroute_router`` (one
    value), else ``default``."""
    named = {_info(d)[ROUTER_TAG] for d in deployments if _info(d).get(ROUTER_TAG) is not None}
    if len(named) > 1:
        raise ValueError(f"model group {model_group!r}: its deployments name different routers "
                         f"in model_info.{ROUTER_TAG}: {sorted(map(str, named))}")
    router = named.pop() if named else default
    if router is None:
        raise ValueError(f"model group {model_group!r} names no confroute router: set "
                         f"model_info.{ROUTER_TAG} (e.g. 'router-se-0.8') on its deployments, "
                         "or ConfrouteRouting(router=...)")
    check_router(router, f"model group {model_group!r}: model_info.{ROUTER_TAG}")
    return router


def check_router(router: Any, what: str = "router") -> None:
    # Only the form: the server knows which routers it serves and refuses others by name (404).
    if not isinstance(router, str) or not router.startswith("router-") or router == "router-":
        raise ValueError(f"{what} must be a confroute router string such as 'router-se-0.8' "
                         f"(a model name of `confroute serve`), got {router!r}")


def route_body(router: str, messages: Sequence[Any], request: Mapping[str, Any]
               ) -> Dict[str, Any]:
    """The ``POST /v1/route`` body for a request: the router, the messages as sent, and the
    request's fields that change the decision (``FORWARDED``; LiteLLM's own keys stay out)."""
    body: Dict[str, Any] = {"model": router, "messages": [_plain(m) for m in messages]}
    for key in FORWARDED:
        if request.get(key) is not None:
            body[key] = request[key]
    return body


def choose(model_group: str, routes: Mapping[str, Sequence[Mapping[str, Any]]],
           decision: Mapping[str, Any]) -> Tuple[List[Mapping[str, Any]], Dict[str, Any]]:
    """The deployments to keep for a decision, and its facts. With no healthy deployment of
    the decided route (cooldown, or excluded after a failure), the other route's serve it:
    the cloud's absence makes the edge answer ``degraded`` (as in confroute's server), the
    edge's absence sends the query up."""
    want = decision["route"]
    facts = {k: v for k, v in decision.items() if k not in _CHOSEN}
    facts.update(model_group=model_group, routed_to=want, degraded=False)
    if routes[want]:
        return list(routes[want]), facts
    other = "cloud" if want == "edge" else "edge"
    facts.update(routed_to=other, degraded=want == "cloud",
                 note=f"no healthy {want} deployment in model group {model_group!r}")
    return list(routes[other]), facts


def response_headers(facts: Mapping[str, Any]) -> Dict[str, str]:
    """The ``x-confroute-*`` headers of a decision (the names confroute's server uses)."""
    h = {"x-confroute-router": str(facts.get("router")),
         "x-confroute-route": str(facts.get("route")),
         "x-confroute-routed-to": str(facts.get("routed_to")),
         "x-confroute-degraded": "true" if facts.get("degraded") else "false",
         "x-confroute-reason": " ".join(str(facts.get("reason", "")).split())}
    for key in ("score", "threshold", "semantic_entropy"):
        if isinstance(facts.get(key), (int, float)):
            h["x-confroute-" + key.replace("_", "-")] = f"{facts[key]:.6g}"
    return h


class ConfrouteRouting(CustomLogger):
    """Routes LiteLLM model groups by confroute's decision.

    ``url`` is a running ``confroute serve``'s OpenAI base URL (``http://HOST:PORT/v1``);
    ``router`` the router string for groups whose deployments name none
    (``model_info.confroute_router``). The key is ``api_key``, else ``$api_key_env``.
    ``on_error`` says what happens when confroute cannot answer (connection refused, timeout,
    a 5xx or 429): ``"cloud"`` sends the query to the cloud, with the error in the facts;
    ``"raise"`` fails the request. A route request confroute refuses (an unknown router, a
    wrong key, a malformed request) is a ValueError either way.

    Register it as a LiteLLM callback: ``litellm.callbacks.append(routing)``, or the proxy's
    ``litellm_settings: callbacks``. LiteLLM runs deployment filters on async calls only, so
    a sync ``Router.completion`` to a confroute group is refused rather than routed at random.
    """

    def __init__(self, url: str, router: Optional[str] = None, *,
                 api_key: Optional[str] = None,
                 api_key_env: str = "CONFROUTE_SERVER_API_KEY",
                 timeout_s: float = 120.0, on_error: str = "cloud"):
        super().__init__()
        parsed = urlparse(url) if isinstance(url, str) else None
        if (parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc
                or not parsed.path.rstrip("/").endswith("/v1")):
            raise ValueError("url must be confroute serve's base URL, "
                             f"http(s)://HOST:PORT/v1, got {url!r}")
        if router is not None:
            check_router(router)
        if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                or not math.isfinite(timeout_s) or timeout_s <= 0):
            raise ValueError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.url, self.router = url.rstrip("/"), router
        self.timeout_s, self.on_error = float(timeout_s), on_error
        self._key = api_key if api_key is not None else os.environ.get(api_key_env) or None

    def __repr__(self) -> str:
        return f"ConfrouteRouting({self.url!r}, router={self.router!r})"

    async def decide(self, model_group: str, router: str, messages: Sequence[Any],
                     request: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """confroute's decision for one request (``POST /v1/route``), as the endpoint answers
        it (route, router, score, threshold, semantic_entropy, reason, n_samples, usage)."""
        body = route_body(router, messages, request or {})
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.post(self.url + "/route", json=body, headers=headers)
        except httpx.HTTPError as e:
            return self._unavailable(router, f"{type(e).__name__}: {e}")
        if r.status_code in REFUSED:
            raise ValueError(f"confroute refused to route model group {model_group!r} with "
                             f"{router!r} (HTTP {r.status_code}): {_error_text(r)}")
        try:
            answer = r.json() if r.status_code == 200 else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("route") not in ROUTES:
            return self._unavailable(router, f"HTTP {r.status_code}: {_error_text(r)}")
        return {k: v for k, v in answer.items() if k not in ("object", "model")}

    def _unavailable(self, router: str, error: str) -> Dict[str, Any]:
        if self.on_error == "raise":
            raise RuntimeError(f"confroute at {self.url} did not decide: {error}")
        log.warning("confroute at %s did not decide (%s); the query goes to the cloud",
                    self.url, error)
        return {"route": "cloud", "router": router, "score": None, "threshold": None,
                "semantic_entropy": None, "n_samples": 0, "error": error,
                "reason": f"confroute unavailable: {error}"}

    # -- LiteLLM's hooks ------------------------------------------------------------------------

    async def async_filter_deployments(self, model: str, healthy_deployments: list,
                                       messages: Optional[list],
                                       request_kwargs: Optional[dict] = None,
                                       parent_otel_span: Any = None) -> list:
        routes = tagged_routes(model, healthy_deployments)
        if routes is None:
            return healthy_deployments
        request = request_kwargs or {}
        metadata = _metadata(request)
        earlier = metadata.get(TAG) if metadata is not None else None
        if isinstance(earlier, dict) and earlier.get("model_group") == model:
            decision = earlier   # a retry of the same request: decided once
        else:
            if not messages:
                raise ValueError(f"model group {model!r} is routed by confroute, which routes "
                                 "chat requests; this request has no messages")
            router = group_router(model, healthy_deployments, self.router)
            decision = await self.decide(model, router, messages, request)
        keep, facts = choose(model, routes, decision)
        if metadata is not None:
            metadata[TAG] = facts
        return keep

    def pre_call_check(self, deployment: dict) -> Optional[dict]:
        # Only LiteLLM's sync path calls this one; it runs no deployment filter.
        if _info(deployment).get(TAG) is not None:
            raise ValueError(f"model group {deployment.get('model_name')!r} is routed by "
                             "confroute, and LiteLLM filters deployments on async calls only: "
                             "use router.acompletion() (the proxy always does)")
        return None

    async def async_post_call_success_deployment_hook(self, request_data: dict, response: Any,
                                                      call_type: Any) -> Any:
        facts = _facts(request_data)
        hidden = getattr(response, "_hidden_params", None)
        if facts is not None and _info(request_data).get(TAG) and isinstance(hidden, dict):
            hidden[TAG] = facts
        return None

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any,
                                                    response: Any, request_headers: Any = None,
                                                    litellm_call_info: Any = None
                                                    ) -> Optional[Dict[str, str]]:
        facts = _facts(data)
        return response_headers(facts) if facts is not None else None


def _info(d: Any) -> Mapping[str, Any]:
    info = d.get("model_info") if isinstance(d, Mapping) else None
    return info if isinstance(info, Mapping) else {}


def _name(d: Mapping[str, Any]) -> str:
    params = d.get("litellm_params") if isinstance(d, Mapping) else None
    model = params.get("model") if isinstance(params, Mapping) else None
    return str(model or _info(d).get("id") or d.get("model_name"))


def _plain(message: Any) -> Any:
    # LiteLLM passes messages on as given: dicts, or its pydantic Message objects.
    dump = getattr(message, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else message


def _metadata(request: Mapping[str, Any]) -> Optional[dict]:
    # LiteLLM's newer endpoints keep their metadata under litellm_metadata.
    key = "litellm_metadata" if "litellm_metadata" in request else "metadata"
    md = request.get(key)
    return md if isinstance(md, dict) else None


def _facts(request: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    md = _metadata(request) if isinstance(request, Mapping) else None
    facts = md.get(TAG) if md is not None else None
    return facts if isinstance(facts, dict) else None


def _error_text(r: httpx.Response) -> str:
    try:
        err = r.json().get("error")
        if isinstance(err, dict) and err.get("message"):
            param = f" (param {err['param']})" if err.get("param") else ""
            return f"{err['message']}{param}"
    except (ValueError, AttributeError):
        pass
    return r.text[:300]


__all__ = ["ConfrouteRouting", "FORWARDED", "ROUTER_TAG", "TAG", "check_router", "choose",
           "group_router", "response_headers", "route_body", "tagged_routes"]
