"""`confroute eval replay`: sweep routers over recorded outcomes (metrics.json, curves.csv,
the plot), the cost at each cloud share, and the printed table."""
from __future__ import annotations

import json
import math
import os

HELP = "sweep routers over recorded outcomes: metrics.json, plot"


def add_arguments(r) -> None:
    from confroute.cli.eval.common import add_table_source

    add_table_source(r, "a CSV/JSONL: prompt + one quality column per model")
    r.add_argument("--weak", help="the weak (edge) model's column")
    r.add_argument("--strong", help="the strong (cloud) model's column")
    r.add_argument("--router", action="append", default=None, metavar="SPEC",
                   help="a registered name (random, oracle, random:seed=3), scores:FILE"
                        "[,column=NAME,higher=edge], signal:NAME[,higher=edge] (a signal "
                        "column of the table; higher = send to the cloud unless higher=edge), "
                        "signals (every signal column, in its recorded direction), a "
                        "saved-router folder, length (a live table: the edge's answer "
                        "length in tokens from eval build's checkpoint, longer = cloud), "
                        "ladder:FIRST,SECOND,BUDGET (the confidence ladder: FIRST a signal "
                        "or a saved router, SECOND a sampled signal; at each share of the "
                        "grid a BUDGET-wide band of FIRST's ranking is sampled and SECOND "
                        "decides it, e.g. ladder:answer_logprob,disagreement,0.35) or "
                        "cascade:ROUTER,SECOND,SKIP (cascade routing: ROUTER's top SKIP "
                        "share goes up unanswered, SECOND ranks the rest); repeatable")
    r.add_argument("--checkpoint", default=None,
                   help="--router length: eval build's checkpoint (default: the one the "
                        "table's meta names)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--points", type=int, default=201, help="threshold quantiles (default 201)")
    r.add_argument("--shares", default=None, metavar="S1,S2,...",
                   help="cloud-call shares in [0, 1] to report quality (and cost) at "
                        "(default 0.1,0.2,0.3,0.5,0.8)")
    r.add_argument("--include-contaminated", action="store_true",
                   help="keep the prompts RouteLLM marks as contaminated")
    r.add_argument("--no-plot", action="store_true")
    r.add_argument("--edge-price", default=None, metavar="CALL[,IN,OUT]",
                   help="edge price per call, per input token, per output token")
    r.add_argument("--cloud-price", default=None, metavar="CALL[,IN,OUT]")
    r.add_argument("--tokens", default=None, metavar="IN,EDGE_OUT,CLOUD_OUT",
                   help="mean tokens per query for the cost estimate (default: a live "
                        "table's own means for IN and EDGE_OUT, per answer; else 0)")
    r.add_argument("--edge-samples", type=int, default=None,
                   help="answers the edge model draws per query (SE routing: e.g. 5; default: "
                        "the table's edge samples + 1 for a live table, else 1)")
    r.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                   help="bootstrap resamples over prompts for the 95%% intervals (0 = none)")
    r.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    r.add_argument("--random-seeds", type=int, default=20,
                   help="'random' is the mean +- sd over this many seeds (default 20)")
    r.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                   help="paired bootstrap interval of router A minus router B (labels as "
                        "printed, e.g. a saved router's folder name or signal:NAME); "
                        "repeatable")


def run(args) -> int:
    from confroute.eval.replay import replay
    from confroute.eval.router_metrics import DEFAULT_SHARES

    table = _load(args)
    shares = DEFAULT_SHARES
    if args.shares:
        try:
            shares = tuple(float(x) for x in args.shares.split(","))
        except ValueError:
            raise ValueError(f"--shares: expected numbers like 0.1,0.5, got {args.shares!r}") \
                from None
    if args.bootstrap < 0 or args.random_seeds < 0:
        raise ValueError("--bootstrap and --random-seeds must be >= 0")
    routers = args.router or ["random", "oracle"]
    if "length" in routers:
        length = _length_scores(args, table)
        routers = [length if r == "length" else r for r in routers]
    report = replay(table, routers, n_points=args.points,
                    shares=shares, n_boot=args.bootstrap, seed=args.seed,
                    random_seeds=args.random_seeds,
                    compare=[tuple(pair) for pair in args.compare])
    out = report.to_json()
    out["table_meta"] = {k: v for k, v in table.meta.items() if k != "checkpoint"}
    _add_costs(out, args, table, shares)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(jsonable(out), f, indent=2)
    _write_curves(report, os.path.join(args.out, "curves.csv"))
    if not args.no_plot:
        from confroute.eval.plot import plot_report

        plot_report(report, os.path.join(args.out, "quality_vs_cloud_calls.png"))
    print(format_table(report))
    print(f"wrote {args.out}/metrics.json, curves.csv"
          + ("" if args.no_plot else ", quality_vs_cloud_calls.png"))
    return 0


