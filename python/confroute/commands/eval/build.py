"""`confroute eval`: replay routers over recorded outcomes, build outcome tables live, judge.

    confroute eval replay --benchmark gsm8k --data shared/data --router random --router oracle --out D
    confroute eval replay --table my_outcomes.csv --router scores:se.csv --out D
    confroute eval build --benchmark mmlu --data shared/data --limit 300 --edge qwen2.5-coder-0.5b-instruct \
        --cloud recorded:gpt-4-1106-preview --checkpoint ck.jsonl --out table.csv
    confroute eval replay --table table.csv --router random --router oracle --router signals --out D
    confroute eval crossfit --table table.csv --router mlp --router sep --target se --target error \
        --edge qwen2.5-coder-0.5b-instruct --out table_cv.csv
    confroute eval report D1 D2 --out R
"""
from __future__ import annotations

import json
import math
import os


def add_arguments(parser) -> None:
    from confroute.eval.live import DEFAULT_POLICIES
    from confroute.routing import DEFAULT_SAMPLING
    from confroute.scorer import MEANINGS

    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION")
    r = sub.add_parser("replay", help="sweep routers over recorded outcomes: metrics.json, plot")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--benchmark", choices=["gsm8k", "mmlu", "mt-bench"],
                     help="a benchmark in the --data folder")
    src.add_argument("--table", help="a CSV/JSONL: prompt + one quality column per model")
    r.add_argument("--data", default=os.environ.get("CONFROUTE_DATA"),
                   help="folder laid out like shared/data (default: $CONFROUTE_DATA)")
    r.add_argument("--split", default="dev", help="file suffix of the split (default: dev)")
    r.add_argument("--weak", help="the weak (edge) model's column")
    r.add_argument("--strong", help="the strong (cloud) model's column")
    r.add_argument("--router", action="append", default=None, metavar="SPEC",
                   help="a registered name (random, oracle, random:seed=3), scores:FILE"
                        "[,column=NAME,higher=edge], signal:NAME[,higher=edge] (a signal "
                        "column of the table; higher = send to the cloud unless higher=edge), "
                        "signals (every signal column, in its recorded direction), a "
                        "saved-router folder, or length (a live table: the edge's answer "
                        "length in tokens from eval build's checkpoint, longer = cloud); "
                        "repeatable")
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

    b = sub.add_parser("build", help="run an edge and a cloud model over a benchmark "
                                     "(checkpointed, resumable) and write an outcome table")
    b.add_argument("--benchmark", required=True,
                   help="gsm8k, mmlu, mt-bench (or a registered plug-in benchmark)")
    b.add_argument("--data", default=os.environ.get("CONFROUTE_DATA"))
    b.add_argument("--split", default="dev")
    b.add_argument("--limit", type=int, default=None,
                   help="a seeded sample of N questions, stratified by subject/category")
    b.add_argument("--seed", type=int, default=0,
                   help="seed of the --limit sample, the k-shot examples and the edge samples")
    b.add_argument("--include-contaminated", action="store_true",
                   help="keep the prompts RouteLLM marks as contaminated (dropped by default)")
    b.add_argument("--checkpoint", required=True, help="JSONL checkpoint (resumed if present)")
    b.add_argument("--out", required=True, help="outcome table to write (.csv or .jsonl)")
    b.add_argument("--edge", default=None, metavar="MODEL",
                   help="the edge: a model name from `confroute models`, a GGUF path, or "
                        "recorded:MODEL (the benchmark's recorded outcomes of MODEL); "
                        "default: the default edge model")
    b.add_argument("--cloud", default=None, metavar="MODEL",
                   help="the cloud: recorded:MODEL (e.g. recorded:gpt-4-1106-preview), a model "
                        "name or GGUF path run in-process, or see --cloud-url")
    b.add_argument("--edge-model", default=None, help="GGUF path (same as --edge PATH); with "
                   "--edge-url, the server's model name")
    b.add_argument("--edge-url", default=None, help="an edge served over HTTP: its "
                   "OpenAI-compatible base URL (answers by chat: no cue, no signal columns)")
    b.add_argument("--cloud-url", default=None, help="OpenAI-compatible base URL")
    b.add_argument("--cloud-model", default=None)
    b.add_argument("--max-tokens", type=int, default=None,
                   help="answer and sample length (default: the benchmark's; gsm8k 512)")
    b.add_argument("--samples", type=int, default=DEFAULT_SAMPLING.n,
                   help="edge samples per prompt for the policies (0 = none)")
    b.add_argument("--sample-temperature", type=float, default=DEFAULT_SAMPLING.temperature)
    b.add_argument("--threshold", type=float, default=0.8,
                   help="cosine similarity that joins two samples' meanings (embedding)")
    b.add_argument("--meaning", choices=MEANINGS, default="auto",
                   help="how samples are judged alike, as `serve`'s config 'meaning' "
                        "(default auto: execution for code, final answer for math)")
    b.add_argument("--policy", action="append", default=None, metavar="ROUTER",
                   help="a served policy whose score becomes a signal column (a router "
                        "string, threshold left out: router-disagreement, router-sep, or a "
                        "saved router's folder as router-PATH); repeatable; default: "
                        + ", ".join(DEFAULT_POLICIES))
    b.add_argument("--shots", type=int, default=5, help="mmlu: solved examples per question")
    b.add_argument("--regrade", action="store_true",
                   help="grade the checkpointed answers again (after a grader fix)")
    b.add_argument("--judge-url", default=None, help="mt-bench: the judge's base URL "
                   "(default: the cloud model judges)")
    b.add_argument("--judge-model", default=None)
    b.add_argument("--judge-cache", default=None,
                   help="mt-bench: judge cache (default: <checkpoint>.judge.jsonl)")
    b.add_argument("--judge-prompts", default=None, help="FastChat judge_prompts.jsonl")
    b.add_argument("--no-progress", action="store_true")
    from confroute.distributed import add_ray_arguments

    add_ray_arguments(b)

    c = sub.add_parser("crossfit", help="add out-of-fold scores of trained routers to a table "
                                        "(signal:cv_<router>_<target>), for replay")
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

    pf = sub.add_parser("prefix", help="add the SE of each prompt's first K samples to a "
                                       "table (signal:<exec|exact>_se_<kind>_n<K>), from the "
                                       "samples eval build kept in draw order")
    pf.add_argument("--table", required=True, help="an outcome table (eval build's --out)")
    pf.add_argument("--samples", type=int, action="append", required=True, metavar="K",
                    help="samples to keep (repeatable)")
    pf.add_argument("--start", type=int, default=0,
                    help="skip this many samples first: another window of the same draws "
                         "(signal names end in _from<START>), to see SE's draw-to-draw noise")
    pf.add_argument("--checkpoint", default=None,
                    help="eval build's checkpoint (default: the one the table's meta names)")
    pf.add_argument("--out", required=True, help="the table with the new signal columns")

    ad = sub.add_parser("adaptive", help="replay adaptive SE on the samples eval build kept "
                                         "in draw order: samples drawn, decisions identical "
                                         "to full-n SE")
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

    rp = sub.add_parser("report", help="the paper's Table 1 (Markdown + PNG) from replay "
                                       "output folders")
    rp.add_argument("folders", nargs="+", metavar="FOLDER",
                    help="`eval replay --out` folders (one per benchmark/table)")
    rp.add_argument("--out", default=None, help="output folder (default: the first FOLDER)")

    j = sub.add_parser("judge", help="grade answers with an LLM judge (cached on disk)")
    j.add_argument("--mode", choices=["single", "pairwise", "best-of-k"], default="single")
    j.add_argument("--answers", required=True,
                   help="JSONL rows: single {question, answer[, reference]}; pairwise "
                        "{question, answer_a, answer_b[, reference]}; best-of-k {question, "
                        "ground_truth, answers: {system: text}}")
    j.add_argument("--judge-url", default=None,
                   help="OpenAI-compatible base URL (default: the local Qwen in-process)")
    j.add_argument("--judge-model", default=None)
    j.add_argument("--judge-prompts", default=None, help="FastChat judge_prompts.jsonl")
    j.add_argument("--cache", required=True, help="judge cache (JSONL); reruns are free")
    j.add_argument("--out", required=True, help="results JSONL")
    j.add_argument("--max-tokens", type=int, default=512)


