"""Processes and stand-ins for the server tests: the real `confroute serve` process, a real
`llama_cpp.server` process, and a small HTTP server in front of a cloud that the tests can make
fail (forward / 500 / stall / drop the connection). Everything binds to 127.0.0.1 only."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

import httpx

from . import processes
from .processes import stop_process

HOST = "127.0.0.1"


@contextlib.contextmanager
def confroute_server(config: Dict, tmp_dir, api_key: Optional[str] = None,
                     start_timeout: float = 180.0, log_level: str = "warning"):
    """`confroute serve --port 0 --config <config>`; yields the base URL (…/v1) and the process
    (``.proc``) once the server has printed its address. The key goes in by environment."""
    cfg_path = os.path.join(str(tmp_dir), f"serve-{time.monotonic_ns()}.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    env = dict(os.environ)
    env.pop("CONFROUTE_SERVER_API_KEY", None)
    if api_key:
        env["CONFROUTE_SERVER_API_KEY"] = api_key
    log_path = cfg_path + ".log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "confroute.cli", "serve", "--port", "0",
                             "--config", cfg_path, "--log-level", log_level],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        url = _wait_for_address(proc, start_timeout, log_path)
        yield Server(url, proc, log_path)
    finally:
        stop_process(proc)
        proc.stdout.close()
        log.close()


class Server:
    def __init__(self, url: str, proc, log_path: str):
        self.url, self.proc, self.log_path = url, proc, log_path
        self.root = url[: -len("/v1")]

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def metric(self, series: str, headers=None) -> float:
        """The value of one /metrics series, named exactly as printed (labels included,
        e.g. 'confroute_routed_total{route="edge"}'); 0 if it does not exist yet."""
        text = httpx.get(self.root + "/metrics", headers=headers or {}, timeout=10).text
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        return 0.0


def send_json(handler: BaseHTTPRequestHandler, status: int, obj) -> None:
    """A whole JSON answer from a test server's request handler."""
    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _wait_for_address(proc, timeout: float, log_path: str) -> str:
    # The line is printed once the socket is bound and the models are loaded.
    result: List[str] = []

    def read():
        for line in proc.stdout:
            if "listening on " in line:
                result.append(line.split("listening on ", 1)[1].split()[0])
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        stop_process(proc)
        with open(log_path) as f:
            raise RuntimeError(f"confroute serve did not start in {timeout:.0f}s:\n"
                               f"{f.read()[-3000:]}")
    return result[0]


def llama_cpp_server(model_path: str, start_timeout: float = 120.0):
    """A real `python -m llama_cpp.server` (yields base URL, proc) with one thread: on a shared,
    oversubscribed machine llama.cpp's spinning worker threads make n_threads=2 several times
    slower than 1 (measured 20-68 s vs 3.7 s for 192 tokens)."""
    return processes.llama_cpp_server(model_path, threads=1, timeout=start_timeout)


class FlakyCloud:
    """An OpenAI-compatible endpoint the tests control. ``mode``:

    - ``forward``: passes requests to ``target`` (a real server), streams included;
    - ``500``: answers HTTP 500 with an error body;
    - ``stall``: accepts the request and answers nothing for ``stall_s`` seconds;
    - ``drop``: closes the connection without an answer;
    - ``cut``: forwards, but closes the connection after ``cut_after`` bytes of the answer;
    - ``no_logprobs``: forwards a non-streamed answer without its choices' logprobs, as a
      server that offers none sends it.

    ``bodies`` records every request body (parsed JSON); ``hits`` counts them;
    ``aborted_streams`` counts forwarded streams whose reader went away before the end."""

    def __init__(self, target: Optional[str] = None, mode: str = "forward",
                 stall_s: float = 30.0, cut_after: int = 400):
        self.target, self.mode, self.stall_s = target, mode, stall_s
        self.cut_after = cut_after
        self.bodies: List[dict] = []
        self.authorizations: List[Optional[str]] = []
        self.aborted_streams = 0
        self.completed_streams = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self._json(200, {"object": "list", "data": [{"id": "flaky", "object": "model"}]})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with cloud._lock:
                    cloud.authorizations.append(self.headers.get("Authorization"))
                    try:
                        cloud.bodies.append(json.loads(body))
                    except ValueError:
                        cloud.bodies.append({"unparsed": body.decode(errors="replace")})
                mode = cloud.mode
                if mode == "500":
                    return self._json(500, {"error": {"message": "the cloud is on fire"}})
                if mode == "stall":
                    cloud._stop.wait(cloud.stall_s)
                    return self._json(503, {"error": {"message": "stalled"}})
                if mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "no_logprobs":
                    return self._without_logprobs(body)
                self._forward(body)   # "forward" and "cut"

            def _without_logprobs(self, body):
                r = httpx.post(cloud.target + self.path[len("/v1"):], content=body,
                               timeout=120, headers={"Content-Type": "application/json"})
                data = r.json()
                for c in data.get("choices") or []:
                    c["logprobs"] = None
                self._json(r.status_code, data)

            def _json(self, status, obj):
                send_json(self, status, obj)

            def _forward(self, body):
                url = cloud.target + self.path[len("/v1"):]
                with httpx.stream("POST", url, content=body, timeout=120,
                                  headers={"Content-Type": "application/json"}) as r:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", r.headers.get("content-type", ""))
                    self.end_headers()   # HTTP/1.0: the body ends when the connection closes
                    sent = 0
                    try:
                        for chunk in r.iter_raw():
                            if cloud.mode == "cut" and sent + len(chunk) > cloud.cut_after:
                                self.wfile.write(chunk[: max(0, cloud.cut_after - sent)])
                                self.wfile.flush()
                                self.close_connection = True
                                return
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        with cloud._lock:
                            cloud.aborted_streams += 1
                        return
                with cloud._lock:
                    cloud.completed_streams += 1

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.bodies)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


# A trained `sw` router for the server tests: arithmetic needs the strong model, small talk
# does not.
MATH = ["What is 17 times 23?", "Compute 45 divided by 9.", "What is 12 squared?",
        "Add 381 and 942.", "What is 7 to the power 3?", "Subtract 58 from 1000."]
CHAT = ["Hello there!", "Good morning, how are you?", "Hi, nice to meet you.",
        "Thanks, have a nice day!", "Hey, what's up?", "Good night!"]


def trained_sw_dir(embedder, tmp_path_factory, threshold: float = 0.5) -> str:
    """Fits and saves that router (threshold stored with it); returns its folder."""
    from confroute.routers.sw import SWRouter

    rows = [{"prompt": p, "model_a": "smol", "model_b": "qwen", "winner_model_a": int(not hard),
             "winner_model_b": int(hard), "winner_tie": 0}
            for hard, ps in ((1, MATH), (0, CHAT)) for p in ps]
    r = SWRouter(embedder=embedder).fit(rows)
    r.threshold = threshold
    d = tmp_path_factory.mktemp("sw")
    r.save(d)
    return str(d)


@contextlib.contextmanager
def recorded_qwen_cloud():
    """Qwen on a real llama_cpp.server with one thread, seen through a recording FlakyCloud
    pass-through. Not conftest's session `llama_server`: that one runs 2 threads, and on a
    shared machine a 280-token prompt then took over 60 s (spinning threads)."""
    from confroute.models import store

    with llama_cpp_server(store.model_path(store.DEFAULT_CLOUD)) as (url, _proc):
        with FlakyCloud(url) as proxy:
            yield proxy