def _load(args):
    """The outcome table: a benchmark in the --data folder, or --table."""
    from confroute.eval.data import load_benchmark, load_table

    if args.benchmark:
        if not args.data:
            raise ValueError("--benchmark needs --data (or $CONFROUTE_DATA)")
        return load_benchmark(args.benchmark, args.data, split=args.split, weak=args.weak,
                              strong=args.strong,
                              include_contaminated=args.include_contaminated)
    return load_table(args.table, weak=args.weak, strong=args.strong)


def _add_costs(out, args, table, shares) -> None:
    """With --edge-price or --cloud-price: the cost per query at each cloud share, into out."""
    from confroute.eval.metrics import Prices, cost_at_share

    edge, cloud = _prices(args.edge_price, "--edge-price"), _prices(args.cloud_price,
                                                                     "--cloud-price")
    if not (edge or cloud):
        return
    live = (table.meta.get("settings") or {}).get("live") or {}
    samples = args.edge_samples
    if samples is None:
        samples = int(live.get("samples", 0)) + 1 if table.meta.get("signals_from") else 1
    if args.tokens is None:
        # a live table knows its edge's mean prompt and answer lengths (per answer drawn)
        t = (table.meta.get("mean_tokens") or {}).get(table.weak) or {}
        out_tok = (t.get("completion_tokens", 0) + t.get("sample_tokens", 0)) / samples
        tok = [float(t.get("prompt_tokens", 0)), float(out_tok), 0.0]
    else:
        try:
            tok = [float(x) for x in args.tokens.split(",")]
        except ValueError:
            tok = []
        if len(tok) != 3:
            raise ValueError(f"--tokens: expected IN,EDGE_OUT,CLOUD_OUT numbers, got "
                             f"{args.tokens!r}")
    out["cost_tokens"] = {"input": tok[0], "edge_output": tok[1], "cloud_output": tok[2]}
    at = sorted({0.0, 1.0, *shares})
    costs = cost_at_share(at, edge or Prices(), cloud or Prices(), *tok,
                          edge_samples=samples)
    out["cost_edge_samples"] = samples
    out["cost_per_query_at_share"] = {f"{s:g}": float(c) for s, c in zip(at, costs)}


def _prices(spec, what):
    from confroute.eval.metrics import Prices

    if spec is None:
        return None
    try:
        parts = [float(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"{what}: expected CALL[,IN,OUT] numbers, got {spec!r}") from None
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"{what}: expected 1 to 3 numbers, got {spec!r}")
    return Prices(*parts)


def _length_scores(args, table):
    """The length baseline's scores: the edge's answer tokens from eval build's checkpoint."""
    from confroute.eval.prefix import checkpoint_records
    from confroute.eval.router_scores import answer_length_scores

    ck = args.checkpoint or table.meta.get("checkpoint")
    if not ck:
        raise ValueError("--router length needs the per-prompt answer lengths of eval build's "
                         "checkpoint: the table's meta names none (a recorded benchmark has "
                         "no answer lengths); give --checkpoint")
    if not args.checkpoint and not os.path.exists(ck) and args.table:
        ck = os.path.join(os.path.dirname(os.path.abspath(args.table)), ck)
    if not os.path.exists(ck):
        raise ValueError(f"checkpoint not found: {ck}")
    edge = table.meta.get("signals_from") or table.weak
    scores = answer_length_scores(table, checkpoint_records(ck, edge))
    return type(scores)(scores.scores, {**scores.info, "checkpoint": ck, "model": edge},
                        scores.label)


