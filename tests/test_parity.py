"""Measured = served, on the real models: for a fixed seed, the score `eval build` records for a
prompt under a policy (answer log-prob, disagreement, SE judged by execution, a trained `sw`,
a `sep` probe on the hidden state) is the score `POST /v1/route` of the real `confroute serve`
process returns for the same router string and request seed, and the answer `/v1/chat/completions`
serves when the edge keeps the query is the graded answer of the table (the benchmark's cue,
which the request sends as an assistant message to continue, plus the served continuation).

The prompts are code tasks invented here, in the shared/data layout (HumanEval's fields), so
the test needs no data set: one whose docstring shows example calls, one that shows none (the
calls are then proposed from its signature); both are judged by behaviour in the sandbox."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import httpx
import pytest

from confroute.models import store
from helpers.servers import confroute_server, trained_sw_dir

pytestmark = [pytest.mark.models, pytest.mark.system]  # `confroute serve` and `eval build`
TASKS = [
    {"task_id": "Tiny/0", "entry_point": "add_one",
     "prompt": 'def add_one(xs: list) -> list:\n    """Add one to every number of the list.\n'
               '    >>> add_one([1, 2, 3])\n    [2, 3, 4]\n    """\n',
     "test": "def check(candidate):\n    assert candidate([1, 2]) == [2, 3]\n"
             "    assert candidate([]) == []\n"},
    {"task_id": "Tiny/1", "entry_point": "shout",
     "prompt": 'def shout(s):\n    """Return the text in capitals with an exclamation mark at the'
               ' end."""\n',
     "test": "def check(candidate):\n    assert candidate('hi') == 'HI!'\n"},
]
SAMPLES, TOKENS, SEED = 5, 48, 3
ONLINE = ("answer_logprob", "disagreement", "se", "se_discrete", "se_weighted")
CLI = "import sys\nfrom confroute.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "code").mkdir()
    with open(d / "code" / "humaneval_dev.jsonl", "w") as f:
        for t in TASKS:
            f.write(json.dumps(t) + "\n")
    with open(d / "code" / "humaneval_recorded_dev.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "prompt", "big", "small"])
        for i, t in enumerate(TASKS):
            w.writerow([t["task_id"], t["prompt"], 1, i % 2])
    return d


@pytest.fixture(scope="module")
def sw_dir(embedder, tmp_path_factory):
    return trained_sw_dir(embedder, tmp_path_factory)


@pytest.fixture(scope="module")
def sep_dir(hidden_edge, tmp_path_factory):
    """A real probe on SmolLM2's hidden states. Its labels are made up (the first half of the
    prompts 'uncertain'): what is tested is that the build and the server score alike."""
    from confroute.routers.sep import SEPRouter

    prompts = ["What is 2 + 2?", "Name a colour.", "Who wrote Hamlet?", "Say hello.",
               "Invent a word.", "Write a poem line.", "Pick a city.", "Describe a dream."]
    rows = [{"prompt": p, "se_weak": float(i < 4), "se_strong": 0.0}
            for i, p in enumerate(prompts)]
    r = SEPRouter(edge=hidden_edge, target="se", se_split="median", layer=12).fit(rows)
    d = tmp_path_factory.mktemp("sep")
    r.save(d)
    return str(d)


@pytest.fixture(scope="module")
def built(data, sw_dir, sep_dir, tmp_path_factory):
    """The table `eval build` writes, and its checkpoint's edge records by id."""
    out = tmp_path_factory.mktemp("build")
    ck, table = out / "ck.jsonl", out / "t.csv"
    cmd = [sys.executable, "-c", CLI, "eval", "build", "--benchmark", "humaneval", "--data",
           str(data), "--seed", SEED, "--samples", SAMPLES, "--max-tokens", TOKENS,
           "--edge", store.DEFAULT_EDGE, "--cloud", "recorded:big",   # the served edge
           "--checkpoint", ck, "--out", table, "--no-progress"]
    cmd += [a for p in ONLINE + (f"router-{sw_dir}", f"router-{sep_dir}")
            for a in ("--policy", p)]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "CONFROUTE_N_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    from confroute.eval.data import load_table

    records = {}
    for line in open(ck, encoding="utf-8").read().splitlines()[1:]:
        o = json.loads(line)
        records[o["id"]] = o
    return load_table(str(table)), records, str(table)


@pytest.fixture(scope="module")
def server(sw_dir, sep_dir, tmp_path_factory):
    cfg = {"edge": {"n_ctx": 3072, "n_seq_max": SAMPLES + 1, "n_threads": 1},
           # never called: the routes below either only decide or keep the query on the edge
           "cloud": {"base_url": "http://127.0.0.1:9/v1", "model": "none", "timeout_s": 5},
           "routers": [{"name": n, "thresholds": [1000 if n != "disagreement" else 1]}
                       for n in ONLINE] + [{"name": "sw", "path": sw_dir, "thresholds": [1]},
                                           {"name": "sep", "path": sep_dir, "thresholds": [1]}],
           "sampling": {"n": SAMPLES, "temperature": 0.7, "max_tokens": TOKENS},
           "limits": {"max_n": 1}}
    with confroute_server(cfg, tmp_path_factory.mktemp("serve")) as s:
        yield s


def _request(item_prompt: str, cue: str, seed: int, model: str) -> dict:
    return {"model": model, "seed": seed,
            "messages": [{"role": "user", "content": item_prompt},
                         {"role": "assistant", "content": cue}]}


def _rows(data):
    from confroute.eval.benchmarks import get_benchmark

    b = get_benchmark("humaneval")
    return [(it, b.prompt(it)) for it in b.items(str(data), "dev")]


def test_every_column_is_a_served_router_string(built, sw_dir, sep_dir):
    from confroute.decision.names import policy_from_string

    table, _, _ = built
    assert set(table.signals) == set(ONLINE) | {sw_dir, sep_dir}
    for name in table.signals:
        policy_from_string(f"router-{name}-0.5")   # the server's own parser accepts it
    assert table.meta["sampling"]["n"] == SAMPLES
    assert table.meta["sampling"]["max_tokens"] == TOKENS


def test_route_scores_equal_the_table_and_the_served_answer_is_the_graded_one(built, data,
                                                                           server, sw_dir,
                                                                           sep_dir):
    table, records, _ = built
    meanings = set()
    for it, p in _rows(data):
        rec = records[it.id]
        seed = rec["extra"]["seed"]
        row = table.ids.index(it.id)
        for name in ONLINE + ("sw", "sep"):
            column = {"sw": sw_dir, "sep": sep_dir}.get(name, name)
            t = 1000 if name in ONLINE and name != "disagreement" else 1
            r = httpx.post(server.url + "/route", timeout=600,
                           json=_request(p.messages[0]["content"], p.cue, seed,
                                         f"router-{name}-{t}"))
            assert r.status_code == 200, r.text
            d = r.json()
            assert d["score"] == pytest.approx(table.signals[column][row], rel=1e-9, abs=1e-12), \
                (it.id, name)
            if name in ("disagreement", "se"):
                meanings.add(d["meaning"])
                assert d["meaning"] == rec["extra"]["meaning"]
        # the answer served when the edge keeps the query is the graded one
        c = httpx.post(server.url + "/chat/completions", timeout=600,
                       json=_request(p.messages[0]["content"], p.cue, seed, "router-se-1000"))
        assert c.status_code == 200, c.text
        body = c.json()
        assert body["confroute"]["routed_to"] == "edge"
        assert p.cue + body["choices"][0]["message"]["content"] == rec["answer"]
    # one task shows example calls, the other none: its calls come from the signature
    assert meanings == {"execution"}


def test_calibrate_an_online_policy_on_its_column_and_serve_names_other_sampling(built,
                                                                               capsys):
    from confroute import cli
    from confroute.server.config import from_dict, sampling_warnings

    table, _, path = built
    assert cli.main(["calibrate", "--router", "router-se", "--table", path,
                     "--cloud-share", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    t = out["threshold"]
    assert out["router"] == f"router-se-{t:g}" and t in table.signals["se"]
    assert out["calibration_share"] == pytest.approx(float((table.signals["se"] > t).mean()))
    entry = out["server_config_router"]
    assert entry["calibrated_sampling"]["n"] == SAMPLES
    same = {"routers": [entry], "edge": {"n_seq_max": SAMPLES + 1}, "limits": {"max_n": 1},
            "sampling": {"n": SAMPLES, "temperature": 0.7, "max_tokens": TOKENS}}
    assert sampling_warnings(from_dict(same)) == []
    other = dict(same, sampling={"n": SAMPLES, "temperature": 1.0, "max_tokens": TOKENS})
    (line,) = sampling_warnings(from_dict(other))
    assert "router 'se'" in line and "temperature: calibrated 0.7, served 1.0" in line
    # the table's edge is named with the thresholds; served on another, the server says so
    assert entry["calibrated_edge"] == table.weak == store.DEFAULT_EDGE
    assert sampling_warnings(from_dict(same), store.DEFAULT_EDGE) == []
    (line,) = sampling_warnings(from_dict(same), "smollm2-135m-instruct")
    assert ("calibrated on edge 'smollm2-135m-instruct-q8' and is served on "
            "'smollm2-135m-instruct'") in line
    assert cli.main(["calibrate", "--router", "router-sw", "--table", path,
                     "--cloud-share", "0.5"]) == 2
    assert "is not one" in capsys.readouterr().err
