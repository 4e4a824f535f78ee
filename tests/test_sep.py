"""`sep`: the semantic-entropy probe on the edge model's hidden state. Logic on given arrays;
training on real SE labels of SmolLM2 and scoring prompts the probe never saw."""
import json

import numpy as np
import pytest

from confroute.routers.sep import SEPRouter, best_split, binary_targets
from helpers.edge import count_prefills
from helpers.processes import THREADS


def test_best_split_is_the_least_squares_cut():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.2, 0.05, 30), rng.normal(1.5, 0.1, 20)])
    t = best_split(v)
    s = np.sort(v)

    def sse(cut):
        a, b = s[s <= cut], s[s > cut]
        return ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()

    brute = min(s[:-1], key=sse)
    assert t == brute and (v <= t).sum() == 30  # the cut falls between the two groups
    with pytest.raises(ValueError, match="distinct"):
        best_split([1.0, 1.0])


def test_binary_targets_and_their_errors():
    rows = [{"se_weak": x, "quality_weak": q} for x, q in [(0.0, 1), (0.1, 1), (1.2, 0),
                                                             (1.4, 0)]]
    y, split = binary_targets(rows, "se", "median")
    assert split == pytest.approx(0.65) and y.tolist() == [0, 0, 1, 1]
    y, split = binary_targets(rows, "se", 0.05)
    assert y.tolist() == [0, 1, 1, 1]
    y, split = binary_targets(rows, "error", "best")
    assert split is None and y.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="quality_weak"):
        binary_targets([{"se_weak": 0.1}], "error", "best")
    with pytest.raises(ValueError, match="se_weak"):
        binary_targets([{"se_weak": float("nan")}], "se", "best")
    with pytest.raises(ValueError, match="target"):
        binary_targets(rows, "accuracy", "best")
    with pytest.raises(ValueError, match="se_split"):
        binary_targets(rows, "se", "mean")
    for bad in [dict(target="x"), dict(layer="last"), dict(C=0), dict(layer=True)]:
        with pytest.raises(ValueError):
            SEPRouter(**bad)


# --- on the real model ---------------------------------------------------------------------
GOLD = {"What is the capital of France?": ["Paris"], "What is 2 + 2?": ["4", "four"],
        "Who wrote Hamlet?": ["Shakespeare"], "What colour is the sky on a clear day?": ["blue"],
        "How many legs does a spider have?": ["8", "eight"],
        "What is the largest planet?": ["Jupiter"], "What is the opposite of cold?": ["hot"],
        "What is the chemical symbol for gold?": ["Au"],
        "when did the eagles win last super bowl": ["2017"],
        "who sings the song i will survive": ["Gloria Gaynor"]}
TRAIN = list(GOLD) + [
    "Name a colour.", "Say hello.", "Tell me a random fact about any animal.",
    "Invent a name for a new planet.", "Write a line of a poem about rain.",
    "Describe a dream you might have.", "who won last year's ncaa women's basketball",
    "how many seasons of the bastard executioner are there",
    "what is the population of the town of ely", "Make up a word and define it.",
    "Give me a name for a pet dragon.", "What might the weather be like tomorrow somewhere?",
    "Suggest a random number.", "Pick any city in the world."]
UNSEEN = ["What is the capital of Italy?", "Invent a story title about a cat.",
          "who played the lead in the film the piano", "How many days are in a week?"]


@pytest.fixture(scope="module")
def se_rows(hidden_edge, embedder):
    """Real SE label rows, as the label job writes them (its se_fn on the edge model)."""
    from confroute.eval.label_job import JobConfig, scorer_se_fn
    from confroute.labels import grade_short_answer, se_row
    from confroute.confidence.scorer import ConfidenceScorer

    cfg = JobConfig(weak=hidden_edge.name, strong="cloud", n=4, max_tokens=16)
    se_fn = scorer_se_fn(hidden_edge, None, ConfidenceScorer(embedder), cfg)
    rows = []
    for i, p in enumerate(TRAIN):
        se, resp = se_fn("weak", p, i)
        # a made-up strong SE: these tests use only the edge's side of the row
        extra = {"quality_weak": grade_short_answer(resp, GOLD[p])} if p in GOLD else {}
        rows.append(se_row(p, cfg.weak, cfg.strong, se, 0.5, cfg.tau, resp, "", id=i, **extra))
    return rows


