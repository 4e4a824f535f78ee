"""The live outcome builder's checkpoint and resume logic, with a scripted model (pure logic).
Runs with real local models are in test_eval_live_models.py."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from confroute.eval.items import Item
from confroute.eval.grading import grade_gsm8k
from confroute.eval.build import build_outcomes

ITEMS = [Item(f"q{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(6)]


class Scripted:
    """Answers right when (model, question) hashes even; can die after `die_after` calls."""

    def __init__(self, name, die_after=None):
        self.name, self.die_after, self.calls = name, die_after, 0

    def chat(self, messages, n=1, max_tokens=64, temperature=0.0):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt  # what Ctrl-C or a crash looks like mid-run
        self.calls += 1
        q = messages[-1]["content"]
        i = int(q.split("What is ")[1].split(" ")[0])
        right = (i + len(self.name)) % 2 == 0
        return SimpleNamespace(text=f"so #### {2 * i if right else 2 * i + 1}",
                               usage={"completion_tokens": 3})


def _run(path, edge, cloud, **kw):
    return build_outcomes(ITEMS, {"edge": edge, "cloud": cloud}, grade_gsm8k, path,
                          weak="edge", strong="cloud", name="toy", progress=False, **kw)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    full = _run(tmp_path / "full.jsonl", Scripted("edge"), Scripted("cloud"))
    assert full.q_weak.tolist() == [1, 0, 1, 0, 1, 0]
    assert full.q_strong.tolist() == [0, 1, 0, 1, 0, 1]

    ck = tmp_path / "ck.jsonl"
    edge, cloud = Scripted("edge", die_after=3), Scripted("cloud")
    with pytest.raises(KeyboardInterrupt):
        _run(ck, edge, cloud)
    lines = ck.read_text().splitlines()
    assert len(lines) == 1 + 3 + 3  # header + 3 questions answered by both models
    edge2, cloud2 = Scripted("edge"), Scripted("cloud")
    resumed = _run(ck, edge2, cloud2)
    assert (edge2.calls, cloud2.calls) == (3, 3)  # nothing repeated, nothing lost
    np.testing.assert_array_equal(resumed.quality, full.quality)
    assert resumed.prompts == full.prompts and resumed.ids == full.ids
    # A third run is free.
    edge3, cloud3 = Scripted("edge"), Scripted("cloud")
    _run(ck, edge3, cloud3)
    assert edge3.calls == cloud3.calls == 0


def test_torn_last_line_is_redone(tmp_path):
    ck = tmp_path / "ck.jsonl"
    full = _run(ck, Scripted("edge"), Scripted("cloud"))
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) - 25])  # killed while writing the last record
    edge, cloud = Scripted("edge"), Scripted("cloud")
    again = _run(ck, edge, cloud)
    assert edge.calls + cloud.calls == 1
    np.testing.assert_array_equal(again.quality, full.quality)
    assert len(ck.read_text().splitlines()) == 1 + 12


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    ck = tmp_path / "ck.jsonl"
    _run(ck, Scripted("edge"), Scripted("cloud"))
    with pytest.raises(ValueError, match=r"other settings \(max_tokens: checkpoint 256, now 9\)"):
        _run(ck, Scripted("edge"), Scripted("cloud"), max_tokens=9)
    lines = ck.read_text().splitlines()
    lines[3] = '{"id": "q1", "model": "edge"}'
    ck.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"ck\.jsonl: line 4: not a valid outcome record"):
        _run(ck, Scripted("edge"), Scripted("cloud"))
    (tmp_path / "x.jsonl").write_text("hello\n")
    with pytest.raises(ValueError, match="not a confroute outcome checkpoint"):
        _run(tmp_path / "x.jsonl", Scripted("edge"), Scripted("cloud"))


def test_checkpoint_with_the_similarity_under_its_old_name_resumes(tmp_path):
    # the live settings in the header once called the scorer's cosine `threshold`
    from dataclasses import replace

    from confroute.eval.build import RECORDED
    from confroute.eval.live import LiveSettings

    items = [replace(it, recorded=(("cloud", 1.0),)) for it in ITEMS]
    ck = tmp_path / "ck.jsonl"

    def run(edge, **kw):
        return build_outcomes(items, {"edge": edge, "cloud": RECORDED}, grade_gsm8k, ck,
                              weak="edge", strong="cloud", name="toy", progress=False, **kw)

    full = run(Scripted("edge"))
    lines = ck.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["live"]["similarity"] == 0.8 and "threshold" not in head["live"]
    head["live"]["threshold"] = head["live"].pop("similarity")
    ck.write_text("\n".join([json.dumps(head)] + lines[1:4]) + "\n")  # 3 answers of 6
    edge = Scripted("edge")
    again = run(edge)
    assert edge.calls == 3
    np.testing.assert_array_equal(again.quality, full.quality)
    # another cosine is another setting, under either name
    with pytest.raises(ValueError, match=r"other settings \(live: "):
        run(Scripted("edge"), settings=LiveSettings(max_tokens=256, samples=0, similarity=0.9))


def test_records_keep_the_answers(tmp_path):
    ck = tmp_path / "ck.jsonl"
    _run(ck, Scripted("edge"), Scripted("cloud"))
    recs = [json.loads(l) for l in ck.read_text().splitlines()[1:]]
    assert recs[0].pop("seconds") >= 0
    assert recs[0] == {"id": "q0", "model": "edge", "answer": "so #### 0", "extracted": "0",
                       "quality": 1.0, "usage": {"completion_tokens": 3}, "signals": {},
                       "extra": {}}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown strong model 'gpt'"):
        build_outcomes(ITEMS, {"edge": Scripted("edge")}, grade_gsm8k, tmp_path / "c",
                       weak="edge", strong="gpt", progress=False)
    with pytest.raises(ValueError, match="no items"):
        build_outcomes([], {"edge": Scripted("e")}, grade_gsm8k, tmp_path / "c",
                       weak="edge", strong="edge", progress=False)


class Echo:
    """Answers each turn with the number of messages it saw: shows the conversation grows."""

    def chat(self, messages, n=1, max_tokens=64, temperature=0.0):
        return SimpleNamespace(text=f"seen {len(messages)}: {messages[-1]['content']}", usage={})


def test_multi_turn_items_are_judged_and_failures_left_out(tmp_path):
    from confroute.eval.data import MTBenchQuestion
    from confroute.eval.grading import mt_bench_grader
    from confroute.eval.judge import Judge

    qs = [MTBenchQuestion(1, "writing", ("Write a poem.", "Shorter.")),
          MTBenchQuestion(2, "math", ("1+1?", "Times 3?"), ("2", "6")),
          MTBenchQuestion(3, "writing", ("Joke?", "Another.")),]
    items = [Item(str(q.question_id), q.turns[0], q, q.category, q.turns) for q in qs]

    class ScriptedJudge:
        model = "scripted"
        prompts = []

        def chat(self, messages, n=1, max_tokens=64, temperature=0.0):
            p = messages[-1]["content"]
            self.prompts.append(p)
            if "Joke?" in p:
                return SimpleNamespace(text="Funny enough.")  # no rating: a failure
            return SimpleNamespace(text="[[8]]" if "seen 3" in p else "[[6]]")

    judge = ScriptedJudge()
    grade = mt_bench_grader(Judge(judge))
    with pytest.warns(UserWarning, match=r"1 item\(s\) .* left out of the table: 3"):
        t = build_outcomes(items, {"edge": Echo(), "cloud": Echo()}, grade,
                           tmp_path / "ck.jsonl", weak="edge", strong="cloud", name="mt",
                           grader="scripted", progress=False)
    assert t.ids == ("1", "2") and t.prompts == ("Write a poem.", "1+1?")
    assert t.q_weak.tolist() == [7.0, 7.0]  # turn 1 -> 6, turn 2 (3 messages seen) -> 8
    recs = [json.loads(l) for l in (tmp_path / "ck.jsonl").read_text().splitlines()[1:]]
    assert recs[0]["answer"] == ["seen 1: Write a poem.", "seen 3: Shorter."]
    assert recs[0]["extracted"] == "6,8"
    assert [r["quality"] for r in recs if r["id"] == "3"] == [None, None]
    assert any("[Reference answer]\n2" in p for p in judge.prompts)  # math uses references
    # The judge is part of the checkpoint's settings.
    with pytest.raises(ValueError, match="grader: checkpoint 'scripted', now 'other'"):
        build_outcomes(items, {"edge": Echo(), "cloud": Echo()}, grade, tmp_path / "ck.jsonl",
                       weak="edge", strong="cloud", name="mt", grader="other", progress=False)


def test_regrade_rewrites_the_checkpoint_without_asking_models(tmp_path):
    ck = tmp_path / "ck.jsonl"
    _run(ck, Scripted("edge"), Scripted("cloud"))

    def strict(answer, gold):  # a changed grader: everything wrong
        return 0.0, "strict"

    edge, cloud = Scripted("edge"), Scripted("cloud")
    t = build_outcomes(ITEMS, {"edge": edge, "cloud": cloud}, strict, ck, weak="edge",
                       strong="cloud", name="toy", progress=False, regrade=True)
    assert edge.calls == cloud.calls == 0
    assert t.quality.sum() == 0
    recs = [json.loads(l) for l in ck.read_text().splitlines()[1:]]
    assert len(recs) == 12 and {r["extracted"] for r in recs} == {"strict"}
    assert recs[0]["answer"] == "so #### 0"  # the answers themselves are kept


def _no_logprobs_edge():
    """An HttpEdge whose endpoint returns no token logprobs; nothing listens at its URL: what
    is tested here is decided before any request."""
    from confroute.models.http_edge import HttpEdge

    class NoLogprobs(HttpEdge):
        def gives_logprobs(self):
            return False

    return NoLogprobs("http://127.0.0.1:9/v1", "edge")


def test_an_http_edge_is_in_the_checkpoint_header_and_its_policies_are_checked_first(tmp_path):
    from confroute.decision.names import RouterPolicy
    from confroute.decision.policies import Disagreement, Stage, Staged
    from confroute.eval.live import LiveSettings, split_policies

    ck = tmp_path / "ck.jsonl"
    _run(ck, Scripted("edge"), Scripted("cloud"))
    assert json.loads(ck.read_text().splitlines()[0])["http_models"] is None
    edge = _no_logprobs_edge()
    # the same model name over HTTP is another edge: a resume cannot switch silently
    with pytest.raises(ValueError, match=r"http_models: checkpoint None, now \{'edge': "
                                         r"\{'base_url': 'http://127.0.0.1:9/v1', 'model': "
                                         r"'edge', 'extra_body': \{'top_p': 1.0\}\}\}"):
        _run(ck, edge, Scripted("cloud"))
    # a policy the endpoint cannot serve is refused before the checkpoint is opened
    settings = LiveSettings(max_tokens=8, samples=2,
                            policies=("router-se", "router-disagreement"))
    with pytest.raises(ValueError, match=r"cannot serve the signal column\(s\) se \(.*returns "
                                         r"none.*\); of those asked it can serve: disagreement"):
        _run(tmp_path / "ck2.jsonl", edge, Scripted("cloud"), settings=settings,
             signals_from="edge")
    assert not (tmp_path / "ck2.jsonl").exists()
    kept, refused = split_policies(edge, LiveSettings())
    assert kept == ("disagreement", "se_discrete")
    assert list(refused) == ["answer_logprob", "se", "se_weighted"]

    class Probe:   # a trained router that reads the hidden state, as routers.sep does
        name, threshold, needs_hidden = "probe", 0.5, True

    ladder = Staged([Stage(RouterPolicy(Probe()), 0.8, 0.2, "probe"),
                     Stage(Disagreement(0.4), 0.4)])
    assert ladder.needs_hidden and not Disagreement(0.4).needs_hidden
    with pytest.raises(ValueError, match="in-process only: the HTTP edge 'edge'"):
        edge.check_policy(ladder)


def test_eval_build_leaves_out_the_default_columns_an_http_edge_cannot_serve(data_dir,
                                                                            capsys):
    import argparse

    from confroute.cli.eval import build as cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    base = ["--benchmark", "gsm8k", "--data", str(data_dir), "--limit", "2",
            "--checkpoint", "ck.jsonl", "--out", "t.csv"]
    edge = _no_logprobs_edge()
    _, _, settings = cli._plan(p.parse_args(base), None, edge)
    assert settings.policies == ("disagreement", "se_discrete")
    assert "note: answer_logprob, se, se_weighted left out of the default signal columns: " \
           in capsys.readouterr().err
    # asked for by name, it stays, and the builder refuses it (above)
    _, _, settings = cli._plan(p.parse_args(base + ["--policy", "router-se"]), None, edge)
    assert settings.policies == ("router-se",)
    with pytest.raises(ValueError, match="--edge-extra-body must be a JSON object"):
        cli._extra_body(p.parse_args(base + ["--edge-extra-body", "[1]"]))
