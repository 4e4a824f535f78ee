"""`confroute label`: preference labels for training routers (JSONL, pair schema).

    # SE labels: sample the edge and the cloud model (resumable: rerun the same command)
    confroute label --prompts $CONFROUTE_DATA/nq_open/dev.jsonl --limit 200 --out se.jsonl
    # SE labels on a benchmark's own prompts, graded by its grader (code: SE by execution)
    confroute label --benchmark mbpp --split train --data $CONFROUTE_DATA --n 5 --out mbpp.jsonl
    # accuracy labels from the graded responses of an SE label file (same prompts)
    confroute label --accuracy-of se.jsonl --out acc.jsonl
    # accuracy labels from an outcome table (a benchmark in --data, or a CSV/JSONL table)
    confroute label --outcomes gsm8k --data $CONFROUTE_DATA --out acc_gsm8k.jsonl
"""
from __future__ import annotations

import json
import os


def add_arguments(parser) -> None:
    from confroute.decision.path import DEFAULT_SAMPLING

    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="prompts to label by SE: .jsonl (prompt/question field; "
                                       "an 'answer' field also grades the responses), .csv, "
                                       "or one prompt per line")
    src.add_argument("--benchmark", metavar="NAME",
                     help="label a benchmark's items (in --data) as `eval build` prompts and "
                          "grades them: humaneval, mbpp, gsm8k, mmlu")
    src.add_argument("--accuracy-of", metavar="SE_LABELS",
                     help="write accuracy labels from a graded SE label file")
    src.add_argument("--outcomes", metavar="TABLE",
                     help="write accuracy labels from an outcome table: gsm8k, mmlu, mt-bench "
                          "(in --data) or a CSV/JSONL file")
    parser.add_argument("--out", required=True, help="JSONL label file to write (or resume)")
    parser.add_argument("--field", default=None, help="the prompt field of --prompts")
    parser.add_argument("--start", type=int, default=0, help="skip the first prompts")
    parser.add_argument("--limit", type=int, default=None, help="label at most N prompts")
    parser.add_argument("--n", type=int, default=DEFAULT_SAMPLING.n,
                        help=f"samples per model (default {DEFAULT_SAMPLING.n})")
    parser.add_argument("--split", default="train",
                        help="--benchmark: the split to label (default train: router-training "
                             "prompts, kept apart from the dev tables)")
    parser.add_argument("--se-signal", default=None, metavar="NAME",
                        help="--benchmark: the signal that is each model's SE (default: the "
                             "served SE policy of --kind: se, se_discrete or se_weighted)")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help=f"tokens per sample (default {DEFAULT_SAMPLING.max_tokens}; "
                             "--benchmark: the benchmark's)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_SAMPLING.temperature)
    parser.add_argument("--tau", type=float, default=0.1, help="tie band of Eq. 4")
    parser.add_argument("--kind", default="kuhn", choices=["kuhn", "discrete", "weighted"],
                        help="SE form (default kuhn: the paper's Eq. 2)")
    parser.add_argument("--seed", type=int, default=0, help="item i samples with seed+i")
    parser.add_argument("--similarity", type=float, default=0.8,
                        help="cosine above which two answers share a meaning")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per in-process model (default: the backend's). On a "
                             "busy machine 1 can be far faster: llama.cpp threads spin-wait")
    parser.add_argument("--edge-model", default=None,
                        help="weak model: a registry name or a GGUF path (default SmolLM2)")
    parser.add_argument("--cloud-url", default=None,
                        help="strong model's OpenAI-compatible base URL (default: Qwen in-process)")
    parser.add_argument("--cloud-model", default=None,
                        help="strong model: its name at --cloud-url, or without --cloud-url a "
                             "registry name or GGUF path run in-process (default: the local "
                             "cloud stand-in)")
    parser.add_argument("--data", default=os.environ.get("CONFROUTE_DATA"),
                        help="folder laid out like shared/data, for --benchmark and "
                             "--outcomes BENCHMARK")
    parser.add_argument("--weak", default=None, help="--outcomes: the weak model's column")
    parser.add_argument("--strong", default=None, help="--outcomes: the strong model's column")
    parser.add_argument("--no-progress", action="store_true")
    from confroute.runtime.ray_cluster import add_ray_arguments

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
    from confroute.labels import accuracy_rows_from, label_counts, read_labels

    if args.ray and not (args.prompts or args.benchmark):
        raise ValueError("--ray runs the SE label job (--prompts or --benchmark); --outcomes "
                         "and --accuracy-of sample nothing")
    if args.outcomes:
        return _outcomes(args)
    if args.accuracy_of:
        rows = accuracy_rows_from(read_labels(args.accuracy_of))
        _write_rows(rows, args.out)
        print(f"{len(rows)} accuracy labels -> {args.out}: {label_counts(rows)}")
        return 0

    from confroute.eval.label_job import run_label_job

    job = _Job(args)
    if args.ray:
        return _run_ray(args, job)
    weak, strong, strong_name = _models(args.edge_model, args.cloud_url, args.cloud_model,
                                        args.threads)
    config = job.config(weak.name, strong_name)
    se_fn, grade = job.fns(weak, strong, config)
    res = run_label_job(job.prompts, args.out, config, se_fn, progress=not args.no_progress,
                        grade_fn=grade, source=job.source)
    _summary(args.out, res.written, res.done_before, res.seconds)
    return 0