def test_probe_on_real_se_labels_scores_unseen_prompts(hidden_edge, se_rows, tmp_path):
    r = SEPRouter(edge=hidden_edge, target="se", se_split="median", layer="auto")
    r.fit(se_rows)
    assert 0 <= r.fitted_layer <= hidden_edge.n_layer
    assert len(r.info["cv_auroc_by_layer"]) == hidden_edge.n_layer + 1
    y, _ = binary_targets(se_rows, "se", "median")
    train_scores = r.score([row["prompt"] for row in se_rows])
    from confroute.eval.metrics import auroc

    # the probe fits its own training labels (a scrambled feature row would not)
    assert auroc(train_scores, 1 - y) > 0.9
    s = r.score(UNSEEN)
    assert s.shape == (4,) and np.all((s >= 0) & (s <= 1)) and np.ptp(s) > 0
    # the scores come from the hidden state read in the prompt's prefill
    h = hidden_edge.hidden_states([{"role": "user", "content": UNSEEN[0]}], r.layers)
    # (to the last bits: numpy's BLAS may sum a batch of 4 and a batch of 1 in other orders)
    assert r.score_hidden(h[None])[0] == pytest.approx(s[0], rel=1e-12, abs=0)
    # save / load: the same scores, the edge checked
    r.threshold = 0.5
    r.save(tmp_path / "sep")
    config = json.loads((tmp_path / "sep" / "router.json").read_text())
    assert config["name"] == "sep" and config["edge"]["layer"] == r.fitted_layer
    from confroute.routers import Router

    back = Router.load(tmp_path / "sep", edge=hidden_edge)
    np.testing.assert_array_equal(back.score(UNSEEN), s)


def test_error_target_and_a_fixed_layer(hidden_edge, se_rows):
    graded = [row for row in se_rows if "quality_weak" in row]
    y, _ = binary_targets(graded, "error", "best")
    if len(np.unique(y)) < 2:
        pytest.skip("SmolLM2 answered every graded prompt right, or every one wrong")
    with pytest.raises(ValueError, match="quality_weak"):
        SEPRouter(edge=hidden_edge, target="error").fit(se_rows)  # some rows ungraded
    r = SEPRouter(edge=hidden_edge, target="error", layer=-1).fit(graded)
    assert r.fitted_layer == hidden_edge.n_layer and "cv_auroc_by_layer" not in r.info
    assert r.score(UNSEEN[:2]).shape == (2,)


def test_router_string_serves_and_calibrates_sep(hidden_edge, se_rows, tmp_path, monkeypatch,
                                                 embedder):
    from confroute.controller import Controller, Decision
    from confroute.routers.calibrate import calibrate
    from confroute.decision.names import RouterPolicy
    from confroute.confidence.scorer import ConfidenceScorer

    r = SEPRouter(edge=hidden_edge, se_split="median", layer=12).fit(se_rows)
    cal = calibrate(r, TRAIN, 0.5, heldout=UNSEEN)
    assert abs(cal.calibration_share - 0.5) <= 1 / len(TRAIN)
    assert cal.n_heldout == 4
    r.save(tmp_path / "sep")
    monkeypatch.setenv("CONFROUTE_ROUTERS", str(tmp_path))
    policy = RouterPolicy.from_string("router-sep")   # the calibrated threshold
    assert policy.threshold == pytest.approx(cal.threshold)
    # the Controller's path supplies the hidden state from its own edge model
    ctl = Controller(hidden_edge, None, policy, ConfidenceScorer(embedder))
    d, conf = ctl.decide([{"role": "user", "content": UNSEEN[1]}])
    assert isinstance(d, Decision) and conf is None and d.n_samples == 0
    assert d.route == ("cloud" if d.score > cal.threshold else "edge")
    assert d.score == r.score([UNSEEN[1]])[0]
    with pytest.raises(ValueError, match="hidden state"):   # no evidence: the path's job
        policy.decide(UNSEEN[1])


