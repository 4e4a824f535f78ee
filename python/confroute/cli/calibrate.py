"""`confroute calibrate`: the threshold that sends a target share of queries to the cloud, or
the one that keeps the quality drop against all-cloud within a bound, with a guarantee.

A trained router, from calibration prompts (stored in its router.json, with the share reached
on held-out prompts); an online policy (a router string such as ``router-disagreement``), from
the scores an ``eval build`` table recorded for it, with the sampling they were drawn under:
the server config entry it prints carries that sampling, and ``serve`` warns when it serves
the policy under other sampling. ``--signal NAME`` names any signal column of the table.

A staged router without thresholds (``--router router-answer_logprob+disagreement``) is
calibrated from a table's scores by quantiles, for ``--cloud-share`` with ``--sample-budget B``
(the ladder: the share of prompts sampled) or ``--skip S`` (cascade routing: the share the
first stage, a query router, sends up unanswered): see :mod:`confroute.eval.ladder`.

``--max-quality-drop EPS --delta D`` needs both models' quality per prompt, so it takes an
outcome table (``--table``): the threshold whose quality drop against all-cloud is at most
EPS with probability >= 1 - D over the calibration draw (Learn then Test; see
:func:`confroute.routers.calibrate.threshold_for_quality_drop`). A saved router is scored on
the table's prompts (``--heldout`` of them kept aside to measure the share and drop reached);
an online policy or ``--signal`` reads its column.

    confroute calibrate --router routers/sw --prompts prompts.jsonl --cloud-share 0.3
    confroute calibrate --router router-disagreement --table humaneval.csv --cloud-share 0.3
    confroute calibrate --router router-se --table mmlu_qwen.csv --max-quality-drop 0.05 --delta 0.05
    confroute calibrate --router routers/sw --table outcomes.csv --max-quality-drop 0.05
    confroute calibrate --router router-answer_logprob+disagreement --table humaneval.csv \
        --cloud-share 0.3 --sample-budget 0.35
    confroute calibrate --router router-routers/sw+disagreement --table humaneval.csv \
        --cloud-share 0.3 --skip 0.1

A chain of tiers (``--tier MODEL:SIGNAL`` ..., the last ``--tier MODEL``; ``--join`` more
tables on prompt id) gets every climbing tier's threshold for one ``--cloud-share``: the
grid point of pass shares with the best quality among those whose last tier answers at
most that share (:mod:`confroute.eval.chain`); it prints the chain's server config entry.

    confroute calibrate --table smol.csv --join qwen.csv --cloud-share 0.2 \
        --tier smollm2-135m-instruct:answer_logprob \
        --tier qwen2.5-coder-0.5b-instruct:answer_logprob --tier qwen2.5-coder-1.5b-instruct
"""
from __future__ import annotations

import json
import os


