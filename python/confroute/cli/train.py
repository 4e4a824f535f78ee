"""`confroute train`: train a router on preference labels and save it to a folder.

    confroute train --router sw --labels labels.jsonl --out routers/sw
    confroute train --router mlp --labels labels.jsonl --param hidden=64 --param alpha=0.01
    confroute train --router sep --labels se.jsonl --param target=error   # probe on the edge
"""
from __future__ import annotations

import json

ROUTERS = ("sw", "mf", "mlp", "knn", "sep")


def add_arguments(parser) -> None:
    parser.add_argument("--router", required=True, choices=ROUTERS)
    parser.add_argument("--labels", required=True, help="JSONL label file (pair schema)")
    parser.add_argument("--out", default=None,
                        help="folder to save the router in (default: <routers home>/<router>, "
                             "where the router string router-<name>-<threshold> finds it)")
    parser.add_argument("--strong", default=None, help="the strong model's name in the labels")
    parser.add_argument("--weak", default=None, help="the weak model's name in the labels")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a router option, e.g. k=3 (knn), gamma=10, top_k=1000 (sw), "
                             "rank=16 (mf), hidden=128 (mlp), target=se|error, layer=N, "
                             "C=0.05, edge_model=NAME|GGUF (sep); repeatable")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def parse_params(items) -> dict:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--param takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string, e.g. index=ivf
    return out


def run(args) -> int:
    import os
    import time

    from confroute.labels import label_counts, read_labels
    from confroute.routers import get_router

    rows = read_labels(args.labels)
    try:
        router = get_router(args.router, **parse_params(args.param))
    except TypeError as e:
        raise ValueError(f"bad --param for router {args.router!r}: {e}") from None
    out = args.out
    if out is None:
        from confroute.decision.names import routers_home

        out = os.path.join(routers_home(), args.router)
    t0 = time.perf_counter()
    router.fit(rows, strong=args.strong, weak=args.weak)
    seconds = time.perf_counter() - t0
    router.info["labels"] = os.path.abspath(args.labels)
    router.info["train_seconds"] = round(seconds, 3)
    router.save(out)
    summary = {"router": args.router, "out": out, "strong": router.strong, "weak": router.weak,
               "dim": getattr(router, "dim", None) or getattr(router, "n_embd", None),
               "embedder": getattr(router, "embedder_name", None) or
               f"{router.edge_name} layer {router.fitted_layer}",
               "n_train": router.info["n_train"], "seconds": round(seconds, 3)}
    if args.strong is None:
        summary["labels"] = label_counts(rows)
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>10}: {v}")
    return 0