class _Job:
    """What an SE label job labels (the --start/--limit slice of --prompts or of a
    benchmark's items) and how: its config, ``se_fn`` and grader, the same in the
    single-process job and in every Ray replica."""

    def __init__(self, args):
        from confroute.labels import read_prompts

        if args.start < 0 or (args.limit is not None and args.limit < 1):
            raise ValueError("--start must be >= 0 and --limit >= 1")
        end = None if args.limit is None else args.start + args.limit
        self.args, self.bench, self.items, self.golds, self.source = args, None, None, None, None
        if args.benchmark:
            self._benchmark(args, end)
        else:
            if args.se_signal:
                raise ValueError("--se-signal is for --benchmark; --prompts cluster the "
                                 "answers by embedding (--kind picks the SE form)")
            self.prompts = read_prompts(args.prompts, args.field)[args.start:end]
            golds = _gold_answers(args.prompts, args.field)
            self.golds = golds[args.start:end] if golds else None
        if not self.prompts:
            raise ValueError(f"no prompts left after --start {args.start}")

    def _benchmark(self, args, end):
        from confroute.eval.benchmarks import get_benchmark

        if not args.data:
            raise ValueError("--benchmark needs --data (or $CONFROUTE_DATA)")
        if args.benchmark == "mt-bench":
            raise ValueError("--benchmark mt-bench needs a judge to grade; label its "
                             "questions with --prompts")
        self.bench = get_benchmark(args.benchmark, seed=args.seed)
        self.items = self.bench.items(args.data, args.split)[args.start:end]
        self.prompts = [it.prompt for it in self.items]
        self.signal = args.se_signal or self.bench.se_signal(args.kind)
        self.source = {"benchmark": self.bench.name, "split": args.split,
                       "signal": self.signal, "settings": self.bench.settings(),
                       "grader": self.bench.grader()}

    def config(self, weak: str, strong: str):
        from confroute.eval.label_job import JobConfig

        a = self.args
        tokens = a.max_tokens
        if tokens is None:
            from confroute.decision.path import DEFAULT_SAMPLING

            tokens = DEFAULT_SAMPLING.max_tokens
            if self.bench is not None:
                from confroute.eval.live import LiveSettings

                tokens = LiveSettings().answer_tokens(self.bench)
        return JobConfig(weak=weak, strong=strong, n=a.n, max_tokens=tokens,
                         temperature=a.temperature, tau=a.tau, kind=a.kind, seed=a.seed,
                         similarity=a.similarity)

    def fns(self, weak, strong, config):
        """(se_fn, grade_fn or None) for the job's models."""
        if self.bench is not None:
            from confroute.eval.label_job import benchmark_fns

            return benchmark_fns(self.bench, self.items, {"weak": weak, "strong": strong},
                                 config, self.signal)
        return _se_fn(weak, strong, config), (_grader(self.golds) if self.golds else None)


