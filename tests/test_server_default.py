"""`confroute serve` with the default config: SmolLM2 edge and the Qwen stand-in for the cloud,
both in-process (one thread each here, as the only change: the machine is shared)."""
from __future__ import annotations

import httpx
import openai
import pytest

from helpers.servers import confroute_server

pytestmark = [pytest.mark.models, pytest.mark.system]  # the real `confroute serve` process
ASK = [{"role": "user", "content": "Name one random animal."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with confroute_server({"edge": {"n_threads": 1}}, tmp_path_factory.mktemp("default")) as s:
        yield s


def test_out_of_the_box(server):
    assert server.url.startswith("http://127.0.0.1:")    # loopback unless told otherwise
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["router-se-0.8"]
    health = httpx.get(server.root + "/health", timeout=10).json()
    assert health["cloud"] == "qwen2.5-coder-0.5b-instruct" and health["breaker"] == "closed"
    # Threshold 100: the edge keeps it. Threshold 0: the in-process Qwen answers.
    edge = client.chat.completions.create(model="router-se-100", messages=ASK, max_tokens=8)
    assert edge.model_extra["confroute"]["routed_to"] == "edge"
    cloud = client.chat.completions.create(model="router-se-0", messages=ASK, max_tokens=8,
                                           seed=7)
    f = cloud.model_extra["confroute"]
    assert f["routed_to"] == "cloud" and cloud.model == "qwen2.5-coder-0.5b-instruct"
    assert cloud.choices[0].message.content and f["usage"]["cloud"]["completion_tokens"] > 0
    # Streaming from the in-process cloud, with usage counted per model.
    chunks = list(client.chat.completions.create(model="router-se-0", messages=ASK, seed=7,
                                                 max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    f = chunks[-1].model_extra["confroute"]
    assert f["routed_to"] == "cloud" and f["usage"]["cloud"]["prompt_tokens"] > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    # The in-process stand-in cannot call tools: said at once, naming the field.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="router-se-0.8", messages=ASK, tools=[
            {"type": "function", "function": {"name": "f"}}])
    assert e.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as e:   # an image it could not see
        client.chat.completions.create(model="router-se-0.8", messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url",
                                          "image_url": {"url": "data:image/png;base64,AA=="}}]}])
    assert e.value.body["param"] == "messages" and "content" in e.value.body["message"]
