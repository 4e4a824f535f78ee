"""`confroute eval adaptive`: replay adaptive SE on the samples eval build kept in draw order."""
from __future__ import annotations

import json

from .common import _draws

HELP = ("replay adaptive SE on the samples eval build kept in draw order: samples drawn, "
        "decisions identical to full-n SE")


def add_arguments(ad) -> None:
    ad.add_argument("--table", required=True, help="an outcome table (eval build's --out)")
    ad.add_argument("--checkpoint", default=None,
                    help="eval build's checkpoint (default: the one the table's meta names)")
    ad.add_argument("--n-max", type=int, default=None,
                    help="the cap (default: every sample the table has)")
    ad.add_argument("--threshold", type=float, action="append", default=[],
                    help="discrete SE threshold in nats (repeatable)")
    ad.add_argument("--share", type=float, action="append", default=[],
                    help="or the threshold that sends this share to the cloud under full-n SE "
                         "(repeatable)")
    ad.add_argument("--rule", action="append", choices=["exact", "confidence"], default=None,
                    help="stopping rule (repeatable; default: both)")
    ad.add_argument("--first", type=int, default=3)
    ad.add_argument("--step", type=int, default=2)
    ad.add_argument("--delta", type=float, default=0.05,
                    help="confidence rule: stop where P(the decision flips) < delta")
    ad.add_argument("--bootstrap", type=int, default=1000, metavar="B")
    ad.add_argument("--out", default=None, help="write the results as JSON here")


def run(args) -> int:
    from confroute.eval.data import load_table
    from confroute.eval.prefix import adaptive_replay, prefix_se, share_threshold
    from confroute.eval.intervals import mean_intervals

    table = load_table(args.table)
    draws = _draws(args, table)
    n_max = args.n_max or min(d.cluster_ids.size for d in draws)
    if not (args.threshold or args.share):
        raise ValueError("give at least one --threshold (nats) or --share")
    full = prefix_se(draws, n_max)["discrete"]
    thresholds = list(args.threshold) + [share_threshold(full, s) for s in args.share]
    results = []
    print(f"{len(draws)} prompts, the served clusters, n_max {n_max}, rounds "
          f"{args.first}+{args.step}+...; 95% bootstrap intervals over prompts")
    print("| threshold (nats) | cloud share, full n | rule | mean samples | share of n_max "
          "| identical decisions |")
    print("|---|---|---|---|---|---|")
    for t in thresholds:
        for rule in args.rule or ["exact", "confidence"]:
            r = adaptive_replay(draws, t, n_max, args.first, args.step, rule, args.delta)
            ci = mean_intervals([r.n_drawn, r.identical], n_boot=args.bootstrap) \
                if args.bootstrap else [[float("nan")] * 2] * 2
            res = {"threshold": t, "rule": rule, "n_max": n_max,
                   "n_prompts": len(draws), "cloud_share_full": float(r.cloud_full.mean()),
                   "cloud_share": float(r.cloud.mean()),
                   "mean_samples": float(r.n_drawn.mean()), "mean_samples_ci": ci[0],
                   "identical": float(r.identical.mean()), "identical_ci": ci[1]}
            results.append(res)
            print(f"| {t:.3f} | {res['cloud_share_full']:.0%} | {rule} | "
                  f"{res['mean_samples']:.2f} [{ci[0][0]:.2f}, {ci[0][1]:.2f}] | "
                  f"{res['mean_samples'] / n_max:.0%} | {res['identical']:.1%} "
                  f"[{ci[1][0]:.1%}, {ci[1][1]:.1%}] |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"table": args.table, "results": results}, f, indent=1)
        print(f"wrote {args.out}")
    return 0
