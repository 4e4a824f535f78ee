"""`confroute demo`: the cascade on real models, offline — Qwen2.5-Coder-0.5B on the edge,
Qwen2.5-Coder-1.5B in-process as the cloud (or a real OpenAI-compatible endpoint with
--cloud-url)."""
from __future__ import annotations

import json
import sys
import time

# The pair: Qwen2.5-Coder-0.5B at the edge, Qwen2.5-Coder-1.5B as the local cloud. Measured
# (SE of 5 samples at T=0.7, request seed 3): the 0.5B keeps the prompts it answers right (SE 0
# on 'cold', 'Paris', 'Jupiter' and reverse_words) and is unsure where it is wrong or shaky
# (10 spider legs, Westphalia 1791, 17 * 23, is_prime: SE 1.2-1.6), which the 1.5B answers
# right (8, 1648, 391). Both the 1.5B and the 0.5B miss 37 * 43 and the 1937 Tour de France.
PROMPTS = [
    "What is the opposite of hot? Answer in one word.",
    # Code prompts with example calls: their samples are clustered by what they return on
    # those calls (run in the sandbox), not by how their text reads.
    "Write a Python function is_prime(n) that checks whether n is a prime number. For "
    "example, is_prime(7) is True, is_prime(9) is False and is_prime(2) is True.",
    "Write a Python function reverse_words(s) that reverses the order of the words in s: "
    "reverse_words('big red dog') returns 'dog red big'.",
    "How many legs does a spider have? Answer with a number.",
    "What is the capital of France? Answer in one word.",
    "In which year did the Treaty of Westphalia end the Thirty Years' War?",
    "What is 17 * 23? Answer with a number.",
    "What is the largest planet in the solar system?",
]
EDGE, CLOUD = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--threshold", type=float, default=1.0,
                        help="escalate when the edge model's SE is above this (nats; default 1.0)")
    parser.add_argument("--kind", default="kuhn", choices=("kuhn", "weighted", "discrete"),
                        help="which semantic entropy decides (default kuhn)")
    parser.add_argument("--n", type=int, default=5, help="edge samples per prompt (default 5)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per edge sample")
    parser.add_argument("--temperature", type=float, default=0.7, help="edge sampling temperature")
    parser.add_argument("--code-max-tokens", type=int, default=160,
                        help="tokens per edge sample and cloud answer when the prompt asks "
                             "for a Python function")
    parser.add_argument("--cloud-max-tokens", type=int, default=96, help="tokens of a cloud answer")
    parser.add_argument("--seed", type=int, default=3,
                        help="request seed: the answer draws with it, the samples with seed + 1 "
                             "(default 3)")
    parser.add_argument("--prompt", action="append", help="a prompt of your own (repeatable); "
                        "replaces the built-in ones")
    parser.add_argument("--edge", default=EDGE, help=f"the edge: a registry name or a GGUF "
                        f"path (default {EDGE})")
    parser.add_argument("--cloud", default=CLOUD, help=f"the local cloud: a registry name or "
                        f"a GGUF path (default {CLOUD}); see --cloud-url")
    parser.add_argument("--cloud-url", help="an OpenAI-compatible base URL (e.g. "
                        "https://api.openai.com/v1); default: --cloud in-process")
    parser.add_argument("--cloud-model", default="gpt-4o-mini",
                        help="model name at --cloud-url (default gpt-4o-mini)")
    parser.add_argument("--api-key", help="key for --cloud-url (default: $CONFROUTE_API_KEY or "
                        "$OPENAI_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60.0, help="cloud timeout in seconds")


def run(args) -> int:
    from confroute.models import ModelError

    try:
        return _run(args)
    except ModelError as e:
        print(f"confroute demo: error: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from confroute.controller import Controller, SECascade
    from confroute.models import default_embedder, local_model
    from confroute.confidence.scorer import ConfidenceScorer

    prompts = args.prompt or PROMPTS
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    t0 = time.perf_counter()
    edge = local_model(args.edge)
    if args.cloud_url:
        from confroute.models.cloud import CloudModel

        cloud = CloudModel(args.cloud_url, args.cloud_model, api_key=args.api_key,
                           timeout=args.timeout)
    else:
        cloud = local_model(args.cloud)
    from confroute.decision.path import Sampling

    # meaning "auto": code prompts by behaviour in the sandbox, the others by embedding
    scorer = ConfidenceScorer(default_embedder())
    sampling = Sampling(n=args.n, max_tokens=args.max_tokens, temperature=args.temperature,
                        seed=args.seed)
    ctl = Controller(edge, cloud, SECascade(args.threshold, kind=args.kind), scorer=scorer,
                     cloud_max_tokens=args.cloud_max_tokens, sampling=sampling)
    log(f"edge: {edge.name} | cloud: {getattr(cloud, 'name', cloud)} | SE ({args.kind}) "
        f"threshold {args.threshold} nats | {args.n} samples x {args.max_tokens} tokens "
        f"(models ready in {time.perf_counter() - t0:.1f} s)")
    rows = []
    if not args.json:
        print(f"\n{'prompt':<44} {'SE':>5} {'clu':>3} {'by':<4}  {'route':<6} {'answer':<46} "
              f"{'sec':>5}")
        print("-" * 119)
    for p in prompts:
        # code needs longer answers than the one-line questions
        code = "python function" in p.lower()
        edge_opts = {"max_tokens": args.code_max_tokens} if code else {}
        cloud_opts = {"temperature": 0.0, **edge_opts}
        r = ctl.chat(p, cloud_options=cloud_opts, **edge_opts)
        row = {"prompt": p, "routed_to": r.routed_to, "semantic_entropy": r.semantic_entropy,
               "clustered_by": r.confidence.method,
               "n_samples": r.n_samples, "n_clusters": r.confidence.n_clusters,
               "answer": r.answer, "model": r.model, "degraded": r.degraded,
               "error": r.error, "latency_s": round(r.latency_s, 3), "usage": r.usage}
        rows.append(row)
        if not args.json:
            route = r.routed_to + ("!" if r.degraded else "")
            head = " ".join(r.answer.split())[:46]
            by = "exec" if r.confidence.method == "execution" else "emb"
            print(f"{p[:44]:<44} {r.semantic_entropy:5.2f} {row['n_clusters']:>3} {by:<4}  "
                  f"{route:<6} {head:<46} {r.latency_s:5.1f}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        n_cloud = sum(r["routed_to"] == "cloud" for r in rows)
        print("by: how samples were grouped by meaning (emb: embedding similarity; exec: what "
              "the code returns on the prompt's example calls, run in the sandbox)")
        print(f"\n{len(rows) - n_cloud} answered on the edge, {n_cloud} escalated to the cloud"
              + ("; '!' = cloud failed, edge answer given" if any(r["degraded"] for r in rows)
                 else ""))
    return 0
