"""Loaders: the shared/data layout (real dev files when present, hand-made copies otherwise)
and the plain user format, with the errors bad input must give."""
import json

import numpy as np
import pytest

from confroute.eval.data import load_benchmark, load_mt_bench_questions, load_table
from confroute.eval.items import gsm8k_items, mmlu_items
from helpers.data import S, W, expected_rows, make_layout


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


@pytest.mark.data
def test_dev_files_load(data_dir):
    g = load_benchmark("gsm8k", data_dir)
    assert len(g) == expected_rows("gsm8k", data_dir) and g.is_binary
    assert len(load_benchmark("gsm8k", data_dir, include_contaminated=True)) > len(g)
    m = load_benchmark("mmlu", data_dir)
    assert len(m) == expected_rows("mmlu", data_dir)
    subjects = list((data_dir / "mmlu" / "routellm_responses_dev").glob("*.csv"))
    assert len(set(m.groups)) == len(subjects)
    t = load_benchmark("mt-bench", data_dir)
    assert len(t) == expected_rows("mt-bench", data_dir) and t.scale == (1.0, 10.0)
    assert t.quality.min() >= 1 and t.quality.max() <= 10
    qs = load_mt_bench_questions(data_dir)
    ref_ids = {json.loads(l)["question_id"] for l in
               open(data_dir / "mt_bench" / "reference_answer_gpt-4.jsonl") if l.strip()}
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