def add_arguments(parser) -> None:
    from confroute.cli.eval.chain import add_chain_arguments
    from confroute.routers.calibrate import BOUNDS, LOSSES

    parser.add_argument("--router", default=None,
                        help="a saved-router folder, or an online policy's router string "
                             "(router-se, router-disagreement, ...) with --table")
    parser.add_argument("--signal", default=None, metavar="NAME",
                        help="with --table: calibrate on the table's signal:NAME column "
                             "(higher = cloud) instead of naming a policy with --router")
    parser.add_argument("--prompts", default=None,
                        help="prompts: .jsonl (prompt/question field), .csv or one per line")
    parser.add_argument("--table", default=None,
                        help="an eval build table: calibrate the online policy on its "
                             "signal column (the scores the server computes for it), or a "
                             "saved router on the table's prompts and outcomes")
    parser.add_argument("--field", default=None, help="the prompt field of a .jsonl/.csv")
    goal = parser.add_mutually_exclusive_group(required=True)
    goal.add_argument("--cloud-share", type=float, default=None,
                      help="target share of queries sent to the cloud, in [0, 1]")
    goal.add_argument("--max-quality-drop", type=float, default=None, metavar="EPS",
                      help="with --table: the largest mean quality drop against all-cloud "
                           "to allow (quality units, e.g. 0.05 = 5 points of accuracy), "
                           "held with probability >= 1 - --delta")
    parser.add_argument("--delta", type=float, default=0.05,
                        help="--max-quality-drop: the chance the bound may fail (default 0.05)")
    parser.add_argument("--bound", choices=BOUNDS, default="hb",
                        help="--max-quality-drop: the concentration bound (hb = "
                             "Hoeffding-Bentkus, default)")
    parser.add_argument("--loss", choices=LOSSES, default="both",
                        help="--max-quality-drop: bound the signed loss, its positive part "
                             "(tighter on small drops), or both at delta/2 each (default)")
    parser.add_argument("--sample-budget", type=float, default=None, metavar="B",
                        help="a staged --router (router-FIRST+SECOND): the ladder, sampling "
                             "a band of B of the table's prompts around the target share")
    parser.add_argument("--skip", type=float, default=None, metavar="S",
                        help="a staged --router: cascade routing, FIRST (a query router) "
                             "sending its top S share up before the edge answers")
    # a chain (see `confroute eval chain`): with --table and --cloud-share, every tier's
    # threshold
    add_chain_arguments(parser, required=False)
    parser.add_argument("--heldout", type=float, default=0.5,
                        help="share of the prompts kept aside to measure the share reached "
                             "(default 0.5; 0 = calibrate on all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration split")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    if args.tier:
        return _chain_on_table(args)
    if args.join:
        raise ValueError("--join joins tables for a chain: give its tiers with --tier")
    if args.router and "+" in args.router:
        return _staged_on_table(args)
    if args.sample_budget is not None or args.skip is not None:
        raise ValueError("--sample-budget and --skip calibrate a staged router: give "
                         "--router router-FIRST+SECOND (e.g. router-answer_logprob+"
                         "disagreement)")
    if args.table:
        if args.router and os.path.isdir(args.router) and not args.signal:
            return _saved_on_table(args)
        return _from_table(args)
    if not args.router:
        raise ValueError("give --router (with --prompts or --table), or --table and --signal")
    if args.signal:
        raise ValueError("--signal names a column of an outcome table: give --table")
    if args.max_quality_drop is not None:
        raise ValueError("--max-quality-drop needs both models' quality on each calibration "
                         "prompt: give an outcome table with --table (eval build's --out, or "
                         "a CSV with a prompt column and one quality column per model)")
    if not args.prompts:
        raise ValueError("give --prompts (a saved router) or --table (an online policy)")
    import confroute.eval.baselines  # noqa: F401  (a saved se router loads too)
    from confroute.labels import read_prompts
    from confroute.routers import Router
    from confroute.routers.calibrate import calibrate, split_prompts

    router = Router.load(args.router)
    prompts = read_prompts(args.prompts, args.field)
    cal, held = split_prompts(prompts, args.heldout, args.seed)
    result = calibrate(router, cal, args.cloud_share, held)
    _store(args.router, result.threshold, {**result.to_dict(),
                                           "prompts": os.path.abspath(args.prompts)})
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"threshold {result.threshold:.6g}: cloud share {result.calibration_share:.3f} on "
              f"{result.n_calibration} calibration prompts (target {args.cloud_share:g})")
        if result.heldout_share is not None:
            print(f"held-out: cloud share {result.heldout_share:.3f} on {result.n_heldout} "
                  f"prompts")
    return 0


def _store(folder: str, threshold: float, record: dict) -> None:
    """Only router.json changes: the threshold and the calibration record."""
    path = os.path.join(folder, "router.json")
    with open(path) as f:
        config = json.load(f)
    config["threshold"] = threshold
    config.setdefault("info", {})["calibration"] = record
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, path)


def _guaranteed(args, scores, q_weak, q_strong, scale, unit_interval: bool = True):
    """The ``--max-quality-drop`` threshold of these scores: (threshold, cloud share on them,
    the fields it gives the output)."""
    from confroute.routers.calibrate import threshold_for_quality_drop

    t, share, details = threshold_for_quality_drop(
        scores, q_weak, q_strong, args.max_quality_drop, args.delta, quality_range=scale,
        unit_interval=unit_interval, bound=args.bound, loss=args.loss)
    return t, share, {"threshold": t, "max_quality_drop": args.max_quality_drop,
                      "delta": args.delta, "calibration_share": share,
                      "calibration_drop": details["calibration_drop"], "guarantee": details}


