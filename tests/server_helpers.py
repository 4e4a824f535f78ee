"""Moved to helpers/servers.py. This name stays for bench/bench_server.py, which puts tests/ on
sys.path and imports `server_helpers`; remove it once bench/ imports helpers.servers."""
from helpers.servers import *  # noqa: F401,F403
