"""SE preference labels (Eq. 3-4), accuracy labels, label files, and the resumable job."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from confroute.eval.label_job import JobConfig, run_label_job
from confroute.labels import (label_counts, make_row, outcome_rows, pair_targets, read_labels,
                              read_prompts, se_delta, se_row, se_winner)
from helpers.labels import CONFIG, PROMPTS, fake_se


# ---------------------------------------------------------------- Eq. 3-4 on hand-made pairs

@pytest.mark.parametrize("se_strong, se_weak, delta, winner", [
    (1.0, 2.0, 1.0, "strong"),     # |(1-2)/1| = 1 > 0.1, strong has lower SE
    (2.0, 1.0, 0.5, "weak"),       # |(2-1)/2| = 0.5, weak has lower SE
    (1.0, 1.05, 0.05, "tie"),      # 0.05 <= tau
    (1.0, 0.95, 0.05, "tie"),
    (2.0, 2.0, 0.0, "tie"),
    (0.0, 0.0, 0.0, "tie"),        # both certain: 0/0 is defined as a tie
    (0.0, 0.3, np.inf, "strong"),  # only the strong model is certain
    (0.5, 0.0, 1.0, "weak"),       # only the weak model is certain
])
def test_eq3_eq4_hand_made(se_strong, se_weak, delta, winner):
    assert se_delta(se_strong, se_weak) == pytest.approx(delta)
    assert se_winner(se_strong, se_weak, tau=0.1) == winner


def test_tau_moves_the_tie_band_and_arrays_work():
    s = np.array([1.0, 1.0, 1.0])
    w = np.array([1.2, 1.4, 0.7])  # delta 0.2, 0.4, 0.3
    assert list(se_winner(s, w, tau=0.1)) == ["strong", "strong", "weak"]
    assert list(se_winner(s, w, tau=0.25)) == ["tie", "strong", "weak"]
    assert list(se_winner(s, w, tau=1.0)) == ["tie", "tie", "tie"]
    assert se_winner(2.0, 2.5, tau=0.25) == "tie"  # delta == tau exactly is not > tau
    assert se_winner(2.0, 2.5, tau=0.2) == "strong"


@pytest.mark.parametrize("bad", [-0.1, np.nan, np.inf])
def test_bad_entropies_are_refused(bad):
    with pytest.raises(ValueError, match="se_weak"):
        se_winner(1.0, bad)


def test_se_row_schema():
    row = se_row("q?", "edge", "cloud", se_weak=1.2, se_strong=0.3, tau=0.1,
                 response_weak="a", response_strong="b")
    assert row["model_a"] == "edge" and row["model_b"] == "cloud"
    assert (row["winner_model_a"], row["winner_model_b"], row["winner_tie"]) == (0, 1, 0)
    assert row["delta"] == pytest.approx(3.0) and row["se_weak"] == 1.2
    assert row["response_b"] == "b" and row["label_source"] == "se"
    json.dumps(row)  # JSON-serializable, also with delta = inf
    assert json.loads(json.dumps(se_row("q", "e", "c", 0.5, 0.0)))["delta"] == "inf"


def test_accuracy_labels_strong_wins_only_where_only_it_is_correct():
    rows = outcome_rows(["a", "b", "c", "d"], [0, 1, 0, 1], [1, 0, 0, 1], "edge", "cloud")
    prompts, y, strong, weak = pair_targets(rows)
    assert (strong, weak) == ("cloud", "edge")
    assert y.tolist() == [1.0, 0.0, 0.5, 0.5]
    assert label_counts(rows) == {"strong": 1, "weak": 1, "tie": 2}
    with pytest.raises(ValueError, match="one quality per prompt"):
        outcome_rows(["a"], [0, 1], [1, 0], "edge", "cloud")


def test_pair_targets_reads_either_order_and_refuses_mixed_pairs():
    rows = [make_row("p1", "w", "s", "strong"),
            {**make_row("p2", "w", "s", "weak"), "model_a": "s", "model_b": "w",
             "winner_model_a": 0, "winner_model_b": 1}]  # swapped order, weak (now b) won
    _, y, _, _ = pair_targets(rows)
    assert y.tolist() == [1.0, 0.0]
    rows.append(make_row("p3", "w", "x", "tie"))
    with pytest.raises(ValueError, match="more than one pair"):
        pair_targets(rows)
    prompts, y, _, _ = pair_targets(rows, strong="s", weak="w")
    assert prompts == ["p1", "p2"]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_label_file_errors(tmp_path):
    with pytest.raises(ValueError, match="holds no label rows"):
        read_labels(_write(tmp_path / "empty.jsonl", []))
    two = {**make_row("p", "w", "s", "strong"), "winner_model_a": 1}
    with pytest.raises(ValueError, match=r"two\.jsonl: line 2: exactly one of"):
        read_labels(_write(tmp_path / "two.jsonl", [make_row("q", "w", "s", "tie"), two]))
    with pytest.raises(ValueError, match="lacks winner_tie"):
        bad = make_row("p", "w", "s", "tie")
        del bad["winner_tie"]
        read_labels(_write(tmp_path / "missing.jsonl", [bad]))
    (tmp_path / "notjson.jsonl").write_text("{oops\n")
    with pytest.raises(ValueError, match="notjson.jsonl: line 1: not valid JSON"):
        read_labels(tmp_path / "notjson.jsonl")
    with pytest.raises(ValueError, match="no label file"):
        read_labels(tmp_path / "absent.jsonl")


def test_read_prompts(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"question": "a?"}\n\n{"question": "b?"}\n')
    assert read_prompts(tmp_path / "q.jsonl") == ["a?", "b?"]
    (tmp_path / "t.txt").write_text("x\n\ny\n")
    assert read_prompts(tmp_path / "t.txt") == ["x", "y"]
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl: line 1: no 'prompt'"):
        read_prompts(tmp_path / "bad.jsonl")


# ---------------------------------------------------------------- the resumable job

def _rows_without_timing(path):
    rows = [json.loads(line) for line in open(path)]
    for r in rows:
        r.pop("seconds")
    return rows


def test_job_writes_one_row_per_prompt_following_eq4(tmp_path):
    out = tmp_path / "labels.jsonl"
    res = run_label_job(PROMPTS, out, CONFIG, fake_se, progress=False)
    assert (res.total, res.done_before, res.written) == (12, 0, 12)
    rows = read_labels(out)
    assert [r["id"] for r in rows] == list(range(12))
    for r in rows:
        assert r["winner_model_b"] == (se_winner(r["se_strong"], r["se_weak"], 0.1) == "strong")
    again = run_label_job(PROMPTS, out, CONFIG, fake_se, progress=False)
    assert again.written == 0 and len(read_labels(out)) == 12


def test_job_interrupted_by_an_error_resumes_to_the_same_rows(tmp_path):
    full = tmp_path / "full.jsonl"
    run_label_job(PROMPTS, full, CONFIG, fake_se, progress=False)
    calls = []

    def failing(role, prompt, seed):
        calls.append(seed)
        if len(calls) > 9:  # dies in the 5th item, after 4 rows
            raise KeyboardInterrupt
        return fake_se(role, prompt, seed)

    part = tmp_path / "part.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_label_job(PROMPTS, part, CONFIG, failing, progress=False)
    assert len(read_labels(part)) == 4
    res = run_label_job(PROMPTS, part, CONFIG, fake_se, progress=False)
    assert (res.done_before, res.written) == (4, 8)
    assert _rows_without_timing(part) == _rows_without_timing(full)


def test_job_killed_mid_write_resumes_without_loss_or_repeat(tmp_path):
    """A real SIGKILL of a job process, then a resume: same rows as an uninterrupted run."""
    full = tmp_path / "full.jsonl"
    run_label_job(PROMPTS, full, CONFIG, fake_se, progress=False)
    out = tmp_path / "killed.jsonl"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from helpers.labels import fake_se, PROMPTS, CONFIG
        from confroute.eval.label_job import run_label_job
        import os, threading
        def slow(role, prompt, seed):
            # after three rows the job blocks until it is killed: no race with the kill
            if os.path.exists({str(out)!r}) and open({str(out)!r}).read().count("\\n") >= 3:
                threading.Event().wait()
            return fake_se(role, prompt, seed)
        run_label_job(PROMPTS, {str(out)!r}, CONFIG, slow, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if out.exists() and out.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with open(out, "a") as f:
        f.write('{"prompt": "half a ro')  # what a kill inside a write leaves behind
    done = out.read_text().count("\n")
    assert 3 <= done < 12
    res = run_label_job(PROMPTS, out, CONFIG, fake_se, progress=False)
    assert res.done_before == done and res.written == 12 - done
    assert sorted(_rows_without_timing(out), key=lambda r: r["id"]) == _rows_without_timing(full)


def test_job_refuses_other_options_and_foreign_files(tmp_path):
    out = tmp_path / "l.jsonl"
    run_label_job(PROMPTS[:3], out, CONFIG, fake_se, progress=False)
    with pytest.raises(ValueError, match="other options"):
        run_label_job(PROMPTS[:3], out, JobConfig("edge", "cloud", n=5), fake_se, progress=False)
    foreign = _write(tmp_path / "foreign.jsonl", [make_row("p", "w", "s", "tie")])
    with pytest.raises(ValueError, match="not a label job's file"):
        run_label_job(PROMPTS, foreign, CONFIG, fake_se, progress=False)
    with pytest.raises(ValueError, match="n must be >= 2"):
        JobConfig("edge", "cloud", n=1)
    with pytest.raises(ValueError, match="no prompts"):
        run_label_job([], tmp_path / "x.jsonl", CONFIG, fake_se, progress=False)
