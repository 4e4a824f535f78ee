"""Watching a real edge model from a test (test_hidden, test_sep)."""
from __future__ import annotations


def count_prefills(model, monkeypatch):
    """Records the tokens of every prefill the model runs from now on (the list it returns
    grows as it runs)."""
    prompts = []
    real = model._prefill

    def counting(tokens, *args, **kw):
        prompts.append(list(tokens))
        return real(tokens, *args, **kw)

    monkeypatch.setattr(model, "_prefill", counting)
    return prompts
