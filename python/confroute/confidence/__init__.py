"""Samples -> meanings -> entropy: ``core`` (the C++ core's functions), ``scorer`` (a model's
samples to a :class:`~confroute.confidence.result.Confidence`), ``meaning`` (how answers are
judged alike, and the answer chosen from the clusters), ``answers`` (the final answer
of a text), ``code`` and ``execution`` (meaning for code: behaviour on example calls),
``stopping`` (when adaptive sampling may stop) and ``index`` (FAISS vectors)."""
