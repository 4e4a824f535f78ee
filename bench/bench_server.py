"""Load run of `confroute serve` on the real models (SmolLM2 edge in-process, Qwen behind a real
llama_cpp.server as the cloud), loopback only, bounded in time and count.

K clients (the official `openai` client, one thread each) send requests back to back for
PHASE_S seconds; then the same again with the cloud server killed halfway. Reported: answers
per second, p50/p99 latency, errors (goal: none), requests lost (sent, never answered: goal
none), routed/degraded counts. Run: ``python -m pytest bench/bench_server.py -s``.
The only asserts are the goals (no errors, none lost), never a speed.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from helpers.servers import confroute_server, llama_cpp_server  # noqa: E402

K = int(os.environ.get("CONFROUTE_BENCH_CLIENTS", "4"))
PHASE_S = float(os.environ.get("CONFROUTE_BENCH_SECONDS", "40"))
MAX_REQUESTS = 400          # per phase, whatever the speed: the run stays bounded
PROMPTS = ["What is the capital of France?", "Name a primary colour.", "What is 7 times 6?",
           "Give one synonym of quick.", "Who wrote Hamlet?", "Name one random animal.",
           "What is the boiling point of water in Celsius?", "Write a four-word slogan."]
MODEL = "router-se-1.5"     # SmolLM2's Kuhn SE spreads around 1-2.3: a mix of both routes


def _run_phase(url: str, seconds: float, kill=None):
    import openai

    results, lock = [], threading.Lock()
    stop_at = time.monotonic() + seconds
    count = iter(range(MAX_REQUESTS))

    def client(k):
        c = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
        i = k
        while time.monotonic() < stop_at:
            with lock:
                if next(count, None) is None:
                    return
            prompt = PROMPTS[i % len(PROMPTS)]
            i += K
            t0 = time.monotonic()
            try:
                r = c.chat.completions.create(model=MODEL, max_tokens=16, messages=[
                    {"role": "user", "content": prompt}])
                f = r.model_extra["confroute"]
                row = {"ok": bool(r.choices), "latency": time.monotonic() - t0,
                       "routed_to": f["routed_to"], "degraded": f["degraded"], "t": t0}
            except Exception as e:  # noqa: BLE001 - every failure is counted, none hidden
                row = {"ok": False, "error": f"{type(e).__name__}: {e}",
                       "latency": time.monotonic() - t0, "t": t0}
            with lock:
                results.append(row)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(K)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    if kill is not None:
        time.sleep(seconds / 2)
        kill()
    for t in threads:
        t.join()
    return results, time.monotonic() - t_start


def _summary(name, results, wall):
    ok = [r for r in results if r["ok"]]
    lat = sorted(r["latency"] for r in ok)

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {"phase": name, "clients": K, "seconds": round(wall, 1), "requests": len(results),
            "answered": len(ok), "errors": len(results) - len(ok),
            "throughput_rps": round(len(ok) / wall, 3), "p50_s": round(pct(0.50), 2),
            "p99_s": round(pct(0.99), 2),
            "edge": sum(r.get("routed_to") == "edge" for r in ok),
            "cloud": sum(r.get("routed_to") == "cloud" for r in ok),
            "degraded": sum(bool(r.get("degraded")) for r in ok),
            "error_kinds": sorted({r["error"][:80] for r in results if not r["ok"]})}


@pytest.mark.benchmark(group="server-load")
def test_server_load_with_and_without_the_cloud(tmp_path, capsys):
    from confroute.models import store

    cfg = {"edge": {"n_threads": 1}, "queue_size": 32,
           "routers": [{"name": "se", "thresholds": [1.5], "samples": 5}],
           "breaker": {"failures": 3, "reset_s": 5}, "sampling": {"max_tokens": 16}}
    rows = []
    with llama_cpp_server(store.model_path(store.DEFAULT_CLOUD)) as (cloud_url, cloud_proc):
        cfg["cloud"] = {"base_url": cloud_url, "model": "qwen", "timeout_s": 30}
        with confroute_server(cfg, tmp_path) as server:
            _run_phase(server.url, 5)                         # warm-up, not reported
            res, wall = _run_phase(server.url, PHASE_S)
            rows.append(_summary("cloud up", res, wall))
            res, wall = _run_phase(server.url, PHASE_S, kill=cloud_proc.kill)
            rows.append(_summary("cloud killed halfway", res, wall))
            after = [r for r in res if r["t"] > res[0]["t"] + PHASE_S / 2 + 1]
            rows[-1]["degraded_after_kill"] = sum(bool(r.get("degraded")) for r in after)
    if os.environ.get("CONFROUTE_BENCH_COMPARE_BATCHING"):
        # The same load with the edge sampling of concurrent requests not batched.
        with llama_cpp_server(store.model_path(store.DEFAULT_CLOUD)) as (cloud_url, _):
            cfg["cloud"]["base_url"] = cloud_url
            cfg["edge"]["batch"] = False
            with confroute_server(cfg, tmp_path) as server:
                _run_phase(server.url, 5)
                res, wall = _run_phase(server.url, PHASE_S)
                rows.append(_summary("cloud up, edge batching off", res, wall))
    with capsys.disabled():
        print("\n" + json.dumps(rows, indent=1))
    for row in rows:
        assert row["errors"] == 0, row          # goal: every request answered
        assert row["answered"] == row["requests"]
    assert rows[1]["degraded"] > 0              # the kill was felt, and absorbed
