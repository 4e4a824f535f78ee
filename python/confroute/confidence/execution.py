"""Execution-based semantic clusters for code: two programs mean the same when they behave the
same on the inputs the user's request carries.

A sample's *behaviour* is the tuple of outcomes of the task's example calls (the docstring's
``>>> f(x)`` examples, the call an MBPP prompt shows; see ``CodeTask.examples``): the result's
canonical repr, or the exception type it raised, or 'timeout'. A program that does not load
(syntax error, exception at import, no such function) has one behaviour for all calls. The
hidden tests' inputs and expected values are never used. Equal behaviours form one cluster,
and the core computes SE over those clusters as it does for exact answers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from confroute.confidence.code import example_calls, extract_code
from confroute.runtime.sandbox import Limits, run_many

CLUSTER_LIMITS = Limits(timeout_s=10.0, cpu_s=10)
PER_CALL_S = 2.0
_MARK = "\x1econfroute-behaviour "

# Appended to the candidate program; each call gets a time budget of its own (an alarm), so
# one looping call does not hide the others.
_PROBE = r'''

def __confroute_probe(__calls, __seconds):
    import json, math, signal, sys
    def canon(x, depth=0):
        if depth > 20:
            return "<deep>"
        if isinstance(x, bool) or x is None:
            return repr(x)
        if isinstance(x, float):
            return "nan" if math.isnan(x) else format(x, ".9g")
        if isinstance(x, int):
            return repr(x)
        if isinstance(x, (list, tuple)):
            return type(x).__name__ + "[" + ",".join(canon(v, depth + 1) for v in x) + "]"
        if isinstance(x, (set, frozenset)):
            return "set{" + ",".join(sorted(canon(v, depth + 1) for v in x)) + "}"
        if isinstance(x, dict):
            return "dict{" + ",".join(sorted(canon(k, depth + 1) + ":" + canon(v, depth + 1)
                                             for k, v in x.items())) + "}"
        if isinstance(x, (str, bytes)):
            return repr(x)
        return type(x).__name__ + ":" + repr(x)[:200]
    class _Late(BaseException):
        pass
    def alarm(*_):
        raise _Late()
    signal.signal(signal.SIGALRM, alarm)
    out = []
    for src in __calls:
        try:
            signal.setitimer(signal.ITIMER_REAL, __seconds)
            try:
                v = eval(src, globals())
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            r = "=" + canon(v)
        except _Late:
            r = "!timeout"
        except RecursionError:
            r = "!RecursionError"
        except Exception as e:
            r = "!" + type(e).__name__
        out.append(r[:2000])
    sys.stdout.write("\n\x1econfroute-behaviour " + json.dumps(out) + "\n")
    sys.stdout.flush()
'''


@dataclass(frozen=True)
class ExecutionClusters:
    behaviours: Tuple[Tuple[str, ...], ...]  # per sample, one outcome per example call
    cluster_ids: np.ndarray
    n_clusters: int
    se_discrete: float
    se_weighted: float
    se_kuhn: float
    n_calls: int


def probe_program(program: str, calls: Sequence[str], per_call_s: float = PER_CALL_S) -> str:
    return (program + _PROBE + f"\n__confroute_probe({json.dumps(list(calls))}, "
            f"{float(per_call_s)!r})\n")


def behaviours(programs: Sequence[str], calls: Sequence[str], limits: Limits = CLUSTER_LIMITS,
               max_parallel: int = 2) -> List[Tuple[str, ...]]:
    """Each program's outcome on each call, run in the sandbox. A program that dies before
    reporting gets one outcome for every call: its status (load error, timeout, ...)."""
    calls = list(calls)
    if not calls:
        raise ValueError("no example calls to run the programs on")
    runs = run_many([probe_program(p, calls) for p in programs], limits, max_parallel)
    out = []
    for r in runs:
        line = None
        for ln in r.stdout.split("\n")[::-1]:  # not splitlines: it splits at \x1e
            if ln.startswith(_MARK):
                line = ln[len(_MARK):]
                break
        parsed = None
        if line is not None and r.completed:
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
        if isinstance(parsed, list) and len(parsed) == len(calls):
            out.append(tuple(str(x) for x in parsed))
        else:
            why = _load_error(r.stderr) if not r.timed_out else "timeout"
            out.append(tuple(f"!load:{why or r.status}" for _ in calls))
    return out


def _load_error(stderr: str) -> Optional[str]:
    """The exception type on the last line of a traceback ('NameError: ...' -> 'NameError')."""
    for ln in stderr.strip().splitlines()[::-1]:
        head = ln.split(":", 1)[0].strip()
        if head and head.replace(".", "").replace("_", "").isalnum() and head[0].isupper():
            return head
    return None


def cluster_ids(behaviour_list: Sequence[Tuple[str, ...]]) -> np.ndarray:
    """Equal behaviours -> one id, numbered by first appearance."""
    seen: Dict[Tuple[str, ...], int] = {}
    return np.array([seen.setdefault(tuple(b), len(seen)) for b in behaviour_list], np.int64)


def execution_clusters(programs: Sequence[str], calls: Sequence[str],
                       seq_logprobs: Optional[Sequence[float]] = None,
                       limits: Limits = CLUSTER_LIMITS, max_parallel: int = 2
                       ) -> ExecutionClusters:
    """Behaviours, clusters and the core's SE of one prompt's samples. ``seq_logprobs``: each
    sample's (length-normalized) log-likelihood, for the weighted and Kuhn forms."""
    if not programs:
        raise ValueError("no programs")
    return clusters_of(behaviours(programs, calls, limits, max_parallel), seq_logprobs)


