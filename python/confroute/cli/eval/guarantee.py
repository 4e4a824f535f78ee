"""`confroute eval guarantee`: check the quality-drop guarantee by resampling the calibration
draw over a whole outcome table (see :mod:`confroute.eval.guarantee`).

The score is fixed first: a signal column of the table (``--signal``, e.g. the out-of-fold
``cv_mlp_accuracy`` of ``eval crossfit``), or out-of-fold scores of a trained router computed
here (``--crossfit ROUTER``, accuracy labels). Then, per ``--eps``, ``--draws`` calibrations on
``--n-cal`` prompts each, measured on the rest.

    confroute eval guarantee --benchmark mmlu --data shared/data --crossfit mlp \
        --eps 0.02 --eps 0.05 --delta 0.05 --out out/guarantee_mmlu
"""
from __future__ import annotations

import json
import math
import os

HELP = ("check the quality-drop guarantee: calibrate on random draws of a table, measure on "
        "the rest, count the draws over eps")


def add_arguments(g) -> None:
    from confroute.cli.eval.common import add_table_source
    from confroute.routers.calibrate import BOUNDS, LOSSES

    add_table_source(g, "an outcome table (CSV/JSONL, e.g. eval crossfit's --out)")
    score = g.add_mutually_exclusive_group(required=True)
    score.add_argument("--signal", metavar="NAME",
                       help="the score: the table's signal:NAME column (higher = cloud)")
    score.add_argument("--crossfit", metavar="ROUTER", choices=["sw", "mf", "mlp", "knn"],
                       help="the score: out-of-fold scores of this trained router on the "
                            "table's accuracy labels (as eval crossfit makes them)")
    g.add_argument("--folds", type=int, default=5, help="--crossfit: folds (default 5)")
    g.add_argument("--eps", type=float, action="append", required=True,
                   help="the largest quality drop allowed (quality units); repeatable")
    g.add_argument("--delta", type=float, default=0.05,
                   help="the chance the bound may fail (default 0.05)")
    g.add_argument("--n-cal", type=int, default=300,
                   help="calibration prompts per draw (default 300)")
    g.add_argument("--draws", type=int, default=200, help="calibration draws (default 200)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the draws and of the folds (default 0)")
    g.add_argument("--bound", choices=BOUNDS, default="hb",
                   help="the concentration bound, as for `confroute calibrate` (default hb)")
    g.add_argument("--loss", choices=LOSSES, default="both",
                   help="the loss bounded, as for `confroute calibrate` (default both)")
    g.add_argument("--out", required=True,
                   help="output folder: guarantee.json (with every draw) and draws.csv")


def run(args) -> int:
    import numpy as np

    from confroute.eval.guarantee import check_guarantee, format_check
    from confroute.eval.router_metrics import curve_metrics, sweep

    table = _load(args)
    if args.crossfit:
        from confroute.eval.crossfit import crossfit, signal_name

        name = signal_name(args.crossfit, "accuracy")
        scores, _ = crossfit(table, args.crossfit, "accuracy", folds=args.folds,
                             seed=args.seed)
    else:
        name = args.signal
        if table.signal_higher(name) != "cloud":
            raise ValueError(f"signal {name!r}: a higher value means the edge is surer; the "
                             f"check needs higher = cloud")
        scores = table.signal(name)
    scores = np.asarray(scores, np.float64)
    qw, qs = table.q_weak, table.q_strong
    # how good the fixed score is: the guarantee is about its threshold, not its ranking
    apgr = curve_metrics(sweep(scores, qw, qs), float(qw.mean()), float(qs.mean()))["apgr"]
    # a router's [0, 1] scores get the fine [0, 1] grid; a raw signal (nats) the wide one
    unit = bool(np.all((scores >= 0) & (scores <= 1)))
    checks = []
    for eps in args.eps:
        c = check_guarantee(scores, qw, qs, eps, args.delta, n_cal=args.n_cal,
                            draws=args.draws, seed=args.seed, quality_range=table.scale,
                            bound=args.bound, loss=args.loss, unit_interval=unit)
        checks.append(c)
        print(format_check(c))
        print()
    os.makedirs(args.out, exist_ok=True)
    out = {"table": table.name, "n_prompts": len(table), "weak": table.weak,
           "strong": table.strong, "score": name,
           # NaN (no gap between the models) has no JSON form
           "score_apgr": apgr if math.isfinite(apgr) else None,
           "q_weak": float(qw.mean()), "q_strong": float(qs.mean()),
           "checks": [c.to_dict(draws=True) for c in checks]}
    with open(os.path.join(args.out, "guarantee.json"), "w") as f:
        json.dump(out, f, indent=1, allow_nan=False)
    _write_draws(checks, os.path.join(args.out, "draws.csv"))
    print(f"score {name} on {table.name} ({len(table)} prompts): APGR {apgr:.3f}")
    print(f"wrote {args.out}/guarantee.json, draws.csv")
    return 0


def _load(args):
    from confroute.eval.data import load_benchmark, load_table

    if args.benchmark:
        if not args.data:
            raise ValueError("--benchmark needs --data (or $CONFROUTE_DATA)")
        return load_benchmark(args.benchmark, args.data, split=args.split)
    return load_table(args.table)


def _write_draws(checks, path: str) -> None:
    import csv

    cols = ["threshold", "calibration_share", "calibration_drop", "heldout_share",
            "heldout_drop", "refused", "unreached"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["eps", "method", "draw"] + cols)
        for c in checks:
            for m in (c.guarantee, c.share):
                for i, d in enumerate(m.draws):
                    w.writerow([c.eps, m.method, i] + [getattr(d, k) for k in cols])
