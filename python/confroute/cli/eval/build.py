"""`confroute eval build`: run an edge and a cloud model over a benchmark (checkpointed,
resumable; in one process or on Ray replicas) and write an outcome table."""
from __future__ import annotations

import os

HELP = ("run an edge and a cloud model over a benchmark (checkpointed, resumable) and write an "
        "outcome table")


def add_arguments(b) -> None:
    from confroute.runtime.ray_cluster import add_ray_arguments
    from confroute.eval.live import DEFAULT_POLICIES
    from confroute.decision.path import DEFAULT_SAMPLING
    from confroute.confidence.meaning import MEANINGS

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
                   "OpenAI-compatible base URL (with --edge-model). It answers and samples "
                   "through the decision path as `confroute serve` with edge.base_url does, "
                   "so each signal column is that server's /v1/route score; the prompt goes "
                   "without the benchmark's cue (an HTTP edge cannot continue an assistant "
                   "message) and its whole reply is graded, as a chat model's. A --policy it "
                   "cannot serve (hidden states; token logprobs it does not return) is "
                   "refused; the default columns it cannot serve are left out, with a note")
    b.add_argument("--edge-extra-body", default=None, metavar="JSON",
                   help="with --edge-url: request fields sent with every edge call, as the "
                        "server config's edge.extra_body (e.g. '{\"repeat_penalty\": 1.0, "
                        "\"top_k\": 0, \"min_p\": 0.0}' for llama-cpp-python's server)")
    b.add_argument("--cloud-url", default=None, help="OpenAI-compatible base URL")
    b.add_argument("--cloud-model", default=None)
    b.add_argument("--max-tokens", type=int, default=None,
                   help="answer and sample length (default: the benchmark's; gsm8k 512)")
    b.add_argument("--samples", type=int, default=DEFAULT_SAMPLING.n,
                   help="edge samples per prompt for the policies (0 = none)")
    b.add_argument("--sample-temperature", type=float, default=DEFAULT_SAMPLING.temperature)
    b.add_argument("--similarity", "--threshold", dest="similarity", type=float, default=0.8,
                   help="cosine similarity that joins two samples' meanings (embedding); "
                        "--threshold is its old name")
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

    add_ray_arguments(b)


def run(args) -> int:
    from confroute.eval.build import RECORDED, build_outcomes

    if not args.data:
        raise ValueError("--data (or $CONFROUTE_DATA) is needed")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if not 0 <= args.samples <= 15:
        raise ValueError(f"--samples must be in 0..15, got {args.samples}")
    if args.edge and args.edge_model:
        raise ValueError("give --edge or --edge-model, not both")
    if args.edge_extra_body is not None and not args.edge_url:
        raise ValueError("--edge-extra-body is for an edge over HTTP (--edge-url)")
    if args.ray:
        return _build_ray(args)
    edge_name, edge, cloud_name, cloud = _sides(args)
    judge = None
    if args.benchmark == "mt-bench":
        judge = _judge_for(args, cloud)
    bench, items, settings = _plan(args, judge, edge)
    models = {edge_name: edge, cloud_name: cloud}
    table = build_outcomes(items, models, checkpoint=args.checkpoint, weak=edge_name,
                           strong=cloud_name, name=bench.name, benchmark=bench,
                           settings=settings, regrade=args.regrade,
                           signals_from=None if edge == RECORDED else edge_name)
    return _saved(args, table, models)


def _sides(args):
    """(edge name, edge, cloud name, cloud): each a backend or RECORDED."""
    edge_name, edge = side_model(args.edge or args.edge_model, "edge", args)
    cloud_name, cloud = side_model(args.cloud, "cloud", args)
    if edge_name == cloud_name:
        edge_name, cloud_name = edge_name + " (edge)", cloud_name + " (cloud)"
    return edge_name, edge, cloud_name, cloud


def _plan(args, judge, edge=None):
    """The benchmark, its items (a seeded stratified --limit) and the live settings. Without
    --policy, the default columns that ``edge`` cannot serve (an HTTP edge without token
    logprobs) are left out, with a note; a --policy it cannot serve is refused by the
    builder."""
    import dataclasses
    import sys

    from confroute.eval.benchmarks import get_benchmark, stratified_sample
    from confroute.eval.live import DEFAULT_POLICIES, LiveSettings, split_policies

    bench = get_benchmark(args.benchmark, shots=args.shots, seed=args.seed,
                          max_tokens=args.max_tokens, judge=judge)
    items = bench.items(args.data, args.split, include_contaminated=args.include_contaminated)
    if args.limit:
        items = stratified_sample(items, args.limit, seed=args.seed)
    settings = LiveSettings(max_tokens=args.max_tokens, samples=args.samples,
                            sample_temperature=args.sample_temperature, seed=args.seed,
                            similarity=args.similarity, meaning=args.meaning,
                            policies=tuple(args.policy or DEFAULT_POLICIES))
    if edge is not None and not args.policy and settings.samples:
        kept, refused = split_policies(edge, settings)
        if refused:
            print(f"note: {', '.join(refused)} left out of the default signal columns: "
                  f"{next(iter(refused.values()))}", file=sys.stderr)
            settings = dataclasses.replace(settings, policies=kept)
    return bench, items, settings


