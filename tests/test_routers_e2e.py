"""End to end on the real local models: `confroute label` (SmolLM2 vs Qwen SE labels on
NQ-open prompts) -> `train` each router -> `calibrate` -> `eval replay` on recorded MT-Bench
outcomes. Small on purpose (12 prompts, 3 samples of 10 tokens); the tiny invented data set
stands in for the shared data where that is absent."""
import json
import os

import numpy as np
import pytest

from confroute import cli
from confroute.labels import label_counts, read_labels
from confroute.models import store

pytestmark = [pytest.mark.models, pytest.mark.data]


def main(argv):
    saved = cli.COMMANDS
    cli.COMMANDS = {k: saved[k] for k in ("label", "train", "calibrate", "eval")}
    try:
        return cli.main(argv)
    finally:
        cli.COMMANDS = saved


def test_label_train_calibrate_replay(data_dir, tmp_path, capsys):
    nq = str(data_dir / "nq_open" / "dev.jsonl")
    labels = tmp_path / "se.jsonl"
    args = ["label", "--prompts", nq, "--limit", "12", "--out", str(labels), "--n", "3",
            "--max-tokens", "10", "--threads", "1", "--no-progress"]
    assert main(args) == 0
    rows = read_labels(labels)
    assert len(rows) == 12 and [r["id"] for r in rows] == list(range(12))
    assert rows[0]["model_a"] == store.DEFAULT_EDGE == "smollm2-135m-instruct-q8"
    assert all(r["se_weak"] >= 0 and r["se_strong"] >= 0 for r in rows)
    assert all(r["quality_weak"] in (0.0, 1.0) for r in rows)  # graded against NQ's answers
    counts = label_counts(rows)
    assert sum(counts.values()) == 12
    # a second run finds every row done and samples nothing
    assert main(args) == 0 and len(read_labels(labels)) == 12
    capsys.readouterr()

    dirs = []
    for name in ("sw", "mf", "mlp", "knn"):
        if name == "mlp" and min(counts["strong"] + counts["tie"], counts["weak"] + counts["tie"]) == 0:
            continue  # one-sided labels: the classifier refuses them (tested elsewhere)
        out = tmp_path / name
        assert main(["train", "--router", name, "--labels", str(labels), "--out", str(out)]) == 0
        dirs.append(str(out))
    cal_prompts = tmp_path / "cal.txt"  # unseen NQ-open prompts
    with open(nq) as f:
        lines = [json.loads(line)["question"] for line in f][100:300]
    cal_prompts.write_text("\n".join(lines) + "\n")
    assert main(["calibrate", "--router", dirs[0], "--prompts", str(cal_prompts),
                 "--cloud-share", "0.3", "--heldout", "0.5", "--json"]) == 0
    cal = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= cal["threshold"] <= 1 and cal["n_heldout"] == 100

    rep = tmp_path / "replay"
    argv = ["eval", "replay", "--benchmark", "mt-bench", "--data", str(data_dir),
            "--out", str(rep), "--no-plot", "--router", "random", "--router", "oracle"]
    for d in dirs:
        argv += ["--router", d]
    assert main(argv) == 0
    metrics = json.loads((rep / "metrics.json").read_text())
    assert set(metrics["routers"]) >= {"random", "oracle", *[os.path.basename(d) for d in dirs]}
    # The oracle (each prompt's recorded gain) bounds every router's curve, hence its APGR.
    apgr = {k: m["apgr"] for k, m in metrics["routers"].items()}
    assert all(apgr["oracle"] >= v - 1e-9 for v in apgr.values()), apgr
