"""`confroute label --benchmark`: SE labels on a benchmark's own prompts, each model answering
as `eval build` has it answer, graded by the benchmark's grader (MBPP: its asserts in the
sandbox), with the benchmark's SE (code: execution clusters). Real SmolLM2 (weak) and real
Qwen (strong), both in process."""
import json

import pytest

from confroute import cli
from confroute.eval.label_job import JobConfig, benchmark_fns
from confroute.labels import read_labels
from helpers.data import file_rows

pytestmark = pytest.mark.data


def _label(data, out, *extra):
    return cli.main(["label", "--benchmark", "mbpp", "--split", "train",
                     "--data", str(data), "--limit", "2", "--n", "2", "--max-tokens", "96",
                     "--threads", "1", "--no-progress", "--out", str(out), *extra])


@pytest.mark.models
def test_mbpp_train_labels_by_execution_se(data_dir, tmp_path, capsys):
    from confroute.eval.benchmarks import get_benchmark

    out = tmp_path / "mbpp.jsonl"
    assert _label(data_dir, out) == 0
    rows = read_labels(out)
    items = get_benchmark("mbpp").items(data_dir, "train")[:2]
    assert [r["prompt"] for r in rows] == [it.prompt for it in items]
    meta = json.loads((tmp_path / "mbpp.jsonl.meta.json").read_text())
    assert meta["source"]["signal"] == "se" and meta["graded"] is True
    assert meta["config"]["max_tokens"] == 96
    for r, it in zip(rows, items):
        assert r["label_source"] == "se" and r["se_kind"] == "kuhn"
        assert r["se_weak"] >= 0 and r["se_strong"] >= 0
        # the response is the graded greedy answer: the benchmark's grade of it is the row's
        bench = get_benchmark("mbpp")
        for side, ab in (("weak", "a"), ("strong", "b")):
            assert r[f"quality_{side}"] == bench.grade(r[f"response_{ab}"], it)[0]
        assert r["response_b"].startswith("```python")
    # a rerun resumes: nothing new is sampled or written
    before = out.read_text()
    assert _label(data_dir, out) == 0
    assert out.read_text() == before and "0 new rows (2 already there)" in capsys.readouterr().out
    # another SE signal is another job: refused before any sampling, the file kept
    assert _label(data_dir, out, "--se-signal", "se_discrete") == 2
    assert "other options" in capsys.readouterr().err and out.read_text() == before
    # accuracy labels for the same prompts and responses
    acc = tmp_path / "acc.jsonl"
    assert cli.main(["label", "--accuracy-of", str(out), "--out", str(acc)]) == 0
    for a, r in zip(read_labels(acc), rows):
        assert a["prompt"] == r["prompt"] and a["label_source"] == "accuracy"
        assert a["winner_model_b"] == int(r["quality_strong"] > r["quality_weak"])
        assert a["winner_model_a"] == int(r["quality_weak"] > r["quality_strong"])


class _Api:
    name = "some-api"

    def chat(self, messages, **kw):  # a chat-only backend: no samples, no token logprobs
        raise AssertionError("never asked")


def test_benchmark_labels_refuse_what_they_cannot_measure(data_dir, capsys):
    from confroute.eval.benchmarks import get_benchmark

    bench = get_benchmark("mbpp")
    items = bench.items(data_dir, "train")[:3]
    config = JobConfig(weak="w", strong="s", n=2, max_tokens=8)
    with pytest.raises(ValueError, match="'some-api' is not in process"):
        benchmark_fns(bench, items, {"weak": _Api(), "strong": _Api()}, config, "se")
    with pytest.raises(ValueError, match="the same prompt text"):
        benchmark_fns(bench, items + items[:1], {}, config, "se")
    assert cli.main(["label", "--benchmark", "mt-bench", "--data", str(data_dir),
                     "--out", "x.jsonl"]) == 2
    assert "needs a judge" in capsys.readouterr().err
    assert cli.main(["label", "--prompts", "q.txt", "--se-signal", "se_kuhn",
                     "--out", "x.jsonl"]) == 2
    assert "--se-signal is for --benchmark" in capsys.readouterr().err


def test_gsm8k_train_split_for_labels(data_dir):
    from confroute.eval.benchmarks import get_benchmark

    b = get_benchmark("gsm8k")
    train, dev = b.items(data_dir, "train"), b.items(data_dir, "dev")
    path = data_dir / "gsm8k" / "train.jsonl"
    assert len(train) == file_rows(path)
    # the gold number is what follows the first answer's '#### '
    assert train[0].reference == json.loads(open(path).readline())["answer"].split("#### ")[-1]
    assert not {it.id for it in train} & {it.id for it in dev}   # another split, other ids
    # one SE column for every benchmark: the served SE policy (meaning judged per prompt)
    assert b.se_signal() == "se" and b.se_signal("discrete") == "se_discrete"
    assert get_benchmark("mbpp").se_signal() == "se"
    assert get_benchmark("mt-bench").se_signal("weighted") == "se_weighted"
    with pytest.raises(ValueError, match="unknown SE kind"):
        b.se_signal("entropy")
