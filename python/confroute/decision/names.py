"""Router strings as policies: ``router-se-0.8`` is the online SE cascade at 0.8 nats
(:class:`confroute.decision.policies.SECascade`), ``router-answer_logprob-0.4`` and
``router-disagreement-0.4`` the answer-first policies (:mod:`confroute.decision.policies`, one
name per online policy in :data:`ONLINE`); ``router-sw-0.35`` a trained router (name ``sw``,
threshold 0.35 on its [0, 1] score) as :class:`RouterPolicy`. :func:`policy_from_string`
reads both, and :func:`make_policy` builds the policy for a name and threshold (the server's
model names go through it), so a router string means the same everywhere.

A trained router needs nothing from the edge: it scores the prompt text alone and the query
goes to the cloud where score > threshold. In a router string the middle part is a
saved-router folder, or a name: ``random`` (built as is) or a trained router saved under
``$CONFROUTE_ROUTERS/<name>`` (default ``<confroute home>/routers/<name>``, where
``confroute train`` writes when no --out is given). The threshold may be left out
(``router-sw``): the calibrated one stored with the router is used.

Stages joined by ``+`` make one :class:`confroute.decision.policies.Staged` policy: each stage
but the last is ``NAME-T`` (the cloud where its score > T, else the next stage) or
``NAME-LO:HI`` (the edge where score <= LO, the cloud where score > HI, else the next stage),
the last is ``NAME-T`` (or a trained router's ``NAME``) and decides the rest. NAME is any name
above, each threshold in that policy's own unit: ``router-answer_logprob-0.2:0.9+disagreement-0.4``
(the confidence ladder: samples only where the answer's log-prob is unsure),
``router-sw-0.7+disagreement-0.4`` (cascade routing: a query router sends what it is sure
about to the cloud before the edge answers).
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple

from confroute.decision.path import Decision, Need, Policy
from confroute.models.types import last_user_text
from confroute.routers.base import REGISTRY, Router, get_router, load_builtin_routers

PREFIX = "router-"
SE = "se"   # the online cascade's name in router strings: its threshold is in nats
ADAPTIVE = "se_adaptive"   # the cascade with adaptive sampling (confidence.stopping); nats
# The online policies (they read the edge live, no saved router), by router-string name, with
# the unit of their threshold. ``se`` is Kuhn's SE; ``se_<kind>`` the other kinds.
ONLINE = {SE: "nats", "se_discrete": "nats", "se_weighted": "nats", ADAPTIVE: "nats",
          "answer_logprob": "nats", "disagreement": "share of samples"}
STAGES = "+"   # joins the stages of a staged policy


def routers_home() -> str:
    if os.environ.get("CONFROUTE_ROUTERS"):
        return os.path.expanduser(os.environ["CONFROUTE_ROUTERS"])
    from confroute.models.store import home

    return os.path.join(str(home()), "routers")


def parse_router_string(spec: str) -> Tuple[str, Optional[float]]:
    """'router-sw-0.35' -> ('sw', 0.35); 'router-sw' -> ('sw', None)."""
    if not isinstance(spec, str) or not spec.startswith(PREFIX) or len(spec) == len(PREFIX):
        raise ValueError(f"a router string looks like 'router-sw-0.35' (name, threshold); "
                         f"got {spec!r}")
    body = spec[len(PREFIX):]
    name, dash, last = body.rpartition("-")
    if dash:
        try:
            t = float(last)
        except ValueError:
            return body, None  # a dash inside the name or path, no threshold
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{spec}: threshold {t} is outside [0, 1]")
        if not name:
            raise ValueError(f"{spec}: no router name before the threshold")
        return name, t
    return body, None


def load_router(name: str, embedder=None) -> Router:
    """A router from a saved-router folder or a name (see the module doc)."""
    if os.path.isdir(name):
        return Router.load(name, **({"embedder": embedder} if embedder is not None else {}))
    load_builtin_routers()
    saved = os.path.join(routers_home(), name)
    if os.path.exists(os.path.join(saved, "router.json")):
        return Router.load(saved, **({"embedder": embedder} if embedder is not None else {}))
    from confroute.routers.trained import TRAINED

    if name in TRAINED:
        raise ValueError(f"no trained {name!r} router in {saved}: run `confroute train --router "
                         f"{name} --labels LABELS.jsonl` (or name a saved-router folder)")
    if name not in REGISTRY:
        raise ValueError(f"unknown router {name!r}; known: {', '.join(sorted(REGISTRY))}, or a "
                         f"saved-router folder")
    return get_router(name)


class RouterPolicy(Policy):
    """A trained router as a policy: cloud where router.score(prompt) > threshold. A router
    that reads the edge's hidden state (a probe) says so with ``needs_hidden`` and scores with
    ``score_evidence(prompts, evidences)``; the path then supplies the hidden state. Most
    routers need nothing."""

    what = "router score"

    def __init__(self, router: Router, threshold: Optional[float] = None):
        t = router.threshold if threshold is None else threshold
        if t is None:
            raise ValueError(f"router {router.name!r} has no threshold: calibrate it "
                             f"(confroute calibrate) or give one (router-{router.name}-0.3)")
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {t}")
        self.router, self.threshold = router, float(t)

    @classmethod
    def from_string(cls, spec: str, embedder=None) -> "RouterPolicy":
        """A trained router's string; ``router-se-X`` is not one (use policy_from_string)."""
        online = next((n for n in ONLINE if isinstance(spec, str) and
                       (spec == PREFIX + n or spec.startswith(PREFIX + n + "-"))), None)
        if online:
            raise ValueError(f"{spec!r} is the online policy {online!r}, not a trained router: "
                             "use confroute.decision.names.policy_from_string")
        name, t = parse_router_string(spec)
        return cls(load_router(name, embedder), t)

    @property
    def needs_hidden(self) -> bool:
        return bool(getattr(self.router, "needs_hidden", False))

    def need(self, evidence, sampling) -> Need:
        return Need(hidden=True) if self.needs_hidden else Need()

    def score(self, prompt, evidence=None) -> float:
        texts = [last_user_text(prompt)]
        if self.needs_hidden:
            return float(self.router.score_evidence(texts, [evidence])[0])
        return float(self.router.score(texts)[0])

    def decide(self, prompt, evidence=None) -> Decision:
        return Decision.compare(self.score(prompt, evidence), self.threshold, self.what)

    def __repr__(self):
        return f"RouterPolicy({self.router.name!r}, threshold={self.threshold:g})"


