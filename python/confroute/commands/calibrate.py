"""`confroute calibrate`: store the threshold that sends a target share of queries to the
cloud, from calibration prompts, and report the share reached on held-out prompts.

    confroute calibrate --router routers/sw --prompts prompts.jsonl --cloud-share 0.3
"""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--router", required=True, help="a saved-router folder")
    parser.add_argument("--prompts", required=True,
                        help="prompts: .jsonl (prompt/question field), .csv or one per line")
    parser.add_argument("--field", default=None, help="the prompt field of a .jsonl/.csv")
    parser.add_argument("--cloud-share", type=float, required=True,
                        help="target share of queries sent to the cloud, in [0, 1]")
    parser.add_argument("--heldout", type=float, default=0.5,
                        help="share of the prompts kept aside to measure the share reached "
                             "(default 0.5; 0 = calibrate on all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration split")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    import os

    from confroute.labels import read_prompts
    from confroute.routers import Router
    from confroute.routers.calibrate import calibrate, split_prompts

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