def _saved_on_table(args) -> int:
    """A saved router's threshold from an outcome table: its scores on the table's prompts,
    the qualities from the table; ``--heldout`` of the rows measure what was reached."""
    import numpy as np

    import confroute.eval.baselines  # noqa: F401  (a saved se router loads too)
    from confroute.eval.data import load_table
    from confroute.routers import Router
    from confroute.routers.calibrate import quality_drop, split_prompts, threshold_for_share

    router = Router.load(args.router)
    table = load_table(args.table)
    scores = np.asarray(router.score(list(table.prompts)), np.float64)
    cal, held = (np.asarray(x, dtype=int) for x in
                 split_prompts(list(range(len(table))), args.heldout, args.seed))
    qw, qs = table.q_weak, table.q_strong
    out = {"table": os.path.abspath(args.table), "n_calibration": int(cal.size)}
    if args.max_quality_drop is not None:
        t, share, fields = _guaranteed(args, scores[cal], qw[cal], qs[cal], table.scale)
        out.update(fields)
    else:
        t = threshold_for_share(scores[cal], args.cloud_share)
        share = float(np.mean(scores[cal] > t))
        out.update(threshold=t, target_share=args.cloud_share, calibration_share=share,
                   calibration_drop=quality_drop(scores[cal], qw[cal], qs[cal], t))
    if held.size:
        out.update(n_heldout=int(held.size),
                   heldout_share=float(np.mean(scores[held] > t)),
                   heldout_drop=quality_drop(scores[held], qw[held], qs[held], t))
    _store(args.router, t, out)
    if args.json:
        print(json.dumps(out))
        return 0
    goal = (f"quality drop <= {args.max_quality_drop:g} with probability >= "
            f"{1 - args.delta:g}" if args.max_quality_drop is not None
            else f"target share {args.cloud_share:g}")
    print(f"threshold {t:.6g} ({goal}): cloud share {out['calibration_share']:.3f}, quality "
          f"drop {out['calibration_drop']:+.4f} on {cal.size} calibration rows of "
          f"{args.table}")
    if held.size:
        print(f"held-out: cloud share {out['heldout_share']:.3f}, quality drop "
              f"{out['heldout_drop']:+.4f} on {held.size} rows")
    return 0


def _calibrated_under(table) -> dict:
    """A server config router entry's record of what its thresholds were measured under: the
    table's sampling, and its edge model where that ran live (a recorded one names no model
    the server could load)."""
    out = {"calibrated_sampling": dict(table.meta.get("sampling") or {})}
    if (table.meta.get("models") or {}).get(table.weak) == "live":
        out["calibrated_edge"] = table.weak
    return out


def _from_table(args) -> int:
    """An online policy's (or a signal column's) threshold from a table's recorded scores."""
    import numpy as np

    from confroute.eval.data import load_table
    from confroute.routers.calibrate import threshold_for_share
    from confroute.decision.names import ONLINE

    name = _table_column(args)
    table = load_table(args.table)
    scores = np.asarray(table.signal(name), np.float64)
    if table.signal_higher(name) != "cloud":
        raise ValueError(f"signal {name!r}: a higher value means the edge is surer (the "
                         f"table's meta says higher=edge); calibration needs higher = cloud")
    under = _calibrated_under(table)
    sampling = under["calibrated_sampling"]
    if args.max_quality_drop is not None:
        # an undefined score escalates (as served): NaN counts as above every threshold
        t, share, out = _guaranteed(args, scores, table.q_weak, table.q_strong, table.scale,
                                    unit_interval=False)
    else:
        # an undefined score escalates (as served): it counts as above every threshold
        finite = scores[np.isfinite(scores)]
        t = threshold_for_share(finite, args.cloud_share, unit_interval=False)
        share = float(np.mean(~(scores <= t)))
        out = {"threshold": t, "target_share": args.cloud_share, "calibration_share": share}
    out.update(n_calibration=int(scores.size), table=os.path.abspath(args.table))
    entry = None
    if name in ONLINE:
        entry = {"name": name, "thresholds": [t], **under}
        out = {"router": f"router-{name}-{t:g}", **out, "server_config_router": entry}
    else:
        out = {"signal": name, **out}
    if args.json:
        print(json.dumps(out))
        return 0
    goal = (f"quality drop <= {args.max_quality_drop:g} with probability >= "
            f"{1 - args.delta:g}; drop {out['calibration_drop']:+.4f} on the table"
            if args.max_quality_drop is not None else f"target {args.cloud_share:g}")
    what = out.get("router") or f"signal:{name} threshold {t:g}"
    print(f"{what}: cloud share {share:.3f} on {scores.size} prompts of {args.table} "
          f"({goal}); measured under sampling {sampling or 'unknown'}")
    if entry is not None:
        print("server config entry: " + json.dumps(entry))
    return 0


def _table_column(args) -> str:
    """The table's score column that ``--signal`` or ``--router`` (an online policy) names."""
    from confroute.decision.names import ONLINE
    from confroute.eval.live import policy_name

    if args.signal:
        name = args.signal
        if args.router and policy_name(args.router) != name:
            raise ValueError(f"--router {args.router!r} and --signal {name!r} name different "
                             f"columns; give one")
    elif args.router:
        name = policy_name(args.router)
        if name not in ONLINE:
            raise ValueError(f"--table calibrates an online policy ({', '.join(ONLINE)}); "
                             f"{args.router!r} is not one: give a saved router --prompts")
    else:
        raise ValueError("--table needs --router (an online policy or a saved-router folder) "
                         "or --signal NAME")
    return name


