"""`confroute eval`: replay routers over recorded outcomes, build outcome tables live, judge.

    confroute eval replay --benchmark gsm8k --data shared/data --router random --router oracle --out D
    confroute eval replay --table my_outcomes.csv --router scores:se.csv --out D
    confroute eval build --benchmark mmlu --data shared/data --limit 50 --out table.csv
"""
from __future__ import annotations

import json
import math
import os


def add_arguments(parser) -> None:
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
                        "[,column=NAME,higher=edge], or a saved-router folder; repeatable")
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
    r.add_argument("--tokens", default="0,0,0", metavar="IN,EDGE_OUT,CLOUD_OUT",
                   help="mean tokens per query for the cost estimate")
    r.add_argument("--edge-samples", type=int, default=1,
                   help="answers the edge model draws per query (SE routing: e.g. 5)")

    b = sub.add_parser("build", help="run an edge and a cloud model over a benchmark "
                                     "(checkpointed, resumable) and write an outcome table")
    b.add_argument("--benchmark", choices=["gsm8k", "mmlu", "mt-bench"], required=True)
    b.add_argument("--data", default=os.environ.get("CONFROUTE_DATA"))
    b.add_argument("--split", default="dev")
    b.add_argument("--limit", type=int, default=None, help="first N questions only")
    b.add_argument("--checkpoint", required=True, help="JSONL checkpoint (resumed if present)")
    b.add_argument("--out", required=True, help="outcome table to write (.csv or .jsonl)")
    b.add_argument("--edge-model", default=None, help="GGUF path (default: default_edge())")
    b.add_argument("--cloud-url", default=None, help="OpenAI-compatible base URL")
    b.add_argument("--cloud-model", default=None)
    b.add_argument("--max-tokens", type=int, default=None)
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
    raise ValueError("choose an action: confroute eval replay | build | judge (see --help)")


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
    report = replay(table, args.router or ["random", "oracle"], n_points=args.points,
                    shares=shares)
    out = report.to_json()
    edge, cloud = _prices(args.edge_price, "--edge-price"), _prices(args.cloud_price,
                                                                     "--cloud-price")
    if edge or cloud:
        from confroute.eval.metrics import Prices

        tok = [float(x) for x in args.tokens.split(",")]
        if len(tok) != 3:
            raise ValueError(f"--tokens: expected IN,EDGE_OUT,CLOUD_OUT, got {args.tokens!r}")
        at = sorted({0.0, 1.0, *shares})
        costs = cost_at_share(at, edge or Prices(), cloud or Prices(), *tok,
                              edge_samples=args.edge_samples)
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
    head = (f"{t.name}: {len(t)} prompts | weak {t.weak} = {report.q_weak:.4f} | "
            f"strong {t.strong} = {report.q_strong:.4f}")
    cols = ["router", "APGR", "AUC", "CPT20", "CPT50", "CPT80", "q@20%", "q@50%", "AUROC", "PRR"]
    rows = []
    for r in report.results:
        m, u = r.metrics, r.metrics["uncertainty"]
        qa = m["quality_at"]
        rows.append([r.label, _f(m["apgr"]), _f(m["auc"]), _pct(m["cpt20"]), _pct(m["cpt50"]),
                     _pct(m["cpt80"]), _f(qa.get("0.2")), _f(qa.get("0.5")),
                     _f(u["auroc"]), _f(u["prr"])])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    lines = [head, "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _f(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.4f}"


def _pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}%"


BUILD_DEFAULT_TOKENS = {"gsm8k": 384, "mmlu": 8, "mt-bench": 256}


def _build(args) -> int:
    from confroute.eval.outcomes import build_outcomes

    if not args.data:
        raise ValueError("--data (or $CONFROUTE_DATA) is needed")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.ray:
        return _build_ray(args)
    edge, cloud = _build_models(args)
    items, grade, prefix, grader = _benchmark(args, cloud)
    names = _model_names(edge, cloud)
    table = build_outcomes(items, dict(zip(names, (edge, cloud))), grade, args.checkpoint,
                           weak=names[0], strong=names[1], name=args.benchmark,
                           prompt_prefix=prefix, grader=grader, regrade=args.regrade,
                           max_tokens=args.max_tokens or BUILD_DEFAULT_TOKENS[args.benchmark])
    return _saved(args, table, names)