class _BuildReplica:
    """What each Ray replica runs once: load the live sides' models, then answer and grade
    (item, model) pairs with :func:`confroute.eval.build.live_record`, the builder's own
    step."""

    def __init__(self, args, bench, settings):
        self.args, self.bench, self.settings = args, bench, settings

    def __call__(self):
        from confroute.eval.build import RECORDED, live_record

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
    from confroute.runtime.blocks import BlockStore
    from confroute.runtime.distributed import RayJob
    from confroute.runtime.ray_cluster import import_ray, ray_options
    from confroute.eval.build import RECORDED, LiveRecord, build_outcomes

    if args.benchmark == "mt-bench":
        raise ValueError("--ray builds gsm8k and mmlu tables; mt-bench's judge keeps one "
                         "cache file, so build it without --ray")
    import_ray()  # the install hint before any work
    # the driver loads no model; an HTTP edge is a client, made here for its checks and
    # the checkpoint header
    http = side_model(None, "edge", args)[1] if args.edge_url else None
    bench, items, settings = _plan(args, None, http)
    threads = os.environ.get("CONFROUTE_N_THREADS") or str(max(1, int(args.cpus_per_replica)))
    store = BlockStore(args.checkpoint + ".blocks")
    with RayJob(_BuildReplica(args, bench, settings),
                ray_options(args, env={"CONFROUTE_N_THREADS": threads})) as job:
        edge_name, cloud_name = job.info["names"]
        # the driver loads no model: the live sides are placeholders here
        models = {m: (RECORDED if m in job.info["recorded"] else None)
                  for m in job.info["names"]}
        live = [m for m in models if models[m] is None]
        if http is not None:
            models[edge_name] = http
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
    from confroute.eval.build import RECORDED

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


def side_model(spec, role, args):
    """(column name, backend or RECORDED) for --edge / --cloud."""
    from confroute import models
    from confroute.eval.build import RECORDED

    if spec and spec.startswith("recorded:"):
        name = spec[len("recorded:"):]
        if not name:
            raise ValueError(f"--{role} recorded:MODEL needs the model's name")
        return name, RECORDED
    if role == "edge" and getattr(args, "edge_url", None):
        from confroute.models.http_edge import HttpEdge

        if not args.edge_model or args.edge:
            raise ValueError("--edge-url needs --edge-model (the server's model name), not --edge")
        m = HttpEdge(args.edge_url, args.edge_model, extra_body=_extra_body(args))
        return m.name, m
    if role == "cloud" and args.cloud_url:
        if spec:
            raise ValueError("give --cloud or --cloud-url, not both")
        if not args.cloud_model:
            raise ValueError("--cloud-url needs --cloud-model (the server's model name)")
        m = models.CloudModel(args.cloud_url, args.cloud_model)
        return getattr(m, "name", args.cloud_model), m
    from confroute.models import store

    if not spec:
        spec = store.DEFAULT_EDGE if role == "edge" else store.DEFAULT_CLOUD
    # room for the k-shot prompt plus the answer, and one sequence per sample + the answer;
    # hidden states where a policy may read them (a trained router such as sep)
    from confroute.eval.live import needs_hidden

    hidden = role == "edge" and bool(getattr(args, "policy", None)) and needs_hidden(
        _settings_stub(args))
    m = models.local_model(spec, n_ctx=3072, n_seq_max=max(1, args.samples + 1),
                           **({"hidden_states": True} if hidden else {}))
    return m.name, m


def _extra_body(args):
    import json

    text = getattr(args, "edge_extra_body", None)
    if text is None:
        return None
    try:
        body = json.loads(text)
    except ValueError as e:
        raise ValueError(f"--edge-extra-body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ValueError(f"--edge-extra-body must be a JSON object, got {text!r}")
    return body


def _settings_stub(args):
    from confroute.eval.live import LiveSettings

    return LiveSettings(policies=tuple(args.policy))


def _judge_for(args, cloud):
    from confroute.eval.judge import Judge
    from confroute.eval.build import RECORDED

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
