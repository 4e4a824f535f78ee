"""`confroute eval judge`: grade answers with an LLM judge (cached on disk)."""
from __future__ import annotations

import json

HELP = "grade answers with an LLM judge (cached on disk)"


def add_arguments(j) -> None:
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


JUDGE_FIELDS = {"single": ("question", "answer"), "pairwise": ("question", "answer_a", "answer_b"),
                "best-of-k": ("question", "ground_truth", "answers")}


def run(args) -> int:
    from confroute.runtime.checkpoint import read_jsonl
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
