"""In-process GGUF models on llama.cpp (llama-cpp-python's low-level API).

- ``model``: :class:`~confroute.models.llama.model.LlamaModel` (alias ``EdgeModel``), built
  from the parts below;
- ``tokens``: the chat template, tokenize, detokenize;
- ``session``: the context and its KV cache: decode, logits, the reuse of a prompt's prefill;
- ``decoding``: the decode loop that samples n answers as parallel sequences;
- ``hidden``: hidden states read during a prefill (llama.cpp's eval callback);
- ``probe``: which llama.cpp CPU paths are safe on this machine;
- ``server``: llama-cpp-python's OpenAI-compatible server with those safe paths.

Nothing here imports llama_cpp until a model is constructed.
"""
