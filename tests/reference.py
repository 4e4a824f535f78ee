"""Moved to helpers/reference.py. This name stays for bench/bench_core.py, which puts tests/ on
sys.path (bench/conftest.py) and imports `reference`; remove it once bench/ imports
helpers.reference."""
from helpers.reference import *  # noqa: F401,F403