def _staged_on_table(args) -> int:
    """A two-stage router's thresholds from a table's scores, for a cloud share: the ladder
    (``--sample-budget``) or cascade routing (``--skip``), by quantiles
    (:mod:`confroute.eval.ladder`); no outcomes are read."""
    from confroute.eval.data import load_table
    from confroute.eval.router_scores import staged_scores

    body = args.router[len("router-"):] if args.router.startswith("router-") else args.router
    stages = body.split("+")
    if len(stages) != 2 or not all(stages):
        raise ValueError(f"--router {args.router!r}: calibration sets the thresholds of two "
                         "stages: router-FIRST+SECOND (e.g. router-answer_logprob+"
                         "disagreement)")
    if not args.table or args.cloud_share is None:
        raise ValueError("a staged router is calibrated on a table's scores for a cloud "
                         "share: give --table and --cloud-share")
    if (args.sample_budget is None) == (args.skip is None):
        raise ValueError("a staged router needs --sample-budget B (the ladder) or --skip S "
                         "(cascade routing), one of them")
    first, second = stages
    kind, param = (("ladder", args.sample_budget) if args.skip is None
                   else ("cascade", args.skip))
    table = load_table(args.table)
    scored = staged_scores(table, f"{kind}:{first},{second},{param}")
    c = scored.at(args.cloud_share)
    router = c.router(first, second)
    under = _calibrated_under(table)
    sampling = under["calibrated_sampling"]
    entries = []
    name = router[len("router-"):].rpartition("-")[0]
    if scored.info["first_from"] == "router" and os.path.isdir(first):
        # the server names a trained stage by its entry, which holds the folder
        short = os.path.basename(os.path.normpath(first))
        entries.append({"name": short, "path": os.path.abspath(first), "thresholds": [c.hi]})
        name = short + name[len(first):]
    entries.append({"name": name, "thresholds": [c.threshold], **under})
    out = {"router": router, "kind": kind, ("sample_budget" if kind == "ladder" else "skip"):
           param, "first": {"name": first, "lo": c.lo, "hi": c.hi},
           "second": {"name": second, "threshold": c.threshold},
           "target_share": args.cloud_share, "calibration_share": c.cloud_share,
           "sampled_share": c.sampled_share, "n_calibration": len(table),
           "table": os.path.abspath(args.table), "server_config_routers": entries}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{router}: cloud share {c.cloud_share:.3f} (target {args.cloud_share:g}), samples "
          f"drawn for {c.sampled_share:.3f} of {len(table)} prompts of {args.table}; measured "
          f"under sampling {sampling or 'unknown'}")
    print("server config entries: " + ", ".join(json.dumps(e) for e in entries))
    return 0


def _chain_on_table(args) -> int:
    """A chain's thresholds for a cloud share on a chain table (:mod:`confroute.eval.chain`:
    the best quality among the grid points that send at most that share to the last tier)."""
    from confroute.cli.eval.chain import load_chain
    from confroute.eval.chain import best_at_share, grid_points, served_thresholds

    if not args.table or args.cloud_share is None:
        raise ValueError("a chain is calibrated on a chain table for a cloud share: give "
                         "--table and --cloud-share")
    if args.router or args.signal:
        raise ValueError("--tier names each tier's signal: leave out --router and --signal")
    table, cs = load_chain(args)
    point = best_at_share(grid_points(cs, args.step), args.cloud_share)
    ts = served_thresholds(cs, point)
    tiers = [{"edge": m, "router": f"router-{s}-{t:g}"} for m, s, t in
             zip(cs.models, cs.signals, ts)]
    out = {"tiers": tiers, "last": cs.models[-1], "target_share": args.cloud_share,
           **point.as_dict(), "thresholds": ts, "n_calibration": len(cs),
           "table": os.path.abspath(args.table),
           "server_config_chain": {"name": "chain", "tiers": tiers}}
    if args.json:
        print(json.dumps(out))
        return 0
    path = " -> ".join(f"{t['edge']} ({t['router']})" for t in tiers) + f" -> {cs.models[-1]}"
    ans = " / ".join(f"{100 * a:.0f}%" for a in point.answered)
    print(f"{path}: last-tier share {point.answered[-1]:.3f} (target {args.cloud_share:g}), "
          f"quality {point.quality:.4f}, cost {point.cost:.3f} per query, answered by tier "
          f"{ans} on {len(cs)} prompts of {table.name}")
    print("server config chain (name each tier's edge as your config does): "
          + json.dumps(out["server_config_chain"]))
    return 0
