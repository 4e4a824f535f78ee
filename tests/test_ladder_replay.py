"""The two-stage policies on a recorded table (confroute.eval.ladder): thresholds for a share
by quantiles, the replay curve recalibrated at each share, and eval replay's ladder: and
cascade: specs, on a four-prompt table computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from confroute.decision.names import policy_from_string
from confroute.eval.ladder import StagedScores, cascade_for_share, ladder_for_share
from confroute.eval.replay import replay
from confroute.eval.table import OutcomeTable

CHEAP = [0.9, 0.7, 0.5, 0.1]      # higher = less sure (the answer's -mean logprob)
SAMPLED = [0.0, 1.0, 0.2, 0.8]    # the share of samples that disagree
QW = [0.0, 1.0, 0.0, 1.0]
QS = [1.0, 1.0, 1.0, 1.0]


def test_the_ladder_for_a_share_by_hand():
    # share 0.5, budget 0.5 of 4 prompts: the window is 2 wide, centred on position 2 of the
    # cheap ranking 0.9 0.7 | 0.5 0.1 -> positions 1..2: 0.9 goes up, 0.7 and 0.5 are
    # sampled, 0.1 stays; one more to the cloud among the band's (1.0, 0.2): T = 0.2
    c = ladder_for_share(CHEAP, SAMPLED, 0.5, 0.5)
    assert (c.lo, c.hi, c.threshold) == (0.1, 0.7, 0.2)
    assert c.cloud.tolist() == [True, True, False, False]
    assert c.sampled.tolist() == [False, True, True, False]
    assert (c.cloud_share, c.sampled_share) == (0.5, 0.5)
    spec = c.router("answer_logprob", "disagreement")
    assert spec == "router-answer_logprob-0.1:0.7+disagreement-0.2"
    assert repr(policy_from_string(spec)) == "Staged(answer_logprob-0.1:0.7+disagreement-0.2)"
    # at the ends the window moves inside the ranking
    top = ladder_for_share(CHEAP, SAMPLED, 0.0, 0.5)
    assert (top.lo, top.hi, top.threshold, top.cloud_share) == (0.5, 0.9, 1.0, 0.0)
    bottom = ladder_for_share(CHEAP, SAMPLED, 1.0, 0.5)
    assert (bottom.lo, bottom.hi, bottom.threshold) == (None, 0.5, 0.2)
    assert bottom.cloud.tolist() == [True, True, False, True]
    assert bottom.router("a", "b") == "router-a-0.5+b-0.2"


def test_cascade_routing_for_a_share_by_hand():
    # the router's top 1 of 4 (skip 0.25) goes up unsampled; every other prompt is sampled
    # and the threshold brings the share to 0.5: of (1.0, 0.2, 0.8) one more goes up: T = 0.8
    c = cascade_for_share(CHEAP, SAMPLED, 0.5, 0.25)
    assert (c.lo, c.hi, c.threshold) == (None, 0.7, 0.8)
    assert c.cloud.tolist() == [True, True, False, False] and c.sampled_share == 0.75
    assert c.router("sw", "disagreement") == "router-sw-0.7+disagreement-0.8"
    # below the skip share the router sends up only the share itself
    assert cascade_for_share(CHEAP, SAMPLED, 0.0, 0.25).cloud_share == 0.0


def test_undefined_scores_escalate_and_bad_settings_are_refused():
    c = ladder_for_share([math.nan, 0.7, 0.5, 0.1], SAMPLED, 0.25, 0.5)
    assert c.cloud[0] and not c.sampled[0] and c.hi == 0.7
    c = ladder_for_share(CHEAP, [0.0, math.nan, 0.2, 0.8], 0.5, 0.5)
    assert c.cloud[1] and c.sampled[1]          # sampled, undefined: the cloud
    with pytest.raises(ValueError, match="sample budget must lie in"):
        ladder_for_share(CHEAP, SAMPLED, 0.5, 1.5)
    with pytest.raises(ValueError, match="cloud share must lie in"):
        cascade_for_share(CHEAP, SAMPLED, -0.1, 0.2)
    with pytest.raises(ValueError, match="one score per prompt"):
        ladder_for_share(CHEAP, SAMPLED[:3], 0.5, 0.5)


def test_the_recalibrated_curve_by_hand():
    # grid 0, 0.5, 1 at budget 0.5:
    #   S=0:   nothing up (T above the band's scores): share 0, quality 0.5
    #   S=0.5: prompts 0 and 1 up (above): share 0.5, quality (1 + 1 + 0 + 1) / 4 = 0.75
    #   S=1:   0 and 1 above the band, 3 of the band (0.8 > 0.2): share 0.75, quality 0.75
    # plus all-edge (0, 0.5) and all-cloud (1, 1)
    share, quality, target, sampled = StagedScores(
        "ladder", np.array(CHEAP), np.array(SAMPLED), 0.5).curve(QW, QS, [0.0, 0.5, 1.0])
    assert share.tolist() == [0.0, 0.0, 0.5, 0.75, 1.0]
    assert quality.tolist() == [0.5, 0.5, 0.75, 0.75, 1.0]
    assert target.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert sampled.tolist() == [0.5, 0.5, 0.5]


def _table():
    return OutcomeTable([f"p{i}" for i in range(4)], ["w", "s"], np.array([QW, QS]).T, "w",
                        "s", signals={"answer_logprob": np.array(CHEAP),
                                      "disagreement": np.array(SAMPLED)})


def test_eval_replay_ladder_spec_by_hand():
    # PGR on the curve above (q_weak 0.5, q_strong 1): 0, 0, 0.5, 0.5, 1 at shares 0, 0, 0.5,
    # 0.75, 1 -> APGR = 0.5 * 0.25 + 0.25 * 0.5 + 0.25 * 0.75 = 0.4375; PGR 0.5 first at 0.5
    spec = "ladder:answer_logprob,disagreement,0.5"
    rep = replay(_table(), [spec, "signal:disagreement"], n_points=3, shares=(0.5,),
                 n_boot=20, compare=[(spec, "signal:disagreement")])
    m = rep.results[0].metrics
    assert rep.results[0].label == spec
    assert m["apgr"] == pytest.approx(0.4375) and m["cpt50"] == pytest.approx(0.5)
    assert m["quality_at"] == {"0.5": 0.75}
    assert m["staged"]["sampled_share"] == 0.5 and m["staged"]["sampled_at"] == {"0.5": 0.5}
    assert m["staged"]["budget"] == 0.5 and m["staged"]["first_from"] == "signal"
    assert math.isnan(m["uncertainty"]["auroc"]) and math.isnan(m["risk"]["aurc"])
    # 95% of all-cloud (0.95) on the segment (0.75, 0.75) -> (1, 1): at share 0.95
    assert m["risk"]["iso_quality"]["cloud_share"] == pytest.approx(0.95)
    assert m["ci"]["n_boot"] == 20 and "apgr" in m["ci"]
    c = rep.comparisons[0]
    assert c["a"] == spec and c["apgr"]["n"] > 0 and "ci" in c["apgr"]
    assert rep.to_json()["routers"][spec]["staged"]["kind"] == "ladder"


def test_eval_replay_cascade_spec_scores_a_router(tmp_path):
    # a router replay can score (a registered one here; a saved-router folder alike)
    rep = replay(_table(), ["cascade:random:seed=1,disagreement,0.25"], n_points=5)
    m = rep.results[0].metrics
    assert m["staged"]["first_from"] == "router" and m["staged"]["skip"] == 0.25
    assert 0.0 <= m["apgr"] <= 1.0
    # the sampled share falls as the router skips more (up to 0.25)
    assert m["staged"]["sampled_at"]["0.1"] > m["staged"]["sampled_at"]["0.8"] == 0.75
    with pytest.raises(ValueError, match="ladder:FIRST,SECOND,BUDGET"):
        replay(_table(), ["ladder:answer_logprob,disagreement"])
    with pytest.raises(ValueError, match="no signal|unknown signal|has no"):
        replay(_table(), ["ladder:answer_logprob,nosuch,0.3"])


def test_eval_replay_cli_prints_the_ladder_and_its_sampling(tmp_path, capsys):
    import json

    from confroute import cli

    t = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    rows = [(i, int(rng.random() < 0.5), 1, rng.random(), rng.integers(0, 6) / 5)
            for i in range(40)]
    t.write_text("prompt,edge,cloud,signal:answer_logprob,signal:disagreement\n" + "".join(
        f"p{i},{a},{b},{c:.4f},{d:.1f}\n" for i, a, b, c, d in rows))
    spec = "ladder:answer_logprob,disagreement,0.35"
    out = tmp_path / "o"
    rc = cli.main(["eval", "replay", "--table", str(t), "--router", spec, "--router",
                   "signal:disagreement", "--compare", spec, "signal:disagreement",
                   "--bootstrap", "20", "--no-plot", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert f"{spec}: samples 3" in cap.out and "budget 0.35" in cap.out
    assert f"{spec} - signal:disagreement (paired, 20 resamples): APGR" in cap.out
    m = json.loads((out / "metrics.json").read_text())
    assert m["routers"][spec]["staged"]["sampled_share"] == pytest.approx(0.35, abs=0.03)
    assert m["comparisons"][0]["a"] == spec


def test_the_printed_router_string_routes_the_table_as_calibrated():
    # continuous scores: the thresholds print as short decimals and still route every prompt
    # of the table as the calibration did, through the parsed policy's own stage rule
    rng = np.random.default_rng(3)
    cheap = rng.gamma(2.0, 0.05, 200)
    sampled = rng.integers(0, 6, 200) / 5
    for share, budget in [(0.1, 0.2), (0.3, 0.35), (0.7, 0.5), (0.95, 0.2)]:
        c = ladder_for_share(cheap, sampled, share, budget)
        spec = c.router("answer_logprob", "disagreement")
        assert len(spec) < 60, spec
        first, last = policy_from_string(spec).stages
        routes = [first.verdict(x) or ("cloud" if not y <= last.hi else "edge")
                  for x, y in zip(cheap, sampled)]
        assert [r == "cloud" for r in routes] == c.cloud.tolist()
        assert [first.verdict(x) is None for x in cheap] == c.sampled.tolist()
        assert abs(c.cloud_share - share) < 0.1 and c.sampled_share <= budget + 1e-9


def test_confroute_calibrate_prints_the_ladder_and_its_server_entry(tmp_path, capsys):
    import json

    from confroute import cli

    t = tmp_path / "t.csv"
    t.write_text("prompt,edge,cloud,signal:answer_logprob,signal:disagreement\n" + "".join(
        f"p{i},{a:g},{b:g},{c},{d}\n" for i, (a, b, c, d) in enumerate(zip(QW, QS, CHEAP,
                                                                           SAMPLED))))
    rc = cli.main(["calibrate", "--router", "router-answer_logprob+disagreement", "--table",
                   str(t), "--cloud-share", "0.5", "--sample-budget", "0.5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["router"] == "router-answer_logprob-0.1:0.7+disagreement-0.2"
    assert (out["calibration_share"], out["sampled_share"]) == (0.5, 0.5)
    assert out["server_config_routers"] == [{"name": "answer_logprob-0.1:0.7+disagreement",
                                             "thresholds": [0.2], "calibrated_sampling": {}}]
    rc = cli.main(["calibrate", "--router", "router-answer_logprob+disagreement", "--table",
                   str(t), "--cloud-share", "0.5"])
    assert rc == 2 and "--sample-budget B (the ladder) or --skip S" in capsys.readouterr().err


class _Lookup:
    """A saved query router in miniature (no embedder): a stored score per prompt."""

    @staticmethod
    def make():
        import json
        import os

        from confroute.routers.base import Router

        class Lookup(Router):
            name = "lookup_test"

            def __init__(self, scores=None):
                self.scores = scores or {}

            def score(self, prompts):
                return np.array([self.scores[p] for p in prompts], np.float64)

            def save(self, directory):
                os.makedirs(directory, exist_ok=True)
                with open(os.path.join(directory, "router.json"), "w") as f:
                    json.dump({"name": self.name, "scores": self.scores}, f)

            @classmethod
            def load(cls, directory, **kwargs):
                with open(os.path.join(directory, "router.json")) as f:
                    return cls(json.load(f)["scores"])

        return Lookup


def test_cascade_from_a_saved_router_folder(tmp_path, monkeypatch, capsys):
    import json

    from confroute import cli
    from confroute.routers import base

    Lookup = _Lookup.make()
    monkeypatch.setitem(base.REGISTRY, Lookup.name, Lookup)
    folder = tmp_path / "qr"
    Lookup({f"p{i}": s for i, s in enumerate(CHEAP)}).save(folder)
    # replay: the router's top 1 of 4 unanswered, disagreement ranks the rest (by hand above)
    rep = replay(_table(), [f"cascade:{folder},disagreement,0.25"], n_points=3, shares=(0.5,))
    m = rep.results[0].metrics
    assert m["staged"]["first_from"] == "router" and m["quality_at"] == {"0.5": 0.75}
    # calibrate prints the router string and the entries that serve it
    t = tmp_path / "t.csv"
    t.write_text("prompt,edge,cloud,signal:disagreement\n" + "".join(
        f"p{i},{a:g},{b:g},{d}\n" for i, (a, b, d) in enumerate(zip(QW, QS, SAMPLED))))
    rc = cli.main(["calibrate", "--router", f"router-{folder}+disagreement", "--table",
                   str(t), "--cloud-share", "0.5", "--skip", "0.25", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["router"] == f"router-{folder}-0.7+disagreement-0.8"
    assert out["server_config_routers"] == [
        {"name": "qr", "path": str(folder), "thresholds": [0.7]},
        {"name": "qr-0.7+disagreement", "thresholds": [0.8], "calibrated_sampling": {}}]
    staged = policy_from_string(out["router"])      # the folder loads as the first stage
    assert staged.stages[0].policy.router.name == "lookup_test"
    assert staged.stages[0].hi == 0.7 and staged.threshold == 0.8
