"""Starting and stopping the real server processes the tests use (llama_cpp.server, through
confroute.models.llama.server so it loads with the CPU-safe params), as a
plain module: conftest.py and helpers/servers.py both import it (bench/ has a conftest.py of
its own, so `import conftest` would be ambiguous there)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time

LLAMA_SERVER_MODEL = "qwen"
# llama.cpp threads spin-wait; on a machine shared with other jobs CONFROUTE_N_THREADS=1 is
# several times faster than 2.
THREADS = int(os.environ.get("CONFROUTE_N_THREADS") or 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(model_path, port: int, log_file, alias: str = LLAMA_SERVER_MODEL,
                       timeout: float = 180.0, threads: int = THREADS,
                       fresh_prompts: bool = False) -> subprocess.Popen:
    """Starts llama_cpp.server and waits until ``/v1/models`` answers; kills it on failure.
    ``fresh_prompts``: no prompt prefix reused across requests (reproducible scores)."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "confroute.models.llama.server", "--model", str(model_path),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", str(threads), "--n_threads_batch", str(threads),
         "--model_alias", alias] + (["--fresh-prompts"] if fresh_prompts else []),
        stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log_file.flush()
            with open(log_file.name) as f:
                raise RuntimeError("llama_cpp.server exited early:\n" + f.read()[-2000:])
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"llama_cpp.server did not answer within {timeout} s")
        time.sleep(0.25)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@contextlib.contextmanager
def llama_cpp_server(model_path, threads: int = THREADS, timeout: float = 180.0):
    """A llama_cpp.server on a free loopback port for the ``with`` block: yields (base URL,
    process) and stops it at the end, whatever happened."""
    port = free_port()
    with tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log") as log:
        proc = start_llama_server(model_path, port, log, timeout=timeout, threads=threads)
        try:
            yield f"http://127.0.0.1:{port}/v1", proc
        finally:
            stop_process(proc)
