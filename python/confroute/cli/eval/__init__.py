"""`confroute eval`: replay routers over recorded outcomes, build outcome tables live, judge.

    confroute eval replay --benchmark gsm8k --data shared/data --router random --router oracle --out D
    confroute eval replay --table my_outcomes.csv --router scores:se.csv --out D
    confroute eval build --benchmark mmlu --data shared/data --limit 300 --edge qwen2.5-coder-0.5b-instruct \
        --cloud recorded:gpt-4-1106-preview --checkpoint ck.jsonl --out table.csv
    confroute eval replay --table table.csv --router random --router oracle --router signals --out D
    confroute eval crossfit --table table.csv --router mlp --router sep --target se --target error \
        --edge qwen2.5-coder-0.5b-instruct --out table_cv.csv
    confroute eval chain --table smol.csv --join qwen.csv --tier smollm2-135m-instruct:answer_logprob \
        --tier qwen2.5-coder-0.5b-instruct:answer_logprob --tier qwen2.5-coder-1.5b-instruct --out D
    confroute eval report D1 D2 --out R
    confroute eval guarantee --benchmark mmlu --data shared/data --crossfit mlp --eps 0.05 --out D

One module per action, each with its `HELP`, `add_arguments(subparser)` and `run(args)`; heavy
imports stay inside the functions, so building the parser is cheap.
"""
from __future__ import annotations

from . import adaptive, build, chain, crossfit, guarantee, judge, prefix, replay, report

# in `confroute eval --help` order
_ACTIONS = {"replay": replay, "chain": chain, "build": build, "crossfit": crossfit,
            "prefix": prefix, "adaptive": adaptive, "report": report, "judge": judge, "guarantee": guarantee}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION")
    for name, action in _ACTIONS.items():
        action.add_arguments(sub.add_parser(name, help=action.HELP))


def run(args) -> int:
    action = _ACTIONS.get(args.eval_command)
    if action is None:
        raise ValueError("choose an action: confroute eval replay | chain | build | crossfit | prefix | "
                         "adaptive | report | judge | guarantee (see --help)")
    return action.run(args)
