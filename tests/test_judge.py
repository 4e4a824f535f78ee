"""The judge's logic with a scripted client (pure logic), and its parser on real and
real-looking judge outputs. The end-to-end run against a real server is test_judge_live.py."""
import json
from types import SimpleNamespace

import pytest

from confroute.eval.judge import (DEFAULT_TEMPLATES, Judge, JudgeCache, best_of_k_scores,
                                  load_fastchat_templates, parse_best, parse_rating,
                                  parse_verdict, render)
from helpers.data import DATA, needs_data

RATINGS = [
    ("The answer is correct and complete.\n\nRating: [[8]]", 8.0),
    ('I must follow the format "[[rating]]", e.g. "Rating: [[5]]". The answer is weak. [[3]]',
     3.0),
    ("Rating: [[9.5]]", 9.5),
    ("[[ 7 ]]", 7.0),
    ("[[6/10]]", 6.0),
    ("Rating: 8", 8.0),
    ("Overall I would give this response a score of 7 out of 10.", 7.0),
    ("Rating: 6/10. Again: 6/10.", 6.0),
    ("Score: 4", 4.0),
    # failures: no rating, ambiguous, out of range, garbage
    ("The response is good but lacks detail.", None),
    ("Rating: 6. On reflection, maybe 8/10.", None),
    ("Rating: [[11]]", None),
    ("Rating: [[0]]", None),
    ("[[rating]]", None),
    ("", None),
    ("Rating: [[-1]]", None),
]


@pytest.mark.parametrize("text, expected", RATINGS)
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.data
def test_parse_rating_on_recorded_gpt4_judgements(data_dir):
    """FastChat recorded GPT-4's judgements and the score it parsed (-1 = it failed too); the
    tiny data set has invented judgements of that form."""
    n = agree = 0
    for name in ("routellm_judgements_dev.jsonl", "routellm_gpt-4_single_dev.jsonl"):
        for line in open(data_dir / "mt_bench" / name, encoding="utf-8"):
            o = json.loads(line)
            n += 1
            want = None if o["score"] == -1 else float(o["score"])
            agree += parse_rating(o["judgment"]) == want
    assert n > 0 and agree == n


def test_parse_verdict_and_best():
    assert parse_verdict("A is more accurate. [[A]]") == "A"
    assert parse_verdict('Format: "[[A]]" if A is better. Verdict: [[C]]') == "tie"
    assert parse_verdict("Assistant B is better.") is None
    assert parse_best("Candidates 1 and 3 match the truth. [[1, 3]]", 3) == {1, 3}
    assert parse_best("none is right [[0]]", 3) == frozenset()
    assert parse_best("[[4]]", 3) is None          # no such candidate
    assert parse_best("[[1, two]]", 3) is None
    assert parse_best("The best is candidate 2.", 3) is None


class ScriptedJudge:
    """A stand-in client: answers from a function of the prompt, counts calls."""

    model = "scripted-judge"

    def __init__(self, reply):
        self.reply, self.calls, self.seen = reply, 0, []

    def chat(self, messages, n=1, max_tokens=512, temperature=0.0):
        self.calls += 1
        self.seen.append(messages)
        return SimpleNamespace(text=self.reply(messages[-1]["content"]))


def test_grade_uses_reference_and_caches(tmp_path):
    client = ScriptedJudge(lambda p: "Good. [[9]]" if "Paris" in p else "Wrong. [[2]]")
    j = Judge(client, cache=tmp_path / "cache.jsonl")
    r = j.grade("Capital of France?", "Paris", reference="Paris")
    assert r.score == 9 and r.template == "single-ref"
    assert "[Reference answer]\nParis" in client.seen[0][1]["content"]
    assert j.grade("Capital of France?", "Lyon").score == 2
    assert client.calls == 2
    # A rerun, even in a new Judge on the same cache file, costs nothing.
    j2 = Judge(client, cache=tmp_path / "cache.jsonl")
    assert j2.grade("Capital of France?", "Paris", reference="Paris").score == 9
    assert client.calls == 2 and j2.calls == 0
    # Another judge model is another cache key.
    j3 = Judge(client, model="other-judge", cache=tmp_path / "cache.jsonl")
    j3.grade("Capital of France?", "Lyon")
    assert client.calls == 3


def test_unparsable_output_is_a_failure_not_a_number(tmp_path):
    j = Judge(ScriptedJudge(lambda p: "It is fine I guess."), cache=None)
    r = j.grade("q", "a")
    assert r.score is None and not r.ok and r.output == "It is fine I guess."


def test_cache_survives_a_torn_line(tmp_path):
    path = tmp_path / "c.jsonl"
    c = JudgeCache(path)
    c.put("k1", "out1")
    with open(path, "a") as f:
        f.write('{"key": "k2", "outp')  # killed mid-write
    c2 = JudgeCache(path)
    assert c2.get("k1") == "out1" and c2.get("k2") is None
    c2.put("k3", "out3")
    assert JudgeCache(path).get("k3") == "out3"


