"""`confroute eval chain`: a chain of tiers replayed over a chain table (one quality column per
tier, a signal for each tier but the last; see :mod:`confroute.eval.chain`): quality against
cost with each tier's attempts counted, the point the allocation rule picks at each cloud
share, bootstrap intervals (metrics.json, grid.csv, chain_table.csv)."""
from __future__ import annotations

import csv
import json
import os

HELP = "replay a chain of tiers (edge -> mid -> cloud): quality against cost"


def add_arguments(r) -> None:
    r.add_argument("--table", required=True, help="an outcome table (CSV/JSONL)")
    add_chain_arguments(r, required=True)
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--shares", default="0.1,0.2,0.3,0.5,0.8", metavar="S1,S2,...",
                   help="last-tier (cloud) shares to report the best point at, and "
                        "normalized costs to read the frontier at (default 0.1,0.2,0.3,0.5,0.8)")
    r.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                   help="bootstrap resamples over prompts, the grid recalibrated on each "
                        "(0 = none)")
    r.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def add_chain_arguments(r, required: bool) -> None:
    """The chain's tiers on the --table (which the caller declares), as `eval chain` and
    `calibrate --tier` read them (:func:`load_chain`); ``required``: --tier must be given."""
    r.add_argument("--join", action="append", default=[], metavar="TABLE",
                   help="another table to join on prompt id (its signals become "
                        "NAME@MODEL after the model that drew them); repeatable")
    r.add_argument("--tier", action="append", required=required, metavar="MODEL[:SIGNAL]",
                   help="a tier, cheapest first: MODEL:SIGNAL (the model's quality column "
                        "and its signal, e.g. smollm2-135m-instruct:answer_logprob), the last "
                        "a model column alone; repeatable, two or more")
    r.add_argument("--cost", default=None, metavar="C1,C2,...",
                   help="the price of one attempt at each tier (default 1 each: the cost is "
                        "the attempts per query)")
    r.add_argument("--step", type=float, default=0.05,
                   help="the spacing of each tier's pass share in the grid (default 0.05)")


def load_chain(args):
    """(chain table restricted to the tiers, ChainScores) from the arguments."""
    from confroute.eval.chain import chain_scores, join_tables, tier_spec
    from confroute.eval.data import load_table

    tables = [load_table(p) for p in [args.table, *args.join]]
    table = join_tables(tables) if len(tables) > 1 else tables[0]
    tiers = [tier_spec(t, table.models) for t in args.tier]
    cost = None
    if args.cost:
        try:
            cost = [float(x) for x in args.cost.split(",")]
        except ValueError:
            raise ValueError(f"--cost: expected numbers like 1,3,20, got {args.cost!r}") \
                from None
        if len(cost) != len(tiers):
            raise ValueError(f"--cost: {len(tiers)} tiers need {len(tiers)} prices, got "
                             f"{len(cost)}")
    return table, chain_scores(table, tiers, cost)


def run(args) -> int:
    from confroute.eval.chain import chain_intervals, chain_metrics, grid_rows
    from confroute.eval.intervals import mean_intervals
    from confroute.eval.table import OutcomeTable

    try:
        shares = [float(x) for x in args.shares.split(",")]
    except ValueError:
        raise ValueError(f"--shares: expected numbers like 0.1,0.5, got {args.shares!r}") \
            from None
    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be >= 0")
    table, cs = load_chain(args)
    m, points = chain_metrics(cs, shares, args.step)
    tiers = [{"model": mo, "signal": sig, "cost_per_attempt": float(c),
              "quality": float(cs.quality[:, i].mean()),
              "mean_tokens": (table.meta.get("mean_tokens") or {}).get(mo),
              "seconds_per_prompt": (table.meta.get("seconds_per_prompt") or {}).get(mo)}
             for i, (mo, sig, c) in enumerate(zip(cs.models, [*cs.signals, None], cs.cost))]
    if args.bootstrap:
        for t, ci in zip(tiers, mean_intervals(cs.quality.T, args.bootstrap, args.seed)):
            t["quality_ci"] = ci
        m["ci"] = chain_intervals(cs, shares, args.step, args.bootstrap, args.seed)
    out = {"table": table.name, "n_prompts": len(cs), "tiers": tiers, "grid_step": args.step,
           "notes": [
               "a prompt pays one attempt at every tier it reaches; cost = sum over tiers of "
               "(share reaching the tier) x (its price per attempt)",
               "at_cloud_share[S]: the grid point with the best quality among those whose last "
               "tier answers <= S of the prompts (ties: lower cost)",
               "apgr: area under (quality - q_tier1) / (q_last - q_tier1) over the cost "
               "frontier, cost normalized from all-at-tier-1 (0) to every tier paid (1)"],
           **m}
    os.makedirs(args.out, exist_ok=True)
    from confroute.cli.eval.replay import jsonable

    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(jsonable(out), f, indent=2)
    with open(os.path.join(args.out, "grid.csv"), "w", newline="") as f:
        csv.writer(f).writerows(grid_rows(points, cs.models))
    OutcomeTable(table.prompts, cs.models, cs.quality, cs.models[0], cs.models[-1],
                 name=table.name, ids=table.ids, groups=table.groups,
                 signals={f"{s}@{mo}": cs.scores[:, i] for i, (mo, s) in
                          enumerate(zip(cs.models, cs.signals))}).save(
        os.path.join(args.out, "chain_table.csv"))
    print(format_chain(out))
    print(f"wrote {args.out}/metrics.json, grid.csv, chain_table.csv")
    return 0


def format_chain(out) -> str:
    ci = out.get("ci") or {}
    lines = [f"{out['table']}: {out['n_prompts']} prompts, {len(out['tiers'])} tiers"]
    for i, t in enumerate(out["tiers"], 1):
        lines.append(f"  tier {i}: {t['model']}" + (f" (climbs on {t['signal']})"
                                                      if t["signal"] else "")
                     + f": quality {t['quality']:.4f}{_ci(t.get('quality_ci'))}, "
                     f"{t['cost_per_attempt']:g} per attempt")
    lines.append(f"APGR over cost {_f(out['apgr'])}{_ci(ci.get('apgr'))}")
    for s, p in out["at_cloud_share"].items():
        ans = " / ".join(f"{100 * a:.0f}%" for a in p["answered"])
        lines.append(f"  cloud share <= {s}: quality {p['quality']:.4f}{_ci(ci.get('q@' + s))}, "
                     f"cost {p['cost']:.3f}{_ci(ci.get('cost@' + s))}, answered by tier "
                     f"{ans}, pass shares {p['pass_shares']}")
    if ci:
        lines.append(f"[lo, hi]: bootstrap {ci['level']:.0%} interval over prompts "
                     f"({ci['n_boot']} resamples, the grid recalibrated on each)")
    return "\n".join(lines)


def _ci(v) -> str:
    if not v:
        return ""
    return " [" + ", ".join("n/a" if x is None else f"{x:.3f}" for x in v) + "]"


def _f(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"