def _benchmark(args, cloud):
    """(items, grade, prompt prefix, grader name) of --benchmark; mt-bench's judge is
    --judge-url, else the cloud model."""
    from confroute.eval.data import gsm8k_items, mmlu_items
    from confroute.eval.grading import (GSM8K_INSTRUCTION, MMLU_INSTRUCTION, grade_gsm8k,
                                        grade_mmlu)

    grader = ""
    if args.benchmark == "gsm8k":
        items, grade, prefix = gsm8k_items(args.data, args.split), grade_gsm8k, GSM8K_INSTRUCTION
    elif args.benchmark == "mmlu":
        items, grade, prefix = mmlu_items(args.data, args.split), grade_mmlu, MMLU_INSTRUCTION
    else:
        from confroute.eval.data import mt_bench_items
        from confroute.eval.grading import mt_bench_grader
        from confroute.eval.judge import Judge

        judge_client = cloud
        if args.judge_url:
            from confroute.models import CloudModel

            if not args.judge_model:
                raise ValueError("--judge-url needs --judge-model")
            judge_client = CloudModel(args.judge_url, args.judge_model)
        judge = Judge(judge_client, model=args.judge_model,
                      cache=args.judge_cache or args.checkpoint + ".judge.jsonl",
                      templates=args.judge_prompts)
        items, grade, prefix = mt_bench_items(args.data, args.split), mt_bench_grader(judge), ""
        grader = f"judge:{judge.model}"
    items = items[: args.limit] if args.limit else items
    return items, grade, prefix, grader


def _model_names(edge, cloud):
    names = [getattr(edge, "name", "edge"), getattr(cloud, "name", "cloud")]
    if names[0] == names[1]:
        names = [names[0] + " (edge)", names[1] + " (cloud)"]
    return names


def _saved(args, table, names) -> int:
    table.save(args.out)
    for m in names:
        print(f"{m}: mean quality {table.column(m).mean():.4f} over {len(table)} questions")
    print(f"wrote {args.out} (checkpoint {args.checkpoint}); replay it with:\n"
          f"  confroute eval replay --table {args.out} --weak '{names[0]}' "
          f"--strong '{names[1]}' --out DIR")
    return 0


class _BuildReplica:
    """What each Ray replica runs once: load the edge and cloud models, then answer and grade
    (item, model) pairs with :func:`confroute.eval.outcomes.live_record`, the builder's own
    step."""

    def __init__(self, args, grade, prefix, max_tokens):
        self.args, self.grade, self.prefix, self.max_tokens = args, grade, prefix, max_tokens

    def __call__(self):
        from confroute.eval.outcomes import live_record

        edge, cloud = _build_models(self.args)
        names = _model_names(edge, cloud)
        models = dict(zip(names, (edge, cloud)))

        def work(key, pair):
            item, name = pair
            return live_record(item, name, models[name], self.grade, self.prefix,
                               self.max_tokens, 0.0).__dict__

        return work, {"names": names}


def _build_ray(args) -> int:
    """The builder on Ray: the answers not yet in the checkpoint are computed in blocks
    (committed under ``<checkpoint>.blocks/``), then appended to the checkpoint in the order
    the single-process builder writes them, which then makes the table from it."""
    from confroute.distributed import BlockStore, RayJob, import_ray, ray_options
    from confroute.eval.outcomes import LiveRecord, build_outcomes

    if args.benchmark == "mt-bench":
        raise ValueError("--ray builds gsm8k and mmlu tables; mt-bench's judge keeps one "
                         "cache file, so build it without --ray")
    import_ray()  # the install hint before any work
    items, grade, prefix, grader = _benchmark(args, None)
    max_tokens = args.max_tokens or BUILD_DEFAULT_TOKENS[args.benchmark]
    threads = os.environ.get("CONFROUTE_N_THREADS") or str(max(1, int(args.cpus_per_replica)))
    store = BlockStore(args.checkpoint + ".blocks")
    with RayJob(_BuildReplica(args, grade, prefix, max_tokens),
                ray_options(args, env={"CONFROUTE_N_THREADS": threads})) as job:
        names = job.info["names"]
        grid = {(it.id, m): k for k, (it, m) in enumerate((it, m) for it in items
                                                           for m in names)}

        def runner(todo):
            tasks = [(grid[(it.id, m)], (it, m)) for it, m in todo]
            results = job.run(tasks, store, progress=not args.no_progress,
                              desc=f"{args.benchmark} outcomes", unit="answer",
                              initial=len(grid) - len(todo))
            return [LiveRecord(**results[k]) for k, _ in tasks]

        table = build_outcomes(items, dict.fromkeys(names), grade, args.checkpoint,
                               weak=names[0], strong=names[1], name=args.benchmark,
                               prompt_prefix=prefix, grader=grader, regrade=args.regrade,
                               max_tokens=max_tokens, progress=False, runner=runner)
    store.remove()
    if job.resumed:
        print(f"{job.resumed} answers came from the blocks an earlier run committed")
    if job.deaths:
        print(f"{len(job.deaths)} replica(s) lost and replaced, their blocks redone: "
              + "; ".join(job.deaths))
    return _saved(args, table, names)


def _build_models(args):
    from confroute import models

    if args.edge_model:
        from confroute.models.edge import EdgeModel

        edge = EdgeModel(args.edge_model)
    else:
        edge = models.default_edge()
    if args.cloud_url:
        if not args.cloud_model:
            raise ValueError("--cloud-url needs --cloud-model (the server's model name)")
        cloud = models.CloudModel(args.cloud_url, args.cloud_model)
    else:
        cloud = models.default_cloud()
    return edge, cloud


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