def clusters_of(b: Sequence[Tuple[str, ...]], seq_logprobs: Optional[Sequence[float]] = None
                ) -> ExecutionClusters:
    """Clusters and the core's SE of already-run behaviours (see :func:`execution_clusters`)."""
    from confroute.confidence.core import semantic_entropy

    ids = cluster_ids(b)
    off = np.array([0, len(ids)], np.int64)
    se = {"discrete": float(semantic_entropy(ids, off, kind="discrete")[0])}
    if seq_logprobs is not None:
        lp = np.asarray(seq_logprobs, np.float64)
        if lp.shape != (len(ids),):
            raise ValueError(f"seq_logprobs has {lp.shape} values for {len(ids)} programs")
        for k in ("weighted", "kuhn"):
            se[k] = float(semantic_entropy(ids, off, lp, kind=k)[0])
    nan = float("nan")
    return ExecutionClusters(tuple(b), ids, int(ids.max()) + 1, se["discrete"],
                             se.get("weighted", nan), se.get("kuhn", nan), len(b[0]))


# ------------------------------------------------------------------------------- the path


def entry_point_of(texts: Sequence[str], prompt: Optional[str] = None) -> Optional[str]:
    """The function the samples are meant to define: the one the prompt calls that most
    samples define (a sample that defines another name then fails those calls, which is its
    behaviour); without such a name, the function most samples define (the first ``def`` of
    each sample's code)."""
    import re
    from collections import Counter

    defined = Counter()
    first = []
    for t in texts:
        code = extract_code(t)
        names = re.findall(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", code, re.M)
        defined.update(set(names))
        if names:
            first.append(names[0])
    if prompt:
        called = set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", prompt))
        asked = [(c, n) for n, c in defined.items() if n in called]
        if asked:
            return max(asked)[1]
    if not first:
        return None
    name, count = Counter(first).most_common(1)[0]
    return name if count * 2 >= len(texts) else None


def behaviour_keys(texts: Sequence[str], prompt: Optional[str],
                   limits: Limits = CLUSTER_LIMITS, max_parallel: int = 2
                   ) -> Tuple[Optional[List[Tuple[str, ...]]], str]:
    """(each text's behaviour, why not): the behaviours (its code's outcome on each call of
    :func:`confroute.confidence.code.example_calls`) when most texts are code defining one
    function that ``prompt`` names or shows; else None and the reason ('not code', 'no
    example calls'), and the caller judges meaning another way."""
    ep = entry_point_of(texts, prompt) if texts and prompt else None
    if not ep:
        return None, "not code"
    calls = example_calls(prompt, ep)
    if not calls:
        return None, "no example calls"
    return behaviours([extract_code(t, ep) for t in texts], calls, limits, max_parallel), ""