def make_policy(name: str, threshold: Optional[float], router: Optional[Router] = None,
                kind: str = "kuhn", samples: int = 10) -> Policy:
    """The policy a router name and threshold stand for: an :data:`ONLINE` name its online
    policy (``se`` the SE cascade of ``kind``, ``se_discrete``/``se_weighted`` of that kind,
    ``se_adaptive`` discrete SE with adaptive sampling up to ``samples``, the answer-first
    ``answer_logprob`` and ``disagreement``), any other name the trained ``router`` (loaded by
    name if not given) at ``threshold`` on its score. ValueError for a bad threshold."""
    from confroute.decision import policies

    if name in ONLINE:
        if threshold is None:
            raise ValueError(f"router-{name} needs a threshold ({ONLINE[name]}), e.g. "
                             f"router-{name}-0.5")
        if name == ADAPTIVE:
            from confroute.decision.policies import AdaptiveSECascade

            return AdaptiveSECascade(threshold, n_max=samples)
        if name == "answer_logprob":
            return policies.AnswerLogprob(threshold)
        if name == "disagreement":
            return policies.Disagreement(threshold)
        return policies.SECascade(threshold, name[len("se_"):] if name != SE else kind)
    return RouterPolicy(load_router(name) if router is None else router, threshold)


def parse_stages(body: str) -> List[Tuple[str, Optional[float], Optional[float]]]:
    """The stages of a staged router string without its ``router-`` prefix, as (name, low,
    high): ``answer_logprob-0.2:0.9+disagreement-0.4`` -> [('answer_logprob', 0.2, 0.9),
    ('disagreement', None, 0.4)]; a stage without a threshold (a trained router's stored
    one) has high None. ValueError naming the stage at fault."""
    if not isinstance(body, str):
        raise ValueError(f"a staged router string is text, got {body!r}")
    parts = body.split(STAGES)
    out = []
    for i, part in enumerate(parts, 1):
        where = f"router-{body}: stage {i} ({part!r})"
        if not part:
            raise ValueError(f"router-{body}: stage {i} is empty; stages look like NAME-T or "
                             "NAME-LO:HI, joined by '+'")
        name, dash, last = part.rpartition("-")
        if name.endswith("-"):   # a negative number: NAME--1:0.5
            name, last = name[:-1], "-" + last
        if dash and ":" in last:
            lo, _, hi = last.partition(":")
            out.append((name, _number(lo, where), _number(hi, where)))
        elif dash and _is_number(last):
            out.append((name, None, float(last)))
        elif dash and name in ONLINE:
            raise ValueError(f"{where}: the threshold {last!r} is not a number")
        else:
            out.append((part, None, None))   # a name (or path) with no threshold
        if not out[-1][0]:
            raise ValueError(f"{where}: no policy name before the threshold")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(text: str, where: str) -> float:
    if not _is_number(text):
        raise ValueError(f"{where}: {text!r} is not a number (a band is LO:HI, e.g. 0.2:0.9)")
    return float(text)