def test_multi_turn_and_mt_bench_question():
    client = ScriptedJudge(lambda p: "[[7]]")
    j = Judge(client)
    q = SimpleNamespace(question_id=1, category="math", turns=("1+1?", "times 3?"),
                        references=("2", "6"))
    r1, r2 = j.grade_mt_bench(q, ["2", "6"])
    assert (r1.template, r2.template) == ("single-ref", "single-ref-multi")
    prompt = client.seen[1][1]["content"]
    assert "User: times 3?" in prompt and "Second question: 6" in prompt
    q = SimpleNamespace(question_id=2, category="writing", turns=("a", "b"), references=("x",))
    assert [r.template for r in j.grade_mt_bench(q, ["1", "2"])] == ["single", "single-multi"]
    with pytest.raises(ValueError, match="2 turns but 1 answers"):
        j.grade_mt_bench(q, ["1"])


def _position_biased(p):
    return "[[A]]"  # always prefers whatever is shown first


def test_pairwise_cancels_position_bias():
    j = Judge(ScriptedJudge(_position_biased))
    r = j.pairwise("q", "answer one", "answer two")
    assert r.verdicts == ("a", "b") and r.winner == "tie" and not r.consistent

    def prefers_two(p):
        a = p.split("[Answer of assistant A]\n")[1].split("\n")[0]
        return "[[A]]" if a == "answer two" else "[[B]]"

    r = Judge(ScriptedJudge(prefers_two)).pairwise("q", "answer one", "answer two")
    assert r.verdicts == ("b", "b") and r.winner == "b" and r.consistent
    r = Judge(ScriptedJudge(lambda p: "no idea")).pairwise("q", "x", "y")
    assert r.winner is None


def test_best_of_k_names_systems_and_scores():
    def judge(p):
        # Name the candidate(s) equal to the ground truth.
        truth = p.split("[Ground truth]\n")[1].split("\n")[0]
        cands = [c.split("]\n", 1)[1].split("\n[End")[0]
                 for c in p.split("[Candidate ")[1:]]
        named = [str(i) for i, c in enumerate(cands, 1) if c == truth]
        return f"[[{', '.join(named) or '0'}]]"

    client = ScriptedJudge(judge)
    j = Judge(client)
    r = j.best_of_k("2+2?", "4", {"edge": "5", "cloud": "4", "router": "4"})
    assert r.best == {"cloud", "router"}
    assert client.seen[0][1]["content"].count("[Candidate ") == 2  # "4" shown once
    assert "2 numbered candidate answers" in client.seen[0][0]["content"]
    r2 = j.best_of_k("3+3?", "6", {"edge": "6", "cloud": "7", "router": "6"})
    bad = Judge(ScriptedJudge(lambda p: "hmm")).best_of_k("q", "t", {"edge": "x", "cloud": "y"})
    assert bad.best is None
    s = best_of_k_scores([r, r2, bad])
    assert s["scores"] == {"cloud": 0.5, "edge": 0.5, "router": 1.0}
    assert s["n"] == 3 and s["failed"] == 1


def test_templates_render_and_fastchat_loading(tmp_path):
    code = "def f():\n    return {'a': 1}"
    out = render(DEFAULT_TEMPLATES["single"].prompt_template, question="Write code",
                 answer=code)
    assert code in out
    with pytest.raises(ValueError, match=r"needs \{answer\}"):
        render(DEFAULT_TEMPLATES["single"].prompt_template, question="q")
    p = tmp_path / "judge_prompts.jsonl"
    p.write_text(json.dumps({"name": "single-v1", "type": "single", "system_prompt": "S",
                             "prompt_template": "Q: {question} A: {answer}"}) + "\n")
    t = load_fastchat_templates(p)
    client = ScriptedJudge(lambda q: "[[5]]")
    r = Judge(client, templates=p).grade("what?", "this")
    assert r.template == "single-v1" and client.seen[0][1]["content"] == "Q: what? A: this"
    assert t["pair"] is DEFAULT_TEMPLATES["pair"]  # slots FastChat's file lacks stay ours
    p.write_text('{"name": "other"}\n')
    with pytest.raises(ValueError, match="missing text field"):
        load_fastchat_templates(p)


@pytest.mark.data
@needs_data  # FastChat's own file: the tiny data set has no judge prompts
def test_real_fastchat_file_renders_every_slot():
    t = load_fastchat_templates(DATA / "mt_bench" / "judge_prompts.jsonl")
    assert {t[s].name for s in ("single", "single-ref", "pair", "pair-ref-multi")} == {
        "single-v1", "single-math-v1", "pair-v2", "pair-math-v1-multi-turn"}
    client = ScriptedJudge(lambda p: "[[A]]")
    j = Judge(client, templates=t)
    j.grade_multi(["q1", "q2"], ["a1", "a2"], references=["r1", "r2"])
    assert "### Reference answer:\nr2" in client.seen[0][1]["content"]
    j.pairwise("q", "x", "y", reference="r")
    assert "[The Start of Reference Answer]\nr" in client.seen[1][1]["content"]
