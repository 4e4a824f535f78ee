"""`confroute eval`: for now all of it is in build.py (moved there whole from commands/eval.py);
the next commit splits it into one module per action."""
from .build import _BuildReplica, _clean, _side, add_arguments, format_table, run

__all__ = ["add_arguments", "run", "format_table", "_clean", "_side", "_BuildReplica"]