def run(args) -> int:
    if args.eval_command == "replay":
        return _replay(args)
    if args.eval_command == "build":
        return _build(args)
    if args.eval_command == "judge":
        return _judge(args)
    if args.eval_command == "crossfit":
        return _crossfit(args)
    if args.eval_command == "prefix":
        return _prefix(args)
    if args.eval_command == "adaptive":
        return _adaptive(args)
    if args.eval_command == "report":
        from confroute.eval.report import write_report

        paths = write_report(args.folders, args.out or args.folders[0])
        print(open(paths["markdown"]).read())
        print(f"wrote {paths['markdown']}, {paths['png']}")
        return 0
    raise ValueError("choose an action: confroute eval replay | build | crossfit | prefix | "
                     "adaptive | report | judge (see --help)")


def _crossfit(args) -> int:
    import inspect

    from confroute.commands.train import parse_params
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


def _draws(args, table):
    """The table's rows' per-sample draws, in the table's row order."""
    from confroute.eval.prefix import checkpoint_records, draws_of

    ck = args.checkpoint or table.meta.get("checkpoint")
    if not ck:
        raise ValueError(f"{args.table}: the table's meta names no checkpoint: give "
                         f"--checkpoint")
    if not args.checkpoint and not os.path.exists(ck):
        ck = os.path.join(os.path.dirname(os.path.abspath(args.table)), ck)
    if not os.path.exists(ck):
        raise ValueError(f"checkpoint not found: {ck}")
    recs = {r.id: r for r in checkpoint_records(ck, table.meta.get("signals_from"))}
    missing = [i for i in table.ids if i not in recs]
    if missing or not table.ids:
        raise ValueError(f"{ck}: no record of {len(missing) or 'any'} of the table's rows "
                         f"(first: {missing[0] if missing else None!r})")
    return draws_of([recs[i] for i in table.ids])