def _models(edge_model, cloud_url, cloud_model, threads):
    """The weak and strong model of an SE label job, and the strong model's name."""
    from confroute import models

    threads = {} if threads is None else {"n_threads": threads}
    if edge_model:
        weak = models.local_model(edge_model, **threads)
    else:
        from confroute.models.store import DEFAULT_EDGE

        weak = models.default_edge(name=DEFAULT_EDGE, **threads)  # the GGUF's name is a tag
    if cloud_url:
        if not cloud_model:
            raise ValueError("--cloud-url needs --cloud-model")
        strong = models.CloudModel(cloud_url, cloud_model)
    elif cloud_model:   # an in-process strong model (e.g. qwen2.5-coder-1.5b-instruct)
        strong = models.local_model(cloud_model, **threads)
    else:
        strong = models.default_cloud(**threads)
    return weak, strong, getattr(strong, "name", None) or cloud_model or "cloud"


def _se_fn(weak, strong, config):
    from confroute.eval.label_job import scorer_se_fn
    from confroute.confidence.scorer import ConfidenceScorer

    scorer = ConfidenceScorer(similarity=config.similarity)
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
    """What each Ray replica runs once: load the two models (and the embedder), then label
    prompts with :func:`confroute.eval.label_job.label_item`, the single-process job's own step."""

    def __init__(self, args, job):
        self.models = (args.edge_model, args.cloud_url, args.cloud_model,
                       args.threads or max(1, int(args.cpus_per_replica)))
        self.job = job

    def __call__(self):
        from confroute.eval.label_job import label_item

        weak, strong, strong_name = _models(*self.models)
        config = self.job.config(weak.name, strong_name)
        se_fn, grade = self.job.fns(weak, strong, config)
        return ((lambda i, prompt: label_item(i, prompt, config, se_fn, grade)),
                {"weak": config.weak, "strong": config.strong})


def _run_ray(args, job) -> int:
    """The SE label job on Ray: blocks of prompts committed under ``<out>.blocks/``, then
    every row written to ``out`` in id order, as the single-process job writes them."""
    import time

    from confroute.runtime import checkpoint as ckpt
    from confroute.runtime.blocks import BlockStore
    from confroute.runtime.distributed import RayJob
    from confroute.runtime.ray_cluster import import_ray, ray_options
    from confroute.eval.label_job import open_job

    import_ray()  # the install hint before any work
    out = os.fspath(args.out)
    t0 = time.perf_counter()
    graded = job.golds is not None or job.bench is not None
    with RayJob(_LabelReplica(args, job), ray_options(args)) as ray_job:
        config = job.config(ray_job.info["weak"], ray_job.info["strong"])
        done = open_job(out, job.prompts, config, graded=graded, source=job.source)
        store = BlockStore(out + ".blocks")
        tasks = [(i, p) for i, p in enumerate(job.prompts) if i not in done]
        rows = ray_job.run(tasks, store, progress=not args.no_progress, desc="labelling",
                           unit="prompt", initial=len(done))
    by_id = {}
    for _, line in ckpt.load(out):  # rows a single-process run (or an earlier one) wrote
        row = json.loads(line)
        by_id[row["id"]] = row
    by_id.update(rows)
    ckpt.rewrite(out, (by_id[i] for i in sorted(by_id)), ensure_ascii=True)
    store.remove()
    if ray_job.resumed:
        print(f"{ray_job.resumed} rows came from the blocks an earlier run committed")
    _summary(out, len(rows) - ray_job.resumed, len(done), time.perf_counter() - t0)
    if ray_job.deaths:
        print(f"{len(ray_job.deaths)} replica(s) lost and replaced, their blocks redone: "
              + "; ".join(ray_job.deaths))
    return 0
