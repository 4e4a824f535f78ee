"""`confroute eval replay` end to end: metrics.json, curves.csv and the plot."""
import json
import struct

import pytest

from confroute import cli
from helpers.data import expected_rows, make_layout


@pytest.fixture(autouse=True)
def only_eval(monkeypatch):
    # The real `confroute` entry point, with only this subcommand registered: other
    # subcommands' modules (and their imports) are not under test here.
    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _run(argv, capsys):
    rc = cli.main(argv)
    return rc, capsys.readouterr()


@pytest.mark.parametrize("bench", ["gsm8k", "mmlu", "mt-bench"])
def test_replay_on_a_layout_copy(tmp_path, capsys, bench):
    root = make_layout(tmp_path / "data")
    out = tmp_path / "out"
    rc, cap = _run(["eval", "replay", "--benchmark", bench, "--data", str(root),
                    "--router", "random", "--router", "oracle", "--out", str(out)], capsys)
    assert rc == 0, cap.err
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["routers"]) == {"random", "oracle"}
    assert m["routers"]["oracle"]["apgr"] >= m["routers"]["random"]["apgr"]
    assert _png_size(out / "quality_vs_cloud_calls.png")[0] > 300
    assert "oracle" in cap.out and "APGR" in cap.out


@pytest.mark.data
@pytest.mark.parametrize("bench", ["gsm8k", "mmlu", "mt-bench"])
def test_replay_on_dev(data_dir, tmp_path, capsys, bench):
    out = tmp_path / "out"
    rc, cap = _run(["eval", "replay", "--benchmark", bench, "--data", str(data_dir), "--router",
                    "random", "--router", "oracle", "--out", str(out),
                    "--edge-price", "0,0,0.000001", "--cloud-price", "0.001,0.00001,0.00003",
                    "--tokens", "100,200,250", "--edge-samples", "5"], capsys)
    assert rc == 0, cap.err
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_prompts"] == expected_rows(bench, data_dir)
    assert m["strong"]["quality"] > m["weak"]["quality"]
    r, o = m["routers"]["random"], m["routers"]["oracle"]
    assert o["apgr"] > 1 > r["apgr"] > 0  # the oracle beats the strong model alone
    assert o["cpt50"] < r["cpt50"]
    cost = m["cost_per_query_at_share"]
    assert cost["0"] == pytest.approx(5 * 200 * 1e-6)
    assert cost["1"] == pytest.approx(5 * 200 * 1e-6 + 0.001 + 100e-5 + 250 * 3e-5)
    lines = (out / "curves.csv").read_text().splitlines()
    assert lines[0] == "router,threshold,cloud_share,quality" and len(lines) > 5


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("prompt,edge,cloud\nhi,0,1\nho,x,1\n")
    rc, cap = _run(["eval", "replay", "--table", str(t), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2
    assert f"{t}: row 2 (line 3): column 'edge': quality 'x'" in cap.err
    rc, cap = _run(["eval", "replay", "--benchmark", "gsm8k", "--data", str(tmp_path),
                    "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "routellm_responses_dev.csv: no such file" in cap.err
    t.write_text("prompt,edge,cloud\nhi,0,1\nho,1,1\n")
    rc, cap = _run(["eval", "replay", "--table", str(t), "--router", "nope",
                    "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "unknown router 'nope'" in cap.err


def test_weak_not_worse_gives_null_metrics(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("prompt,edge,cloud\na,1,0\nb,1,1\nc,0,0\n")
    rc, cap = _run(["eval", "replay", "--table", str(t), "--weak", "edge", "--strong", "cloud",
                    "--out", str(tmp_path / "o"), "--no-plot"], capsys)
    assert rc == 0, cap.err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["routers"]["random"]["apgr"] is None and m["routers"]["random"]["cpt50"] is None
    assert any("not better" in n for n in m["notes"])
    assert not (tmp_path / "o" / "quality_vs_cloud_calls.png").exists()


def test_shares_option(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("prompt,edge,cloud\na,0,1\nb,1,1\nc,0,0\nd,0,1\n")
    rc, cap = _run(["eval", "replay", "--table", str(t), "--shares", "0.25,0.75", "--no-plot",
                    "--cloud-price", "1", "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, cap.err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert set(m["routers"]["oracle"]["quality_at"]) == {"0.25", "0.75"}
    assert m["routers"]["oracle"]["quality_at"]["0.25"] == pytest.approx(0.5)
    assert m["cost_per_query_at_share"] == {"0": 0.0, "0.25": 0.25, "0.75": 0.75, "1": 1.0}
    rc, cap = _run(["eval", "replay", "--table", str(t), "--shares", "half",
                    "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--shares" in cap.err


def test_compare_prints_and_writes_paired_differences(tmp_path, capsys):
    t = tmp_path / "t.csv"
    rows = [(1, 1), (0, 1), (0, 0), (0, 1), (1, 1), (0, 1), (0, 0), (1, 0)] * 5
    t.write_text("prompt,edge,cloud\n" + "".join(f"p{i},{a},{b}\n"
                                                 for i, (a, b) in enumerate(rows)))
    out = tmp_path / "o"
    rc, cap = _run(["eval", "replay", "--table", str(t), "--router", "oracle", "--router",
                    "random:seed=1", "--compare", "oracle", "random:seed=1", "--bootstrap",
                    "50", "--no-plot", "--out", str(out)], capsys)
    assert rc == 0, cap.err
    c = json.loads((out / "metrics.json").read_text())["comparisons"]
    assert [(x["a"], x["b"]) for x in c] == [("oracle", "random:seed=1")]
    assert c[0]["apgr"]["diff"] > 0 and c[0]["n_boot"] == 50
    assert "oracle - random:seed=1 (paired, 50 resamples): APGR +" in cap.out
    rc, cap = _run(["eval", "replay", "--table", str(t), "--router", "oracle", "--compare",
                    "oracle", "sw", "--no-plot", "--out", str(out)], capsys)
    assert rc == 2 and "compare: no router 'sw'" in cap.err


def test_build_takes_the_similarity_under_its_old_name_too():
    import argparse

    from confroute.cli import eval as E

    p = argparse.ArgumentParser()
    E.add_arguments(p)
    base = ["build", "--benchmark", "mmlu", "--checkpoint", "c", "--out", "o.csv"]
    assert p.parse_args(base).similarity == 0.8
    for flag in ("--similarity", "--threshold"):
        assert p.parse_args(base + [flag, "0.9"]).similarity == 0.9
