"""Text <-> token ids for an in-process llama.cpp model: the GGUF's own chat template, an
answer prefix, tokenize and detokenize, and a prompt given either as messages or as ids."""
from __future__ import annotations

import ctypes
from typing import List, Sequence

import numpy as np

from confroute.models.types import Messages, normalize_messages


def chat_formatter(model, meta):
    """The GGUF's chat template as llama-cpp-python's Jinja2 formatter (``model`` its
    ``_internals.LlamaModel``, ``meta`` its metadata); None for a model without one."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = meta.get("tokenizer.chat_template")
    if not template:
        return None

    def text_of(tok):
        return model.token_get_text(tok) if tok != -1 else ""

    return Jinja2ChatFormatter(template=template, eos_token=text_of(model.token_eos()),
                               bos_token=text_of(model.token_bos()), add_generation_prompt=True)


class Tokens:
    """The text side of :class:`~confroute.models.llama.model.LlamaModel`: uses its
    ``_ll`` (llama_cpp), ``_model``, ``_vocab``, ``_formatter`` and ``n_vocab``."""

    def format_prompt(self, messages: Messages) -> str:
        """The prompt text the model sees: the GGUF's own chat template; for a model without
        one (a base model, e.g. Gemma 3 270M) the messages' texts joined by newlines, so a
        few-shot prompt reaches it verbatim."""
        msgs = normalize_messages(messages)
        if self._formatter is not None:
            return self._formatter(messages=msgs).prompt
        return "\n".join(m["content"] for m in msgs)

    def tokenize(self, text: str, special: bool = False, add_bos: bool = False) -> List[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def prompt_tokens(self, messages: Messages) -> List[int]:
        """The prompt's token ids. A conversation that ends with an assistant message asks
        the model to continue that message (its text is the start of the answer)."""
        msgs = normalize_messages(messages)
        prefix = ""
        if len(msgs) > 1 and msgs[-1]["role"] == "assistant":
            prefix, msgs = msgs[-1]["content"], msgs[:-1]
        # The template writes any BOS itself (llama-cpp-python's chat handlers do the same).
        toks = self.tokenize(self.format_prompt(msgs), special=True,
                             add_bos=self._formatter is None and self._model.add_bos_token())
        if prefix:
            toks = toks + self.tokenize(prefix)
        if not toks:
            raise ValueError("the prompt is empty after tokenization")
        return toks

    def detokenize(self, tokens: Sequence[int]) -> str:
        arr = (self._ll.llama_token * len(tokens))(*tokens)
        size = 8 * len(tokens) + 16
        buf = ctypes.create_string_buffer(size)
        n = self._ll.llama_detokenize(self._vocab, arr, len(tokens), buf, size, False, False)
        if n < 0:  # buffer too small: -n is the size needed
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_detokenize(self._vocab, arr, len(tokens), buf, -n, False, False)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def _prompt_ids(self, prompt) -> List[int]:
        """Chat messages through the chat template; token ids as given, range-checked."""
        if not _is_token_ids(prompt):
            return self.prompt_tokens(prompt)
        ids = [int(t) for t in prompt]
        if min(ids) < 0 or max(ids) >= self.n_vocab:
            raise ValueError(f"prompt token ids must lie in [0, {self.n_vocab})")
        return ids


def _is_token_ids(prompt) -> bool:
    """A non-empty list of integers (token ids), as opposed to chat messages."""
    return (not isinstance(prompt, (str, dict)) and isinstance(prompt, (Sequence, np.ndarray))
            and len(prompt) > 0
            and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool)
                    for t in prompt))
