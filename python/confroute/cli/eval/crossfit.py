"""`confroute eval crossfit`: add out-of-fold scores of trained routers to an outcome table."""
from __future__ import annotations

import os

HELP = ("add out-of-fold scores of trained routers to a table (signal:cv_<router>_<target>), "
        "for replay")


def add_arguments(c) -> None:
    c.add_argument("--table", required=True, help="an outcome table (eval build's --out)")
    c.add_argument("--out", required=True, help="the table with the new signal columns")
    c.add_argument("--router", action="append", required=True,
                   choices=["sw", "mf", "mlp", "knn", "sep"], help="repeatable")
    c.add_argument("--target", action="append", default=None,
                   choices=["accuracy", "error", "se"],
                   help="labels: accuracy (RouteLLM), error (the edge was wrong), se (the "
                        "edge's SE above the training folds' best split); repeatable "
                        "(default: accuracy)")
    c.add_argument("--se-signal", default="se_kuhn",
                   help="the SE column the se target reads (e.g. exec_se_kuhn)")
    c.add_argument("--folds", type=int, default=5)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a router option, as for `confroute train` (applies to every router "
                        "that takes it)")
    c.add_argument("--edge", default=None, metavar="MODEL",
                   help="sep: the edge model that made the table (a name from `confroute "
                        "models` or a GGUF path)")
    c.add_argument("--hidden-cache", default=None,
                   help="sep: an .npz that keeps the hidden states (reused on a rerun)")


def run(args) -> int:
    import inspect

    from confroute.cli.train import parse_params
    from confroute.eval.crossfit import crossfit, edge_hidden, signal_name, with_signal
    from confroute.eval.data import load_table
    from confroute.routers.base import router_class

    if os.path.abspath(args.out) == os.path.abspath(args.table):
        raise ValueError("--out must differ from --table (the table you gave is kept)")
    table = load_table(args.table)
    params = parse_params(args.param)
    hidden = None
    if "sep" in args.router:
        if not args.edge:
            raise ValueError("router 'sep' needs --edge: the model that made the table")
        from confroute.routers.sep import SEPRouter

        edge = SEPRouter(edge_model=args.edge).edge  # the model sep serves with
        hidden = edge_hidden(table, edge, args.hidden_cache)
        edge.close()
    for router in args.router:
        # each router gets the --param options its constructor takes
        taken = inspect.signature(router_class(router).__init__).parameters
        kw = {k: v for k, v in params.items() if k in taken}
        for target in args.target or ["accuracy"]:
            if router == "sep" and target == "accuracy":
                print(f"skipped sep/{target}: the probe learns the edge's own targets")
                continue
            name = signal_name(router, target)
            scores, info = crossfit(table, router, target, se_signal=args.se_signal,
                                    folds=args.folds, seed=args.seed, params=kw, hidden=hidden)
            table = with_signal(table, name, scores, info)
            layers = [f.get("layer") for f in info["fold_info"] if "layer" in f]
            print(f"signal:{name}: {args.folds} folds" +
                  (f", layers {layers}" if layers else ""))
    table.save(args.out)
    print(f"wrote {args.out}; replay it with:\n  confroute eval replay --table {args.out} "
          f"--router random --router oracle --router signals --out DIR")
    return 0
