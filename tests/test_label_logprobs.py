"""`confroute label` against a cloud that returns no logprobs: the real CloudModel, the real
Qwen behind llama_cpp.server, answers passed on without their logprobs (as a server that offers
none sends them). The likelihood-weighted SE kinds are refused before anything is sampled; the
discrete kind works."""
import json

import pytest

from confroute import cli
from confroute.labels import read_labels
from helpers.servers import FlakyCloud


@pytest.fixture()
def cloud_without_logprobs(llama_server):
    with FlakyCloud(llama_server, mode="no_logprobs") as proxy:
        yield proxy


def _label(prompts, out, cloud, kind):
    saved = cli.COMMANDS
    cli.COMMANDS = {"label": saved["label"]}
    try:
        return cli.main(["label", "--prompts", str(prompts), "--out", str(out), "--n", "2",
                         "--max-tokens", "4", "--threads", "1", "--no-progress", "--kind", kind,
                         "--cloud-url", cloud.url, "--cloud-model", "qwen"])
    finally:
        cli.COMMANDS = saved


def test_cloud_gives_logprobs_is_asked_once(llama_server, cloud_without_logprobs):
    from confroute.models import CloudModel

    with_lp = CloudModel(llama_server, "qwen", timeout=120, max_retries=0)
    without = CloudModel(cloud_without_logprobs.url, "qwen", timeout=120, max_retries=0)
    try:
        assert with_lp.gives_logprobs() is True
        assert without.gives_logprobs() is False and without.gives_logprobs() is False
        assert cloud_without_logprobs.hits == 1   # cached after the first question
    finally:
        with_lp.close()
        without.close()


@pytest.mark.parametrize("kind", ["kuhn", "weighted"])
def test_label_refuses_weighted_kinds_before_sampling(tmp_path, capsys,
                                                      cloud_without_logprobs, kind):
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is the capital of France?\n")
    out = tmp_path / "se.jsonl"
    # It used to sample both models and then fail on the first row: "se_strong must be
    # finite, got [nan]".
    assert _label(prompts, out, cloud_without_logprobs, kind) == 2
    err = capsys.readouterr().err
    assert "returns no token logprobs" in err and "--kind discrete" in err
    assert cloud_without_logprobs.hits == 1   # the one-token question, no sampling
    assert not out.exists()


def test_label_with_discrete_se_needs_no_logprobs(tmp_path, cloud_without_logprobs):
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is the capital of France?\n")
    out = tmp_path / "se.jsonl"
    assert _label(prompts, out, cloud_without_logprobs, "discrete") == 0
    rows = read_labels(out)
    assert len(rows) == 1 and rows[0]["se_kind"] == "discrete"
    assert cloud_without_logprobs.hits >= 1   # the cloud was sampled
    assert json.loads(open(str(out) + ".meta.json").read())["config"]["kind"] == "discrete"
