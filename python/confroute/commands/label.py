"""`confroute label`: preference labels for training routers (JSONL, pair schema).

    # SE labels: sample the edge and the cloud model (resumable: rerun the same command)
    confroute label --prompts ../shared/data/nq_open/dev.jsonl --limit 200 --out se.jsonl
    # accuracy labels from the graded responses of an SE label file (same prompts)
    confroute label --accuracy-of se.jsonl --out acc.jsonl
    # accuracy labels from an outcome table (a benchmark in --data, or a CSV/JSONL table)
    confroute label --outcomes gsm8k --data ../shared/data --out acc_gsm8k.jsonl
"""
from __future__ import annotations

import json
import os


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="prompts to label by SE: .jsonl (prompt/question field; "
                                       "an 'answer' field also grades the responses), .csv, "
                                       "or one prompt per line")
    src.add_argument("--accuracy-of", metavar="SE_LABELS",
                     help="write accuracy labels from a graded SE label file")
    src.add_argument("--outcomes", metavar="TABLE",
                     help="write accuracy labels from an outcome table: gsm8k, mmlu, mt-bench "
                          "(in --data) or a CSV/JSONL file")
    parser.add_argument("--out", required=True, help="JSONL label file to write (or resume)")
    parser.add_argument("--field", default=None, help="the prompt field of --prompts")
    parser.add_argument("--start", type=int, default=0, help="skip the first prompts")
    parser.add_argument("--limit", type=int, default=None, help="label at most N prompts")
    parser.add_argument("--n", type=int, default=4, help="samples per model (default 4)")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--tau", type=float, default=0.1, help="tie band of Eq. 4")
    parser.add_argument("--kind", default="kuhn", choices=["kuhn", "discrete", "weighted"],
                        help="SE form (default kuhn: the paper's Eq. 2)")
    parser.add_argument("--seed", type=int, default=0, help="item i samples with seed+i")
    parser.add_argument("--similarity", type=float, default=0.8,
                        help="cosine above which two answers share a meaning")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per in-process model (default: the backend's). On a "
                             "busy machine 1 can be far faster: llama.cpp threads spin-wait")
    parser.add_argument("--edge-model", default=None, help="weak model GGUF (default SmolLM2)")
    parser.add_argument("--cloud-url", default=None,
                        help="strong model's OpenAI-compatible base URL (default: Qwen in-process)")
    parser.add_argument("--cloud-model", default=None, help="model name at --cloud-url")
    parser.add_argument("--data", default=os.environ.get("CONFROUTE_DATA"),
                        help="folder laid out like shared/data, for --outcomes BENCHMARK")
    parser.add_argument("--weak", default=None, help="--outcomes: the weak model's column")
    parser.add_argument("--strong", default=None, help="--outcomes: the strong model's column")
    parser.add_argument("--no-progress", action="store_true")
    from confroute.distributed import add_ray_arguments

    add_ray_arguments(parser)


def _write_rows(rows, out) -> None:
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _outcomes(args) -> int:
    from confroute.labels import label_counts, outcome_rows

    if args.outcomes in ("gsm8k", "mmlu", "mt-bench"):
        from confroute.eval import load_benchmark

        if not args.data:
            raise ValueError("--outcomes BENCHMARK needs --data (or $CONFROUTE_DATA)")
        table = load_benchmark(args.outcomes, args.data, weak=args.weak, strong=args.strong)
    else:
        from confroute.eval import load_table

        table = load_table(args.outcomes, weak=args.weak, strong=args.strong)
    rows = outcome_rows(table.prompts, table.q_weak, table.q_strong, table.weak, table.strong)
    _write_rows(rows, args.out)
    print(f"{len(rows)} accuracy labels -> {args.out}: {label_counts(rows)}")
    return 0


def _gold_answers(path, field):
    """The 'answer' of each prompt of a .jsonl prompt file, or None when there is none."""
    if not path.endswith(".jsonl"):
        return None
    golds = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                golds.append(json.loads(line).get("answer"))
    return golds if all(g is not None for g in golds) else None


def _grader(golds):
    from confroute.eval.grading import grade_gsm8k
    from confroute.labels import grade_short_answer

    def grade(i, response):
        g = golds[i]
        if isinstance(g, str) and "####" in g:  # GSM8K: compare the final numbers
            return grade_gsm8k(response, g.rsplit("####", 1)[1].strip())[0]
        return grade_short_answer(response, g)

    return grade