def jsonable(x):
    """JSON has no NaN: undefined metrics are written as null."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_curves(report, path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["router", "threshold", "cloud_share", "quality"])
        for r in report.results:
            for t, s, q in zip(r.curve.thresholds, r.curve.share, r.curve.quality):
                w.writerow([r.label, f"{t:.9g}", f"{s:.6f}", f"{q:.6f}"])


def format_table(report) -> str:
    t = report.table
    qc = report.quality_ci or {}
    head = (f"{t.name}: {len(t)} prompts | weak {t.weak} = {report.q_weak:.4f}"
            f"{_ci(qc.get('weak'))} | strong {t.strong} = {report.q_strong:.4f}"
            f"{_ci(qc.get('strong'))}")
    cols = ["router", "APGR", "CPT20", "CPT50", "CPT80", "q@20%", "q@50%", "AUROC", "PRR",
            "~random"]
    rows = []
    for r in report.results:
        m, u = r.metrics, r.metrics["uncertainty"]
        qa, ci = m["quality_at"], m.get("ci") or {}
        if "over_seeds" in m:
            o = m["over_seeds"]
            rows.append([r.label + f" ({o['seeds']} seeds)", _pm(o["apgr"]),
                         _pm(o["cpt20"], True), _pm(o["cpt50"], True), _pm(o["cpt80"], True),
                         _pm(o.get("q@0.2")), _pm(o.get("q@0.5")), _pm(o["auroc"]), _f(u["prr"]),
                         ""])
            continue
        near = m.get("overlaps_random") or {}
        rows.append([r.label, _f(m["apgr"]) + _ci(ci.get("apgr")),
                     _pct(m["cpt20"]) + _ci(ci.get("cpt20"), True),
                     _pct(m["cpt50"]) + _ci(ci.get("cpt50"), True),
                     _pct(m["cpt80"]) + _ci(ci.get("cpt80"), True),
                     _f(qa.get("0.2")) + _ci(ci.get("q@0.2")),
                     _f(qa.get("0.5")) + _ci(ci.get("q@0.5")),
                     _f(u["auroc"]) + _ci(ci.get("auroc")), _f(u["prr"]),
                     "" if not near else ("yes" if near.get("apgr") else "no")])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    lines = [head, "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
    if any("ci" in r.metrics for r in report.results):
        lines.append("[lo, hi]: bootstrap 95% interval over prompts; '>': never reached in "
                     "some resamples; ~random: the APGR interval meets random's mean +- 1.96 sd")
    lines += _staged_lines(report)
    lines += _risk_lines(report)
    for c in report.comparisons:
        lines.append(f"{c['a']} - {c['b']} (paired, {c['n_boot']} resamples): " + "; ".join(
            f"{name} {_signed(c[k], pct)}" for k, name, pct in
            (("apgr", "APGR", False), ("cpt50", "CPT50", True), ("cpt80", "CPT80", True),
             ("auroc", "AUROC", False))))
    return "\n".join(lines)


def _staged_lines(report) -> list:
    """A two-stage policy's sampling: the share of prompts it samples (and the samples per
    query, where the table records its draw); its recalibration per share of the grid."""
    out = []
    for r in report.results:
        st = r.metrics.get("staged")
        if not st:
            continue
        per = (f", {st['samples_per_query']:.2f} samples per query"
               if "samples_per_query" in st else "")
        what = (f"budget {st['budget']:g}" if st["kind"] == "ladder"
                else f"skip {st['skip']:g}")
        out.append(f"{r.label}: samples {100 * st['sampled_share']:.1f}% of prompts "
                   f"({what}; mean over {st['grid_points']} shares, each recalibrated)"
                   f"{per}")
    return out


def _risk_lines(report) -> list:
    """What a practitioner asks, per router: the edge's selective risk (AURC), the deferral
    curve's normalized area (nAUDC), the cloud calls saved at 95% of all-cloud quality, and
    how well the score calibrates into P(edge correct) (ECE, Brier)."""
    cols = ["router", "AURC", "nAUDC", "saved@95%", "ECE", "Brier"]
    rows = []
    for r in report.results:
        k, ci = r.metrics.get("risk") or {}, r.metrics.get("ci") or {}
        if not k:
            continue
        cal = k.get("p_edge_correct") or {}
        if "over_seeds" in r.metrics:   # random: mean +- sd over seeds (ECE, Brier: seed 0)
            o = r.metrics["over_seeds"]
            rows.append([r.label + f" ({o['seeds']} seeds)", _pm(o.get("aurc")),
                         _pm(o.get("naudc")), _pm(o.get("calls_saved"), True),
                         _f(cal.get("ece")), _f(cal.get("brier"))])
            continue
        rows.append([r.label, _f(k["aurc"]) + _ci(ci.get("aurc")),
                     _f(k["naudc"]) + _ci(ci.get("naudc")),
                     _pct(k["iso_quality"]["calls_saved"]) + _ci(ci.get("calls_saved"), True),
                     _f(cal.get("ece")), _f(cal.get("brier"))])
    if not rows:
        return []
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    base = next((r.metrics["risk"]["p_edge_correct"].get("brier_base") for r in report.results
                 if "p_edge_correct" in r.metrics.get("risk", {})), None)
    return (["", "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
            + ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
            + [f"AURC: the edge's mean loss over coverages (lower is better); nAUDC: deferral "
               f"area, oracle 1, random 0.5; saved@95%: cloud calls saved where quality "
               f"reaches 95% of all-cloud; ECE (10 equal-mass bins), Brier: P(edge correct) "
               f"by cross-fitted isotonic regression (Brier of the constant: {_f(base)})"])


def _signed(d, pct=False) -> str:
    """A paired difference: point [lo, hi], and the share of resamples where A was better."""
    if not d or d["diff"] is None:
        return "n/a"
    f = (lambda x: f"{100 * x:+.1f}") if pct else (lambda x: f"{x:+.3f}")
    return (f"{f(d['diff'])}{' pts' if pct else ''} [{f(d['ci'][0])}, {f(d['ci'][1])}] "
            f"(A better in {100 * d['a_better']:.0f}%)")


def _ci(v, pct=False) -> str:
    if not v:
        return ""
    fmt = (lambda x: "n/a" if x is None else f"{100 * x:.1f}") if pct else \
        (lambda x: "n/a" if x is None else f"{x:.3f}")
    hi = ">100" if (pct and v[1] is None and v[0] is not None) else fmt(v[1])
    return f" [{fmt(v[0])}, {hi}]"


def _pm(o, pct=False) -> str:
    if not o or o.get("mean") is None:
        return "n/a"
    if pct:
        return f"{100 * o['mean']:.1f}% ± {100 * o['sd']:.1f}"
    return f"{o['mean']:.3f} ± {o['sd']:.3f}"


def _f(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"


def _pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}%"