def _prefix(args) -> int:
    from confroute.eval.crossfit import with_signal
    from confroute.eval.data import load_table
    from confroute.eval.prefix import prefix_signals

    if os.path.abspath(args.out) == os.path.abspath(args.table):
        raise ValueError("--out must differ from --table (the table you gave is kept)")
    table = load_table(args.table)
    draws = _draws(args, table)
    for k in args.samples:
        for name, values in prefix_signals(draws, k, args.start).items():
            table = with_signal(table, name, values)
            print(f"signal:{name}")
    table.save(args.out)
    print(f"wrote {args.out}")
    return 0


def _adaptive(args) -> int:
    from confroute.eval.data import load_table
    from confroute.eval.prefix import adaptive_replay, prefix_se, share_threshold
    from confroute.eval.replay import mean_intervals

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


def _replay(args) -> int:
    from confroute.eval.data import load_benchmark, load_table
    from confroute.eval.metrics import cost_at_share
    from confroute.eval.replay import DEFAULT_SHARES, replay

    if args.benchmark:
        if not args.data:
            raise ValueError("--benchmark needs --data (or $CONFROUTE_DATA)")
        table = load_benchmark(args.benchmark, args.data, split=args.split, weak=args.weak,
                               strong=args.strong,
                               include_contaminated=args.include_contaminated)
    else:
        table = load_table(args.table, weak=args.weak, strong=args.strong)
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
    edge, cloud = _prices(args.edge_price, "--edge-price"), _prices(args.cloud_price,
                                                                     "--cloud-price")
    if edge or cloud:
        from confroute.eval.metrics import Prices

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
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(_clean(out), f, indent=2)
    _write_curves(report, os.path.join(args.out, "curves.csv"))
    if not args.no_plot:
        from confroute.eval.plot import plot_report

        plot_report(report, os.path.join(args.out, "quality_vs_cloud_calls.png"))
    print(format_table(report))
    print(f"wrote {args.out}/metrics.json, curves.csv"
          + ("" if args.no_plot else ", quality_vs_cloud_calls.png"))
    return 0