def staged_policy(body: str, threshold: Optional[float] = None,
                  build: Optional[Callable[[str, Optional[float]], Policy]] = None) -> Policy:
    """The :class:`confroute.decision.policies.Staged` policy of a router string's body
    (:func:`parse_stages`). ``threshold``: the last stage's, when the body leaves it out (the
    server reads ``router-<stages>-<t>`` as the stages and t). ``build(name, threshold)``
    makes each stage's policy (default :func:`make_policy`; the server passes its configured
    routers and sampling)."""
    from confroute.decision.policies import Stage, Staged

    build = build or make_policy
    stages = parse_stages(body)
    if threshold is not None:
        if stages[-1][2] is not None and stages[-1][2] != threshold:
            raise ValueError(f"router-{body}: the last stage's threshold is given twice "
                             f"({stages[-1][2]:g} and {threshold:g})")
        stages[-1] = (stages[-1][0], stages[-1][1], float(threshold))
    out = []
    for i, (name, lo, hi) in enumerate(stages, 1):
        where = f"router-{body}: stage {i} ({name})"
        if hi is None and i < len(stages):
            raise ValueError(f"{where}: a stage before the last needs a threshold (NAME-T) or "
                             "a band (NAME-LO:HI)")
        if lo is not None and i == len(stages):
            raise ValueError(f"{where}: the last stage decides every query left, so it takes "
                             f"one threshold (NAME-T), not a band ({lo:g}:{hi:g})")
        try:
            policy = build(name, hi)
            out.append(Stage(policy, policy.threshold if hi is None else hi, lo, name))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    try:
        return Staged(out)
    except ValueError as e:
        raise ValueError(f"router-{body}: {e}") from None


def policy_from_string(spec: str, embedder=None) -> Policy:
    """``router-se-0.8``: the SE cascade at 0.8 nats (any :data:`ONLINE` name the same way:
    ``router-disagreement-0.4``, ``router-answer_logprob-0.5``, ``router-se_adaptive-0.8``);
    ``router-sw-0.35`` (or ``router-<saved-router-folder>-0.35``, ``router-sw``): a trained
    router; stages joined by ``+`` (``router-answer_logprob-0.2:0.9+disagreement-0.4``): a
    staged policy (:func:`staged_policy`)."""
    if isinstance(spec, str) and spec.startswith(PREFIX) and STAGES in spec:
        return staged_policy(spec[len(PREFIX):],
                             build=lambda name, t: _stage_policy(name, t, embedder))
    for name in ONLINE:   # the threshold's unit is the policy's own (nats, a share)
        prefix = f"{PREFIX}{name}-"
        if isinstance(spec, str) and spec.startswith(prefix):
            try:
                threshold = float(spec[len(prefix):])
            except ValueError:
                raise ValueError(f"{spec!r}: the threshold after {prefix!r} is not a "
                                 "number") from None
            return make_policy(name, threshold)
    return RouterPolicy.from_string(spec, embedder)


def _stage_policy(name: str, threshold: Optional[float], embedder=None) -> Policy:
    if name in ONLINE:
        return make_policy(name, threshold)
    return RouterPolicy(load_router(name, embedder), threshold)
