"""Loaders: the shared/data layout (real dev files when present, hand-made copies otherwise)
and the plain user format, with the errors bad input must give."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from confroute.eval.data import (gsm8k_items, load_benchmark, load_mt_bench_questions,
                                 load_table, mmlu_items)

W, S = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def _data_dir():
    d = os.environ.get("CONFROUTE_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return Path(d) if Path(d, "README.md").exists() else None


DATA = _data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="shared/data not found (set CONFROUTE_DATA)")


def make_layout(root: Path) -> Path:
    """A tiny folder laid out like shared/data, with made-up rows."""
    (root / "gsm8k").mkdir(parents=True)
    (root / "gsm8k" / "routellm_responses_dev.csv").write_text(
        f'prompt,{W},{S},{W}_response\n'
        '"What is 1+1?",True,True,"2"\n"What is 2*3?",False,True,"5"\n'
        '"Tricky, multi\nline?",False,False,"x"\n"Contaminated one",True,False,"y"\n')
    (root / "gsm8k" / "routellm_contaminated_prompts.jsonl").write_text(
        json.dumps({"eval_prompt": "Contaminated one"}) + "\n")
    (root / "gsm8k" / "test_dev.jsonl").write_text(
        json.dumps({"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}) + "\n"
        + json.dumps({"question": "What is 2*3?", "answer": "#### 6"}) + "\n")
    m = root / "mmlu" / "routellm_responses_dev"
    m.mkdir(parents=True)
    (m / "mmlu_a.csv").write_text(f"prompt,{W},{S}\nQ1,True,True\nQ2,False,True\n")
    (m / "mmlu_b.csv").write_text(f"prompt,{W},{S}\nQ3,False,False\n")
    (root / "mmlu" / "answer_key_dev.jsonl").write_text(
        json.dumps({"subject": "a", "prompt": "Q1", "answer": "B"}) + "\n")
    mt = root / "mt_bench"
    mt.mkdir()
    qs = [{"question_id": 1, "category": "writing", "turns": ["Write.", "Again."]},
          {"question_id": 2, "category": "math", "turns": ["2+2?", "3+3?"]}]
    (mt / "question_dev.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    js = [{"question_id": q, "model": m, "turn": t, "score": s}
          for q, m, t, s in [(1, W, 1, 6), (1, W, 2, 8), (1, S, 1, 9), (1, S, 2, 10),
                             (2, W, 1, 2), (2, W, 2, 3), (2, S, 1, 9.5), (2, S, 2, 10)]]
    (mt / "routellm_judgements_dev.jsonl").write_text("".join(json.dumps(j) + "\n" for j in js))
    return root


def test_layout_copy_with_other_rows(tmp_path):
    root = make_layout(tmp_path / "data")
    g = load_benchmark("gsm8k", root)
    assert g.prompts == ("What is 1+1?", "What is 2*3?", "Tricky, multi\nline?")  # 1 excluded
    assert (g.weak, g.strong) == (W, S)
    assert g.q_weak.tolist() == [1, 0, 0] and g.q_strong.tolist() == [1, 1, 0]
    assert len(load_benchmark("gsm8k", root, include_contaminated=True)) == 4
    m = load_benchmark("mmlu", root)
    assert m.prompts == ("Q1", "Q2", "Q3") and m.groups == ("a", "a", "b")
    t = load_benchmark("mt-bench", root)
    assert t.prompts == ("Write.", "2+2?")  # routed on the first turn
    assert t.q_weak.tolist() == [7.0, 2.5] and t.q_strong.tolist() == [9.5, 9.75]
    assert gsm8k_items(root)[0].reference == "2"
    assert mmlu_items(root)[0].reference == "B"


def expected_rows(bench: str, root: Path) -> int:
    """Rows a benchmark should load, counted straight from the files (not our loader): all
    rows minus those whose prompt is on the contamination list."""
    import csv

    csv.field_size_limit(1 << 30)
    sub = {"gsm8k": "gsm8k", "mmlu": "mmlu", "mt-bench": "mt_bench"}[bench]
    bad = {json.loads(l)["eval_prompt"] for l in
           open(root / sub / "routellm_contaminated_prompts.jsonl", encoding="utf-8") if l.strip()}
    if bench == "mt-bench":
        qs = [json.loads(l) for l in open(root / sub / "question_dev.jsonl") if l.strip()]
        return sum(not any(t in bad for t in q["turns"]) for q in qs)
    files = ([root / "gsm8k" / "routellm_responses_dev.csv"] if bench == "gsm8k" else
             sorted((root / "mmlu" / "routellm_responses_dev").glob("*.csv")))
    return sum(r["prompt"] not in bad for f in files
               for r in csv.DictReader(open(f, newline="", encoding="utf-8")))


@needs_data
def test_real_dev_files_load():
    g = load_benchmark("gsm8k", DATA)
    assert len(g) == expected_rows("gsm8k", DATA) and g.is_binary
    assert len(load_benchmark("gsm8k", DATA, include_contaminated=True)) > len(g)
    m = load_benchmark("mmlu", DATA)
    assert len(m) == expected_rows("mmlu", DATA)
    assert len(set(m.groups)) == len(list((DATA / "mmlu" / "routellm_responses_dev").glob("*.csv")))
    t = load_benchmark("mt-bench", DATA)
    assert len(t) == expected_rows("mt-bench", DATA) and t.scale == (1.0, 10.0)
    assert t.quality.min() >= 1 and t.quality.max() <= 10
    qs = load_mt_bench_questions(DATA)
    ref_ids = {json.loads(l)["question_id"] for l in
               open(DATA / "mt_bench" / "reference_answer_gpt-4.jsonl") if l.strip()}
    assert [q.question_id for q in qs if q.references] == [
        q.question_id for q in qs if q.question_id in ref_ids]


def test_user_table_csv_and_jsonl(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("prompt,edge,cloud\nhi,0,1\nho,1,1\nhu,0.5,0\n")
    t = load_table(p)
    assert (t.weak, t.strong) == ("edge", "cloud")  # the lower mean is the weak one
    j = tmp_path / "t.jsonl"
    j.write_text("".join(json.dumps({"prompt": p_, "edge": e, "cloud": c}) + "\n"
                         for p_, e, c in [("a", True, 7), ("b", False, 9)]))
    t2 = load_table(j)
    assert t2.q_weak.tolist() == [1.0, 0.0] and t2.q_strong.tolist() == [7, 9]
    # A table saved by us reads back the same.
    t.save(tmp_path / "back.csv")
    back = load_table(tmp_path / "back.csv", weak="edge", strong="cloud")
    np.testing.assert_array_equal(back.quality, t.quality)
    assert back.prompts == t.prompts


@pytest.mark.parametrize("content, kw, match", [
    ("question,edge,cloud\nhi,0,1\n", {}, r"t\.csv: row 1 \(line 2\): no 'prompt' column"),
    ("prompt,edge,cloud\nhi,0,1\nho,maybe,1\n", {},
     r"t\.csv: row 2 \(line 3\): column 'edge': quality 'maybe' is not a number"),
    ("prompt,edge,cloud\nhi,0,1\nho,1\n", {}, r"t\.csv: row 2 .*column 'cloud'"),
    ("prompt,edge,cloud\nhi,0,1\n", {"weak": "gpt-5"}, r"t\.csv: unknown weak model 'gpt-5'"),
    ("prompt,edge,cloud\nhi,0,1\n", {"models": ["edge", "nope"]}, r"missing column 'nope'"),
    ("", {}, r"t\.csv: the file is empty"),
    ("prompt,edge,cloud\n", {}, r"t\.csv: no rows"),
    ("prompt,edge,cloud\nhi,0,inf\n", {}, r"row 1 .*not finite"),
    ("prompt,a,b,c\nhi,0,1,1\n", {}, r"3 model columns"),
])
def test_bad_user_tables(tmp_path, content, kw, match):
    p = tmp_path / "t.csv"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_table(p, **kw)


def test_bad_jsonl_and_layout(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"prompt": "a", "x": 1, "y": 0}\n{"prompt": "b", "x": 1\n')
    with pytest.raises(ValueError, match=r"t\.jsonl: line 2: not valid JSON"):
        load_table(p)
    p.write_text("")
    with pytest.raises(ValueError, match=r"t\.jsonl: no rows"):
        load_table(p)
    with pytest.raises(ValueError, match="unknown benchmark 'hellaswag'"):
        load_benchmark("hellaswag", tmp_path)
    with pytest.raises(ValueError, match="routellm_responses_dev.csv: no such file"):
        load_benchmark("gsm8k", tmp_path)
    root = make_layout(tmp_path / "d")
    bad = root / "mt_bench" / "routellm_judgements_dev.jsonl"
    bad.write_text(bad.read_text() + json.dumps(
        {"question_id": 1, "model": W, "turn": 2, "score": -1}) + "\n")
    with pytest.raises(ValueError, match=r"line 9: score -1 is outside 1-10"):
        load_benchmark("mt-bench", root)