def run(args) -> int:
    from confroute.labels import accuracy_rows_from, label_counts, read_labels, read_prompts

    if args.ray and not args.prompts:
        raise ValueError("--ray runs the SE label job (--prompts); --outcomes and "
                         "--accuracy-of sample nothing")
    if args.outcomes:
        return _outcomes(args)
    if args.accuracy_of:
        rows = accuracy_rows_from(read_labels(args.accuracy_of))
        _write_rows(rows, args.out)
        print(f"{len(rows)} accuracy labels -> {args.out}: {label_counts(rows)}")
        return 0

    from confroute.label_job import run_label_job

    if args.start < 0 or (args.limit is not None and args.limit < 1):
        raise ValueError("--start must be >= 0 and --limit >= 1")
    prompts = read_prompts(args.prompts, args.field)
    end = None if args.limit is None else args.start + args.limit
    prompts = prompts[args.start:end]
    if not prompts:
        raise ValueError(f"no prompts left after --start {args.start}")
    golds = _gold_answers(args.prompts, args.field)
    grade = _grader(golds[args.start:end]) if golds else None

    if args.ray:
        return _run_ray(args, prompts, golds[args.start:end] if golds else None)
    weak, strong, strong_name = _models(args.edge_model, args.cloud_url, args.cloud_model,
                                        args.threads)
    config = _config(args, weak.name, strong_name)
    se_fn = _se_fn(weak, strong, config)
    res = run_label_job(prompts, args.out, config, se_fn, progress=not args.no_progress,
                        grade_fn=grade)
    _summary(args.out, res.written, res.done_before, res.seconds)
    return 0


def _models(edge_model, cloud_url, cloud_model, threads):
    """The weak and strong model of an SE label job, and the strong model's name."""
    from confroute import models

    threads = {} if threads is None else {"n_threads": threads}
    if edge_model:
        weak = models.EdgeModel(edge_model, **threads)
    else:
        from confroute.models.store import DEFAULT_EDGE

        weak = models.default_edge(name=DEFAULT_EDGE, **threads)  # the GGUF's name is a tag
    if cloud_url:
        if not cloud_model:
            raise ValueError("--cloud-url needs --cloud-model")
        strong = models.CloudModel(cloud_url, cloud_model)
    else:
        strong = models.default_cloud(**threads)
    return weak, strong, getattr(strong, "name", None) or cloud_model or "cloud"


def _config(args, weak: str, strong: str):
    from confroute.label_job import JobConfig

    return JobConfig(weak=weak, strong=strong, n=args.n, max_tokens=args.max_tokens,
                     temperature=args.temperature, tau=args.tau, kind=args.kind,
                     seed=args.seed, similarity=args.similarity)


def _se_fn(weak, strong, config):
    from confroute.label_job import scorer_se_fn
    from confroute.scorer import ConfidenceScorer

    scorer = ConfidenceScorer(threshold=config.similarity)
    scorer.embedder  # load it now: a missing embedder fails before any sampling
    return scorer_se_fn(weak, strong, scorer, config)


def _summary(out, written, done_before, seconds) -> None:
    from confroute.labels import label_counts, read_labels

    rows = read_labels(out)
    secs = sum(r.get("seconds", 0.0) for r in rows)
    print(f"{written} new rows ({done_before} already there) -> {out}: "
          f"{label_counts(rows)}; this run {seconds:.1f} s, all rows {secs:.1f} s of "
          f"sampling")


class _LabelReplica:
    """What each Ray replica runs once: load the two models and the embedder, then label
    prompts with :func:`confroute.label_job.label_item`, the single-process job's own step."""

    def __init__(self, args, golds):
        self.models = (args.edge_model, args.cloud_url, args.cloud_model,
                       args.threads or max(1, int(args.cpus_per_replica)))
        self.args, self.golds = args, golds

    def __call__(self):
        from confroute.label_job import label_item

        weak, strong, strong_name = _models(*self.models)
        config = _config(self.args, weak.name, strong_name)
        se_fn = _se_fn(weak, strong, config)
        grade = _grader(self.golds) if self.golds else None
        return ((lambda i, prompt: label_item(i, prompt, config, se_fn, grade)),
                {"weak": config.weak, "strong": config.strong})


def _run_ray(args, prompts, golds) -> int:
    """The SE label job on Ray: blocks of prompts committed under ``<out>.blocks/``, then
    every row written to ``out`` in id order, as the single-process job writes them."""
    import time

    from confroute.distributed import BlockStore, RayJob, import_ray, ray_options
    from confroute.label_job import open_job

    import_ray()  # the install hint before any work
    out = os.fspath(args.out)
    t0 = time.perf_counter()
    with RayJob(_LabelReplica(args, golds), ray_options(args)) as job:
        config = _config(args, job.info["weak"], job.info["strong"])
        done = open_job(out, prompts, config, graded=golds is not None)
        store = BlockStore(out + ".blocks")
        tasks = [(i, p) for i, p in enumerate(prompts) if i not in done]
        rows = job.run(tasks, store, progress=not args.no_progress, desc="labelling",
                       unit="prompt", initial=len(done))
    lines = {}
    if os.path.exists(out):  # rows a single-process run (or an earlier one) wrote
        with open(out, encoding="utf-8") as f:
            for line in f:
                lines[json.loads(line)["id"]] = line
    lines.update((i, json.dumps(r) + "\n") for i, r in rows.items())
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(lines[i] for i in sorted(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(out + ".tmp", out)
    store.remove()
    if job.resumed:
        print(f"{job.resumed} rows came from the blocks an earlier run committed")
    _summary(out, len(rows) - job.resumed, len(done), time.perf_counter() - t0)
    if job.deaths:
        print(f"{len(job.deaths)} replica(s) lost and replaced, their blocks redone: "
              + "; ".join(job.deaths))
    return 0