def test_sep_refuses_another_edge_and_bad_hidden(hidden_edge, se_rows, tmp_path):
    r = SEPRouter(edge=hidden_edge, layer=3).fit(se_rows)
    with pytest.raises(ValueError, match=r"\[n, 576\]"):
        r.score_hidden(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="hidden must be"):
        SEPRouter(edge=hidden_edge).fit(se_rows, hidden=np.zeros((3, 2, 2)))
    r.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "router.json").read_text())
    cfg["edge"]["name"] = "another-model"
    (tmp_path / "s" / "router.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="trained on 'another-model'"):
        SEPRouter.load(tmp_path / "s", edge=hidden_edge)
    with pytest.raises(ValueError, match="not trained"):
        SEPRouter(edge=hidden_edge).score(["x"])


def test_decision_path_reads_the_edges_hidden_state_for_sep(hidden_edge, se_rows, embedder):
    from confroute.decision import path as routing
    from confroute.decision.names import RouterPolicy
    from confroute.confidence.scorer import ConfidenceScorer
    from confroute.decision.edge import EdgeSupplier

    r = SEPRouter(edge=hidden_edge, se_split="median", layer=12).fit(se_rows)
    policy = RouterPolicy(r, 0.5)
    q = routing.make_query([{"role": "user", "content": UNSEEN[2]}])
    d, ev = routing.decide(policy, q, EdgeSupplier(hidden_edge, ConfidenceScorer(embedder)))
    assert ev.hidden.shape == (hidden_edge.n_layer + 1, hidden_edge.n_embd)
    assert d.n_samples == 0 and d.score == r.score([UNSEEN[2]])[0]
    assert d.route == ("cloud" if d.score > 0.5 else "edge")
    with pytest.raises(ValueError, match="hidden state of shape"):
        r.score_evidence(["x"], [routing.Evidence(hidden=np.zeros((3, 576)))])


@pytest.mark.system
def test_server_serves_sep_and_adaptive_se_with_a_samples_histogram(hidden_edge, se_rows,
                                                                    tmp_path):
    import openai
    from helpers.servers import confroute_server

    r = SEPRouter(edge=hidden_edge, se_split="median", layer=12).fit(se_rows)
    r.save(tmp_path / "sep")
    cfg = {"edge": {"n_ctx": 512, "n_seq_max": 9, "n_threads": THREADS},
           # never called: both routes below keep every query on the edge
           "cloud": {"base_url": "http://127.0.0.1:9/v1", "model": "none", "timeout_s": 5},
           "routers": [{"name": "se_adaptive", "thresholds": [100], "samples": 8},
                       {"name": "sep", "path": str(tmp_path / "sep"), "thresholds": [1.0]}]}
    msgs = [{"role": "user", "content": UNSEEN[0]}]
    with confroute_server(cfg, tmp_path) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="unused")
        a = client.chat.completions.create(model="router-se_adaptive-100", max_tokens=8,
                                           messages=msgs)
        facts = a.model_extra["confroute"]
        # SE of 8 samples is at most ln 8 < 100: settled after the first round of 3
        assert facts["routed_to"] == "edge" and facts["n_samples"] == 3
        b = client.chat.completions.create(model="router-sep-1", max_tokens=8, messages=msgs)
        facts = b.model_extra["confroute"]
        assert facts["routed_to"] == "edge" and facts["n_samples"] == 0
        assert facts["score"] == pytest.approx(r.score([UNSEEN[0]])[0], abs=1e-9)
        assert b.choices[0].message.content
        h = "confroute_edge_samples_per_decision"
        assert srv.metric(f'{h}_count{{router="se_adaptive"}}') == 1
        assert srv.metric(f'{h}_sum{{router="se_adaptive"}}') == 3
        assert srv.metric(f'{h}_bucket{{router="se_adaptive",le="3"}}') == 1
        assert srv.metric(f'{h}_bucket{{router="se_adaptive",le="2"}}') == 0
        assert srv.metric(f'{h}_count{{router="sep"}}') == 1
        assert srv.metric(f'{h}_sum{{router="sep"}}') == 0


def test_a_kept_sep_query_reads_its_prompt_once(hidden_edge, se_rows, embedder, monkeypatch):
    # The decision reads the prompt's hidden state in one prefill; the edge's answer goes on
    # from it: one prefill for the whole request, and the same answer as without the decision.
    from confroute.controller import Controller
    from confroute.decision.names import RouterPolicy
    from confroute.confidence.scorer import ConfidenceScorer

    msgs = [{"role": "user", "content": UNSEEN[0]}]
    plain = hidden_edge.generate(msgs, max_tokens=12).text
    r = SEPRouter(edge=hidden_edge, se_split="median", layer=12).fit(se_rows)
    ctl = Controller(hidden_edge, None, RouterPolicy(r, 1.0), ConfidenceScorer(embedder))
    prefills = count_prefills(hidden_edge, monkeypatch)
    out = ctl.chat(msgs, max_tokens=12)
    assert out.routed_to == "edge" and out.n_samples == 0
    assert out.answer == plain and len(prefills) == 1
