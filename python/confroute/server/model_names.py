"""The names the server serves a policy under, and how a request or a chain's tier names one:
``router-<name>-<threshold>``, a staged router ``router-<stages>-<t>``
(:mod:`confroute.decision.names`) and a configured chain ``chain-<name>``."""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Tuple

from confroute.server.errors import ApiError, invalid, json_type

MODEL_RE = re.compile(r"^router-([a-z][a-z0-9_]*)(?:-([0-9]+(?:\.[0-9]+)?))?$")


def stage_names(name: str) -> List[str]:
    """The policy names of a staged router name (``a-0.2:0.9+b`` -> ['a', 'b']); [] for a
    plain name. ValueError for a malformed one."""
    from confroute.decision.names import STAGES, parse_stages

    return [n for n, _, _ in parse_stages(name)] if STAGES in name else []


def _last_stage(body: str):
    """(the router a staged body names without its last threshold, its stages, the last
    stage's band low and threshold); ValueError for a malformed body."""
    from confroute.decision.names import STAGES, parse_stages

    stages = parse_stages(body)
    name, lo, t = stages[-1]
    router = body.rpartition(STAGES)[0] + STAGES + name if len(stages) > 1 else name
    return router, stages, lo, t


def tier_router(spec: str) -> Tuple[str, float]:
    """A chain tier's router string as the server's (router name, threshold):
    ``router-se-0.8`` -> ('se', 0.8); ``router-a-0.2:0.9+b-0.4`` -> ('a-0.2:0.9+b', 0.4).
    ValueError when it is malformed or gives no threshold."""
    from confroute.decision.names import PREFIX

    if not isinstance(spec, str) or not spec.startswith(PREFIX):
        raise ValueError(f"{spec!r} is not a router string (router-NAME-THRESHOLD)")
    router, _, lo, t = _last_stage(spec[len(PREFIX):])
    if t is None or lo is not None:
        raise ValueError(f"{spec!r}: a tier's router string ends with its threshold "
                         "(router-se-0.8)")
    return router, t


def parse_model(name: Any, routers: Dict[str, Any], threshold: Optional[float] = None,
                chains: Dict[str, Any] = None) -> Tuple[str, float]:
    """``router-<name>-<threshold>`` -> (name, threshold); 404 for a router not served. With
    ``threshold`` given (the route endpoint's field) the model may leave it out
    (``router-<name>``). ``chain-<name>``, a configured chain, -> (``chain-<name>``, NaN):
    its thresholds are its tiers'."""
    from confroute.decision.chain import PREFIX

    if not isinstance(name, str):
        raise invalid("model", f"model must be a string, got {json_type(name)}", "invalid_type")
    if name.startswith(PREFIX):
        if name[len(PREFIX):] not in (chains or {}):
            served = ", ".join(PREFIX + c for c in sorted(chains or {})) or "none"
            raise ApiError(404, f"The model {name!r} does not exist; the chains served: "
                           f"{served} (see GET /v1/models)", param="model",
                           code="model_not_found")
        if threshold is not None:
            raise invalid("threshold", f"{name!r} is a chain: its thresholds are its tiers' "
                          "(the server config's)")
        return name, math.nan
    if name.startswith("router-") and "+" in name:
        return _staged_model(name, routers, threshold)
    m = MODEL_RE.match(name)
    if not m or m.group(1) not in routers or (m.group(2) is None and threshold is None):
        served = ", ".join(f"router-{r}-<threshold>" for r in sorted(routers))
        raise ApiError(404, f"The model {name!r} does not exist; this server offers {served} "
                       "(see GET /v1/models)", param="model", code="model_not_found")
    if m.group(2) is None:
        return m.group(1), threshold
    t = float(m.group(2))
    if not math.isfinite(t):
        raise invalid("model", f"the threshold in {name!r} is not a finite number")
    if threshold is not None and threshold != t:
        raise invalid("threshold", f"threshold {threshold:g} disagrees with the one in the model "
                      f"name {name!r}; give it once")
    return m.group(1), t


def _staged_model(name: str, routers: Dict[str, Any], threshold: Optional[float]
                  ) -> Tuple[str, float]:
    """``router-<stages>-<t>`` -> (the stages without the last threshold, t): served when
    that name is a configured router, or every stage's name is."""
    try:
        router, stages, lo, t = _last_stage(name[len("router-"):])
    except ValueError as e:
        raise invalid("model", str(e)) from None
    if router not in routers and not all(n in routers for n, _, _ in stages):
        missing = sorted({n for n, _, _ in stages if n not in routers})
        served = ", ".join(f"router-{r}-<threshold>" for r in sorted(routers))
        raise ApiError(404, f"The model {name!r} does not exist: its stages {missing} are not "
                       f"served; this server offers {served} (see GET /v1/models)",
                       param="model", code="model_not_found")
    if lo is not None:
        raise invalid("model", f"{name!r}: the last stage takes one threshold, not a band")
    if t is None and threshold is None:
        raise invalid("model", f"{name!r}: give the last stage's threshold")
    if t is not None and threshold is not None and threshold != t:
        raise invalid("threshold", f"threshold {threshold:g} disagrees with the one in the model "
                      f"name {name!r}; give it once")
    return router, t if t is not None else threshold
