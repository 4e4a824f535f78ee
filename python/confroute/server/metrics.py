"""Prometheus text exposition (format 0.0.4), written by hand: a few counters and histograms do
not justify a dependency, and the format is small and stable.
"""
from __future__ import annotations

import bisect
import math
import threading
from typing import Callable, Dict, Iterable, List, Tuple

Labels = Tuple[Tuple[str, str], ...]


def _labels(labels: Labels, extra: Tuple[Tuple[str, str], ...] = ()) -> str:
    items = tuple(labels) + tuple(extra)
    if not items:
        return ""
    esc = [(k, str(v).replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n"))
           for k, v in items]
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc) + "}"


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Counter:
    def __init__(self, name: str, help: str):
        self.name, self.help = name, help
        self._values: Dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> List[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, v in sorted(self._values.items()):
                out.append(f"{self.name}{_labels(key)} {_num(v)}")
        return out


class Gauge(Counter):
    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[tuple(sorted(labels.items()))] = float(value)

    def render(self) -> List[str]:
        lines = super().render()
        lines[1] = f"# TYPE {self.name} gauge"
        return lines


class Histogram:
    def __init__(self, name: str, help: str, buckets: Iterable[float]):
        self.name, self.help = name, help
        self.buckets = sorted(float(b) for b in buckets)
        self._data: Dict[Labels, list] = {}   # labels -> [bucket counts..., sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        if value is None or not math.isfinite(value):
            return
        key = tuple(sorted(labels.items()))
        with self._lock:
            d = self._data.setdefault(key, [0] * len(self.buckets) + [0.0, 0])
            i = bisect.bisect_left(self.buckets, value)
            if i < len(self.buckets):
                d[i] += 1
            d[-2] += value
            d[-1] += 1

    def count(self, **labels: str) -> int:
        with self._lock:
            d = self._data.get(tuple(sorted(labels.items())))
            return d[-1] if d else 0

    def render(self) -> List[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, d in sorted(self._data.items()):
                cum = 0
                for b, c in zip(self.buckets, d):
                    cum += c
                    out.append(f"{self.name}_bucket{_labels(key, (('le', _num(b)),))} {cum}")
                out.append(f"{self.name}_bucket{_labels(key, (('le', '+Inf'),))} {d[-1]}")
                out.append(f"{self.name}_sum{_labels(key)} {_num(d[-2])}")
                out.append(f"{self.name}_count{_labels(key)} {d[-1]}")
        return out


class ServerMetrics:
    """Everything /metrics shows."""

    def __init__(self):
        p = "confroute_"
        self.requests = Counter(p + "requests_total", "Chat completion requests by HTTP status.")
        self.routed = Counter(p + "routed_total", "Answered requests by the model that answered "
                              "(edge or cloud).")
        self.cloud_errors = Counter(p + "cloud_errors_total", "Failed cloud calls by kind.")
        self.degraded = Counter(p + "degraded_total", "Edge answers given because the cloud "
                                "failed or its breaker was open.")
        self.rejected = Counter(p + "rejected_total", "Requests refused before any model ran, "
                                "by reason.")
        self.disconnects = Counter(p + "client_disconnects_total", "Requests whose client left "
                                   "before the answer was complete.")
        self.dropped = Counter(p + "dropped_jobs_total", "Queued model jobs dropped unrun "
                               "because their client had left.")
        self.stopped = Counter(p + "streams_stopped_total", "Streams (edge tokens, cloud "
                               "chunks) stopped early: the client left, or a stop string.")
        self.tokens = Counter(p + "tokens_total", "Tokens by model and kind (prompt/completion).")
        self.latency = Histogram(p + "request_latency_seconds", "End-to-end latency of answered "
                                 "chat completions.", [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60])
        tenths = [round(0.1 * i, 1) for i in range(1, 11)] + [1.5, 2.0, 3.0]
        self.se = Histogram(p + "semantic_entropy", "Semantic entropy of the edge samples "
                            "(nats).", tenths)
        self.score = Histogram(p + "router_score", "Router score (what the threshold is compared "
                               "with).", tenths)
        self.batch_size = Histogram(p + "edge_batch_requests", "Requests whose edge samples "
                                    "were drawn in one shared llama.cpp batch.",
                                    [1, 2, 3, 4, 6, 8, 16])
        self.samples = Histogram(p + "edge_samples_per_decision", "Edge samples drawn to "
                                 "decide one request, by router (adaptive SE stops early; "
                                 "a probe or a trained router draws none).",
                                 [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20])
        self.queue_depth = Gauge(p + "queue_depth", "Requests queued or running per in-process "
                                 "model.")
        self.breaker_open = Gauge(p + "cloud_breaker_open", "1 while the cloud breaker is open.")
        self._all = [self.requests, self.routed, self.cloud_errors, self.degraded, self.rejected,
                     self.disconnects, self.dropped, self.stopped, self.tokens, self.latency,
                     self.se, self.score,
                     self.batch_size, self.samples,
                     self.queue_depth, self.breaker_open]

    def queue_hooks(self, model: str) -> Dict[str, Callable]:
        """A model's ``WorkQueue`` callbacks: its depth, dropped jobs, stopped streams."""
        return {"on_depth": lambda d: self.queue_depth.set(d, model=model),
                "on_drop": lambda: self.dropped.inc(model=model),
                "on_stop": lambda: self.stopped.inc(model=model)}

    def render(self) -> str:
        lines: List[str] = []
        for m in self._all:
            lines += m.render()
        return "\n".join(lines) + "\n"