def _length_scores(args, table):
    """The length baseline's scores: the edge's answer tokens from eval build's checkpoint."""
    from confroute.eval.prefix import checkpoint_records
    from confroute.eval.replay import answer_length_scores

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


def _clean(x):
    """JSON has no NaN: undefined metrics are written as null."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
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
    lines += _risk_lines(report)
    for c in report.comparisons:
        lines.append(f"{c['a']} - {c['b']} (paired, {c['n_boot']} resamples): " + "; ".join(
            f"{name} {_signed(c[k], pct)}" for k, name, pct in
            (("apgr", "APGR", False), ("cpt50", "CPT50", True), ("cpt80", "CPT80", True),
             ("auroc", "AUROC", False))))
    return "\n".join(lines)


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
                 if "risk" in r.metrics), None)
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


def _build(args) -> int:
    from confroute.eval.outcomes import RECORDED, build_outcomes

    if not args.data:
        raise ValueError("--data (or $CONFROUTE_DATA) is needed")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if not 0 <= args.samples <= 15:
        raise ValueError(f"--samples must be in 0..15, got {args.samples}")
    if args.edge and args.edge_model:
        raise ValueError("give --edge or --edge-model, not both")
    if args.ray:
        return _build_ray(args)
    edge_name, edge, cloud_name, cloud = _sides(args)
    judge = None
    if args.benchmark == "mt-bench":
        judge = _judge_for(args, cloud)
    bench, items, settings = _plan(args, judge)
    models = {edge_name: edge, cloud_name: cloud}
    table = build_outcomes(items, models, checkpoint=args.checkpoint, weak=edge_name,
                           strong=cloud_name, name=bench.name, benchmark=bench,
                           settings=settings, regrade=args.regrade,
                           signals_from=None if edge == RECORDED else edge_name)
    return _saved(args, table, models)


def _sides(args):
    """(edge name, edge, cloud name, cloud): each a backend or RECORDED."""
    edge_name, edge = _side(args.edge or args.edge_model, "edge", args)
    cloud_name, cloud = _side(args.cloud, "cloud", args)
    if edge_name == cloud_name:
        edge_name, cloud_name = edge_name + " (edge)", cloud_name + " (cloud)"
    return edge_name, edge, cloud_name, cloud


def _plan(args, judge):
    """The benchmark, its items (a seeded stratified --limit) and the live settings."""
    from confroute.eval.benchmarks import get_benchmark, stratified_sample
    from confroute.eval.live import DEFAULT_POLICIES, LiveSettings

    bench = get_benchmark(args.benchmark, shots=args.shots, seed=args.seed,
                          max_tokens=args.max_tokens, judge=judge)
    items = bench.items(args.data, args.split, include_contaminated=args.include_contaminated)
    if args.limit:
        items = stratified_sample(items, args.limit, seed=args.seed)
    settings = LiveSettings(max_tokens=args.max_tokens, samples=args.samples,
                            sample_temperature=args.sample_temperature, seed=args.seed,
                            threshold=args.threshold, meaning=args.meaning,
                            policies=tuple(args.policy or DEFAULT_POLICIES))
    return bench, items, settings


class _BuildReplica:
    """What each Ray replica runs once: load the live sides' models, then answer and grade
    (item, model) pairs with :func:`confroute.eval.outcomes.live_record`, the builder's own
    step."""

    def __init__(self, args, bench, settings):
        self.args, self.bench, self.settings = args, bench, settings

    def __call__(self):
        from confroute.eval.outcomes import RECORDED, live_record

        edge_name, edge, cloud_name, cloud = _sides(self.args)
        models = {edge_name: edge, cloud_name: cloud}
        signals_from = None if edge == RECORDED else edge_name

        def work(key, pair):
            item, name = pair
            return live_record(self.bench, item, name, models[name], self.settings,
                               signals=name == signals_from).__dict__

        return work, {"names": [edge_name, cloud_name],
                      "recorded": [m for m, v in models.items() if v == RECORDED]}


def _build_ray(args) -> int:
    """The builder on Ray: the answers not yet in the checkpoint are computed in blocks
    (committed under ``<checkpoint>.blocks/``), then appended to the checkpoint in the order
    the single-process builder writes them, which then makes the table from it."""
    from confroute.distributed import BlockStore, RayJob, import_ray, ray_options
    from confroute.eval.outcomes import RECORDED, LiveRecord, build_outcomes

    if args.benchmark == "mt-bench":
        raise ValueError("--ray builds gsm8k and mmlu tables; mt-bench's judge keeps one "
                         "cache file, so build it without --ray")
    import_ray()  # the install hint before any work
    bench, items, settings = _plan(args, None)
    threads = os.environ.get("CONFROUTE_N_THREADS") or str(max(1, int(args.cpus_per_replica)))
    store = BlockStore(args.checkpoint + ".blocks")
    with RayJob(_BuildReplica(args, bench, settings),
                ray_options(args, env={"CONFROUTE_N_THREADS": threads})) as job:
        edge_name, cloud_name = job.info["names"]
        # the driver loads no model: the live sides are placeholders here
        models = {m: (RECORDED if m in job.info["recorded"] else None)
                  for m in job.info["names"]}
        live = [m for m in models if models[m] is None]
        grid = {(it.id, m): k for k, (it, m) in enumerate((it, m) for it in items
                                                           for m in live)}

        def runner(todo):
            tasks = [(grid[(it.id, m)], (it, m)) for it, m in todo]
            results = job.run(tasks, store, progress=not args.no_progress,
                              desc=f"{bench.name} outcomes", unit="answer",
                              initial=len(grid) - len(todo))
            return [LiveRecord(**results[k]) for k, _ in tasks]

        table = build_outcomes(items, models, checkpoint=args.checkpoint, weak=edge_name,
                               strong=cloud_name, name=bench.name, benchmark=bench,
                               settings=settings, regrade=args.regrade, progress=False,
                               signals_from=None if edge_name not in live else edge_name,
                               runner=runner)
    store.remove()
    if job.resumed:
        print(f"{job.resumed} answers came from the blocks an earlier run committed")
    if job.deaths:
        print(f"{len(job.deaths)} replica(s) lost and replaced, their blocks redone: "
              + "; ".join(job.deaths))
    return _saved(args, table, models)


def _saved(args, table, models) -> int:
    from confroute.eval.outcomes import RECORDED

    table.save(args.out)
    for m in models:
        src = "recorded" if models[m] == RECORDED else "live"
        sec = table.meta["seconds_per_prompt"].get(m)
        print(f"{m} ({src}): mean quality {table.column(m).mean():.4f} over {len(table)} "
              f"questions" + ("" if sec is None else f", {sec:.2f} s per prompt"))
    if table.signals:
        print(f"signals: {', '.join(sorted(table.signals))}")
    print(f"wrote {args.out} (+{os.path.basename(args.out)}.meta.json; checkpoint "
          f"{args.checkpoint}); replay it with:\n"
          f"  confroute eval replay --table {args.out} --router random --router oracle"
          + (" --router signals" if table.signals else "") + " --out DIR")
    return 0


def _side(spec, role, args):
    """(column name, backend or RECORDED) for --edge / --cloud."""
    from confroute import models
    from confroute.eval.outcomes import RECORDED

    if spec and spec.startswith("recorded:"):
        name = spec[len("recorded:"):]
        if not name:
            raise ValueError(f"--{role} recorded:MODEL needs the model's name")
        return name, RECORDED
    if role == "edge" and getattr(args, "edge_url", None):
        from confroute.models.http_edge import HttpEdge

        if not args.edge_model or args.edge:
            raise ValueError("--edge-url needs --edge-model (the server's model name), not --edge")
        m = HttpEdge(args.edge_url, args.edge_model)
        return m.name, m
    if role == "cloud" and args.cloud_url:
        if spec:
            raise ValueError("give --cloud or --cloud-url, not both")
        if not args.cloud_model:
            raise ValueError("--cloud-url needs --cloud-model (the server's model name)")
        m = models.CloudModel(args.cloud_url, args.cloud_model)
        return getattr(m, "name", args.cloud_model), m
    from confroute.models.edge import EdgeModel
    from confroute.models import store

    if not spec:
        spec = store.DEFAULT_EDGE if role == "edge" else store.DEFAULT_CLOUD
    if os.path.isfile(spec):
        path, name = spec, None
    else:
        path, name = store.model_path(spec), spec  # ValueError names the known models
    # room for the k-shot prompt plus the answer, and one sequence per sample + the answer;
    # hidden states where a policy may read them (a trained router such as sep)
    from confroute.eval.live import needs_hidden

    hidden = role == "edge" and bool(getattr(args, "policy", None)) and needs_hidden(
        _settings_stub(args))
    m = EdgeModel(path, n_ctx=3072, n_seq_max=max(1, args.samples + 1), name=name,
                  **({"hidden_states": True} if hidden else {}))
    return m.name, m


def _settings_stub(args):
    from confroute.eval.live import LiveSettings

    return LiveSettings(policies=tuple(args.policy))


def _judge_for(args, cloud):
    from confroute.eval.judge import Judge
    from confroute.eval.outcomes import RECORDED

    judge_client = cloud
    if args.judge_url:
        from confroute.models import CloudModel

        if not args.judge_model:
            raise ValueError("--judge-url needs --judge-model")
        judge_client = CloudModel(args.judge_url, args.judge_model)
    elif cloud == RECORDED:
        raise ValueError("mt-bench with a recorded cloud needs --judge-url for the judge")
    return Judge(judge_client, model=args.judge_model,
                 cache=args.judge_cache or args.checkpoint + ".judge.jsonl",
                 templates=args.judge_prompts)


JUDGE_FIELDS = {"single": ("question", "answer"), "pairwise": ("question", "answer_a", "answer_b"),
                "best-of-k": ("question", "ground_truth", "answers")}


def _judge(args) -> int:
    from confroute.eval.data import read_jsonl
    from confroute.eval.judge import Judge, best_of_k_scores

    rows = list(read_jsonl(args.answers))
    if not rows:
        raise ValueError(f"{args.answers}: no rows")
    for lineno, o in rows:
        for k in JUDGE_FIELDS[args.mode]:
            if k not in o:
                raise ValueError(f"{args.answers}: line {lineno}: missing field {k!r} "
                                 f"(mode {args.mode})")
        if args.mode == "best-of-k" and not isinstance(o["answers"], dict):
            raise ValueError(f"{args.answers}: line {lineno}: 'answers' must map system -> text")
    if args.judge_url:
        from confroute.models import CloudModel

        if not args.judge_model:
            raise ValueError("--judge-url needs --judge-model")
        client = CloudModel(args.judge_url, args.judge_model)
    else:
        from confroute.models import default_cloud

        client = default_cloud()
    judge = Judge(client, model=args.judge_model, cache=args.cache,
                  templates=args.judge_prompts, max_tokens=args.max_tokens)
    results = []
    with open(args.out, "w", encoding="utf-8") as f:
        for lineno, o in rows:
            if args.mode == "single":
                r = judge.grade(o["question"], o["answer"], o.get("reference"))
                res = {"score": r.score, "judge_output": r.output}
            elif args.mode == "pairwise":
                r = judge.pairwise(o["question"], o["answer_a"], o["answer_b"], o.get("reference"))
                res = {"winner": r.winner, "verdicts": list(r.verdicts)}
            else:
                r = judge.best_of_k(o["question"], o["ground_truth"], o["answers"])
                res = {"best": None if r.best is None else sorted(r.best),
                       "judge_output": r.output}
            results.append(r)
            f.write(json.dumps({**o, **res}, ensure_ascii=False) + "\n")
            f.flush()
    if args.mode == "single":
        ok = [r.score for r in results if r.ok]
        mean = f"{sum(ok) / len(ok):.3f}" if ok else "n/a"
        print(f"mean score {mean} over {len(ok)} graded, {len(results) - len(ok)} unparsable")
    elif args.mode == "pairwise":
        from collections import Counter

        c = Counter(r.winner for r in results)
        print(f"a wins {c['a']}, b wins {c['b']}, ties {c['tie']}, failed {c[None]}")
    else:
        print(json.dumps(best_of_k_scores(results)))
    print(f"{judge.calls} judge calls ({len(judge.cache)} cached in all); wrote {args.out}")
    return 0
