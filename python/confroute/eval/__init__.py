"""Evaluation: outcome tables, replay of routers over them, routing and uncertainty metrics,
plots, and an LLM judge. Submodules load on first use (matplotlib and model clients are heavy).

    from confroute.eval import load_benchmark, replay
    report = replay(load_benchmark("gsm8k", "shared/data"), ["random", "oracle"])
"""
from confroute.eval.data import load_benchmark, load_table
from confroute.eval.table import OutcomeTable
from confroute.eval.replay import Report, RouterResult, replay
from confroute.eval.router_metrics import Curve, sweep

__all__ = ["Curve", "OutcomeTable", "Report", "RouterResult", "load_benchmark", "load_table",
           "replay", "sweep"]
