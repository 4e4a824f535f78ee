"""`confroute eval report`: the paper's Table 1 from replay outputs (``metrics.json``).

Rows: random (mean +- sd over seeds), oracle, each online signal (``signal:*``), then every
other router (the trained ones, labelled as replayed, e.g. ``mf-acc`` / ``mf-se``). Columns:
per benchmark (one replay folder each) CPT(50%), CPT(80%) and APGR with their bootstrap 95%
intervals; a router whose APGR interval meets random's band (mean +- 1.96 sd) is marked
``~``. Below: the cost per query at each cloud share, the edge's sampling included, where the
replay was given prices. Written as Markdown and PNG.

A second Markdown table answers what practitioners ask, per router and benchmark (from each
router's ``risk`` in metrics.json, where the replay has it): AURC (the edge's selective risk
over coverage), nAUDC (the deferral curve's area, oracle 1, random 0.5), the cloud calls
saved at 95% of the all-cloud quality, and ECE / Brier of P(edge correct) calibrated from the
score; the first three with their bootstrap intervals.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Sequence, Tuple

MARK = "~"


def read_replays(folders: Sequence[str]) -> List[Tuple[str, dict]]:
    out = []
    for d in folders:
        path = os.path.join(os.fspath(d), "metrics.json")
        if not os.path.exists(path):
            raise ValueError(f"{d}: no metrics.json (is it an `eval replay --out` folder?)")
        try:
            with open(path) as f:
                m = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg})") from None
        if not isinstance(m, dict) or "routers" not in m:
            raise ValueError(f"{path}: not a replay metrics file (no 'routers')")
        out.append((os.path.basename(os.path.normpath(d)), m))
    if not out:
        raise ValueError("give at least one replay folder")
    return out


def _row_order(replays) -> List[str]:
    labels: List[str] = []
    for _, m in replays:
        for k in m["routers"]:
            if k not in labels:
                labels.append(k)

    def rank(k):
        if k.startswith("random"):
            return 0
        if k == "oracle":
            return 1
        if k.startswith("signal:"):
            return 2
        return 3

    return sorted(labels, key=lambda k: (rank(k), labels.index(k)))


def _num(x, pct):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def _quality(side: dict) -> str:
    ci = side.get("ci")
    return _num(side["quality"], False) + (f" [{_num(ci[0], False)}, {_num(ci[1], False)}]"
                                           if ci else "")


def cell(m: dict, key: str, pct: bool) -> str:
    """'value [lo, hi]' (percent for CPT), or 'mean ± sd' for random over seeds."""
    if "over_seeds" in m:
        o = m["over_seeds"].get(key) or {}
        if o.get("mean") is None:
            return "n/a"
        return f"{_num(o['mean'], pct)} ± {_num(o['sd'], pct)}"
    v = _num(m.get(key), pct)
    ci = (m.get("ci") or {}).get(key)
    if ci:
        hi = ">100" if (pct and ci[1] is None and ci[0] is not None) else _num(ci[1], pct)
        v += f" [{_num(ci[0], pct)}, {hi}]"
    if key == "apgr" and (m.get("overlaps_random") or {}).get("apgr"):
        v += " " + MARK
    return v


def build_table(replays) -> Tuple[List[str], List[List[str]]]:
    head = ["router"]
    for name, m in replays:
        b = f"{m.get('benchmark', name)} ({name}, n={m.get('n_prompts')})"
        head += [f"{b} CPT(50%)", f"{b} CPT(80%)", f"{b} APGR"]
    rows = []
    for label in _row_order(replays):
        row = [label]
        for _, m in replays:
            r = m["routers"].get(label)
            if r is None:
                row += ["", "", ""]
            else:
                row += [cell(r, "cpt50", True), cell(r, "cpt80", True), cell(r, "apgr", False)]
        rows.append(row)
    return head, rows


RISK_COLUMNS = (("aurc", "AURC"), ("naudc", "nAUDC"), ("calls_saved", "saved@95%"),
                ("ece", "ECE"), ("brier", "Brier"))


def risk_cell(m: dict, key: str) -> str:
    """A risk metric: 'value [lo, hi]' (calls saved in %), 'mean ± sd' for random over seeds
    (ECE and Brier: its first seed's), '' where the replay has no risk metrics."""
    r = m.get("risk")
    if not r:
        return ""
    pct = key == "calls_saved"
    if key in ("ece", "brier"):
        return _num((r.get("p_edge_correct") or {}).get(key), False)
    if "over_seeds" in m:
        o = m["over_seeds"].get(key) or {}
        return "n/a" if o.get("mean") is None else \
            f"{_num(o['mean'], pct)} ± {_num(o['sd'], pct)}"
    v = _num(r["iso_quality"]["calls_saved"] if pct else r.get(key), pct)
    ci = (m.get("ci") or {}).get(key)
    if ci:
        v += f" [{_num(ci[0], pct)}, {_num(ci[1], pct)}]"
    return v


def build_risk_table(replays) -> Tuple[List[str], List[List[str]]]:
    head = ["router"]
    for name, m in replays:
        b = f"{m.get('benchmark', name)} ({name})"
        head += [f"{b} {title}" for _, title in RISK_COLUMNS]
    rows = []
    for label in _row_order(replays):
        row = [label]
        for _, m in replays:
            r = m["routers"].get(label)
            row += [risk_cell(r, k) if r else "" for k, _ in RISK_COLUMNS]
        rows.append(row)
    return head, rows


def markdown(replays) -> str:
    head, rows = build_table(replays)
    lines = ["# Routing results (Table 1 layout)", ""]
    for name, m in replays:
        lines.append(f"- **{name}**: {m.get('benchmark')} · {m.get('n_prompts')} prompts · "
                     f"edge/weak `{m['weak']['model']}` = {_quality(m['weak'])}"
                     f" · cloud/strong `{m['strong']['model']}` = {_quality(m['strong'])}")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "CPT in % of cloud calls; [lo, hi] = bootstrap 95% interval over prompts "
              "(`>100`: some resamples never reach the target); random = mean ± sd over "
              f"seeds; `{MARK}` = the APGR interval meets random's mean ± 1.96 sd "
              "(indistinguishable from random)."]
    if any(r.get("risk") for _, m in replays for r in m["routers"].values()):
        head, rows = build_risk_table(replays)
        lines += ["", "## Risk, deferral and calibration", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", "AURC: the edge's mean loss (1 − quality) over the prompts it keeps, "
                  "averaged over every coverage (share kept on the edge); lower is better. "
                  "nAUDC: area under quality vs cloud share, scaled so the worst order is 0, "
                  "random 0.5 and the oracle 1. saved@95%: 1 − the smallest cloud share whose "
                  "quality reaches 95% of all-cloud. ECE (10 equal-mass bins) and Brier: "
                  "P(edge correct) by isotonic regression on the score, cross-fitted over 5 "
                  "folds. [lo, hi]: bootstrap 95% interval over prompts."]
    costs = [(n, m) for n, m in replays if m.get("cost_per_query_at_share")]
    if costs:
        shares = sorted({s for _, m in costs for s in m["cost_per_query_at_share"]}, key=float)
        lines += ["", "## Cost per query at each cloud share (edge sampling included)", "",
                  "| replay | edge samples | " + " | ".join(f"{float(s):.0%}" for s in shares)
                  + " |", "|" + "---|" * (len(shares) + 2)]
        for n, m in costs:
            c = m["cost_per_query_at_share"]
            lines.append(f"| {n} | {m.get('cost_edge_samples', '')} | "
                         + " | ".join(f"{c[s]:.4g}" if s in c else "" for s in shares) + " |")
    return "\n".join(lines) + "\n"


def png(replays, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head, rows = build_table(replays)
    head = [h.replace(" CPT", "\nCPT").replace(" APGR", "\nAPGR") for h in head]
    fig_w = max(8.0, 1.0 + 2.3 * (len(head) - 1))
    fig, ax = plt.subplots(figsize=(fig_w, 0.9 + 0.32 * (len(rows) + 1)))
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=head, loc="center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(7)
    t.scale(1.0, 1.35)
    for (r, c), cl in t.get_celld().items():
        if r == 0:
            cl.set_text_props(weight="bold")
            cl.set_height(cl.get_height() * 1.8)
        if c == 0:
            cl.set_text_props(ha="left")
    ax.set_title(f"CPT (% cloud calls) and APGR, bootstrap 95% intervals; {MARK} = "
                 "indistinguishable from random", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def write_report(folders: Sequence[str], out: str) -> Dict[str, str]:
    replays = read_replays(folders)
    os.makedirs(out, exist_ok=True)
    md, pn = os.path.join(out, "table1.md"), os.path.join(out, "table1.png")
    with open(md, "w") as f:
        f.write(markdown(replays))
    png(replays, pn)
    return {"markdown": md, "png": pn}
