"""`confroute serve`: the OpenAI-compatible routing server (see confroute.server)."""
from __future__ import annotations

import os
import socket
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1: "
                        "this machine only; give 0.0.0.0 to serve the network)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default 6060; 0 picks a free one and prints it)")
    parser.add_argument("--api-key", default=None,
                        help="require 'Authorization: Bearer KEY' (visible in the process "
                        "list: prefer the environment variable named by the config's "
                        "api_key_env, default CONFROUTE_SERVER_API_KEY)")
    parser.add_argument("--config", default=None, help="JSON or TOML server config")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])


def run(args) -> int:
    import dataclasses
    import logging

    import uvicorn

    from confroute.server import build
    from confroute.server import config as cfgmod

    cfg = cfgmod.load(args.config)
    over = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if over.get("port") == 0:
        over["port"] = 1  # placeholder for the check; the socket below picks the real one
    cfg = dataclasses.replace(cfg, **over)
    cfgmod.check(cfg)
    api_key = args.api_key or os.environ.get(cfg.api_key_env) or None
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Bind before loading the models: a port in use fails at once, and port 0 is resolved.
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, 0 if args.port == 0 else cfg.port))
    except OSError as e:
        raise ValueError(f"cannot listen on {cfg.host}:{cfg.port}: {e}") from None
    host, port = sock.getsockname()[:2]
    app, cfg = build(cfg, api_key)
    # Listen before saying so: connections that come before uvicorn's loop runs wait in the
    # backlog instead of being refused (the tests connect as soon as the line is printed).
    sock.listen(2048)
    print(f"confroute serve: listening on http://{host}:{port}/v1 "
          f"(models: {', '.join(cfg.model_ids())}; API key "
          f"{'required' if api_key else 'not required'})", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=False,
                                           timeout_keep_alive=5, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    return 0
