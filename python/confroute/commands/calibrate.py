"""`confroute calibrate`: the threshold that sends a target share of queries to the cloud.

A trained router, from calibration prompts (stored in its router.json, with the share reached
on held-out prompts); an online policy (a router string such as ``router-disagreement``), from
the scores an ``eval build`` table recorded for it, with the sampling they were drawn under:
the server config entry it prints carries that sampling, and ``serve`` warns when it serves
the policy under other sampling.

    confroute calibrate --router routers/sw --prompts prompts.jsonl --cloud-share 0.3
    confroute calibrate --router router-disagreement --table humaneval.csv --cloud-share 0.3
"""
from __future__ import annotations

import json
import os


def add_arguments(parser) -> None:
    parser.add_argument("--router", required=True,
                        help="a saved-router folder, or an online policy's router string "
                             "(router-se, router-disagreement, ...) with --table")
    parser.add_argument("--prompts", default=None,
                        help="prompts: .jsonl (prompt/question field), .csv or one per line")
    parser.add_argument("--table", default=None,
                        help="an eval build table: calibrate the online policy on its "
                             "signal column (the scores the server computes for it)")
    parser.add_argument("--field", default=None, help="the prompt field of a .jsonl/.csv")
    parser.add_argument("--cloud-share", type=float, required=True,
                        help="target share of queries sent to the cloud, in [0, 1]")
    parser.add_argument("--heldout", type=float, default=0.5,
                        help="share of the prompts kept aside to measure the share reached "
                             "(default 0.5; 0 = calibrate on all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration split")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    from confroute.labels import read_prompts
    from confroute.routers import Router
    from confroute.routers.calibrate import calibrate, split_prompts

    if args.table:
        return _from_table(args)
    if not args.prompts:
        raise ValueError("give --prompts (a saved router) or --table (an online policy)")
    path = os.path.join(args.router, "router.json")
    router = Router.load(args.router)
    prompts = read_prompts(args.prompts, args.field)
    cal, held = split_prompts(prompts, args.heldout, args.seed)
    result = calibrate(router, cal, args.cloud_share, held)
    # only router.json changes: the threshold and the calibration record
    with open(path) as f:
        config = json.load(f)
    config["threshold"] = result.threshold
    config.setdefault("info", {})["calibration"] = {**result.to_dict(),
                                                    "prompts": os.path.abspath(args.prompts)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=1)
    os.replace(tmp, path)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"threshold {result.threshold:.6g}: cloud share {result.calibration_share:.3f} on "
              f"{result.n_calibration} calibration prompts (target {args.cloud_share:g})")
        if result.heldout_share is not None:
            print(f"held-out: cloud share {result.heldout_share:.3f} on {result.n_heldout} "
                  f"prompts")
    return 0


def _from_table(args) -> int:
    """An online policy's threshold from a table's recorded scores of it."""
    import numpy as np

    from confroute.eval.data import load_table
    from confroute.eval.live import policy_name
    from confroute.routers.calibrate import threshold_for_share
    from confroute.routers.policy import ONLINE

    name = policy_name(args.router)
    if name not in ONLINE:
        raise ValueError(f"--table calibrates an online policy ({', '.join(ONLINE)}); "
                         f"{args.router!r} is not one: give a saved router --prompts")
    table = load_table(args.table)
    scores = np.asarray(table.signal(name), np.float64)
    # an undefined score escalates (as served): it counts as above every threshold
    finite = scores[np.isfinite(scores)]
    t = threshold_for_share(finite, args.cloud_share, unit_interval=False)
    share = float(np.mean(~(scores <= t)))
    sampling = dict(table.meta.get("sampling") or {})
    entry = {"name": name, "thresholds": [t], "calibrated_sampling": sampling}
    out = {"router": f"router-{name}-{t:g}", "threshold": t, "target_share": args.cloud_share,
           "calibration_share": share, "n_calibration": int(scores.size),
           "table": os.path.abspath(args.table), "server_config_router": entry}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['router']}: cloud share {share:.3f} on {scores.size} prompts of "
              f"{args.table} (target {args.cloud_share:g}); measured under sampling "
              f"{sampling or 'unknown'}")
        print("server config entry: " + json.dumps(entry))
    return 0
