"""Hidden states of a llama.cpp model, read during the prefill through the scheduler's eval
callback (``cb_eval`` of the context params).

llama.cpp names every layer's output ``l_out-<il>`` and the final-normed state
``result_norm`` (the embeddings output). The callback is asked for each graph node
(``ask=True``) whether it wants that node's data; a yes makes the scheduler compute the graph
up to that node and hand it over (``ask=False``), when the last row (the last token of the
micro-batch) is copied out. Only the nodes' order of evaluation is split, not the ops, so the
logits are bit-for-bit those of a context without the callback (a test checks it).

The callback is a Python function called once per graph node, armed only during a prefill
that asks for hidden states; unarmed it answers "no" at once (its cost on the decode steps is
measured in ``bench/bench_edge.py``).

:class:`HiddenStates` is the model's side: ``hidden_states`` and ``hidden_state`` read them in
one prefill, and ``sample_many(hidden_layers=...)`` in its prefills.
"""
from __future__ import annotations

import ctypes
from typing import Dict, List, Optional, Sequence

import numpy as np

from confroute.models.types import Messages

GGML_TYPE_F32 = 0


class _Tensor(ctypes.Structure):
    """The head of ggml's ``struct ggml_tensor`` (ggml.h) up to ``name``: stable across
    llama.cpp versions (GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10)."""

    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int),
                ("op_params", ctypes.c_int32 * 16), ("flags", ctypes.c_int32),
                ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p),
                ("name", ctypes.c_char * 64)]


def layer_names(n_layer: int) -> Dict[int, bytes]:
    """Layer index -> graph tensor name: 0..n_layer-1 are the blocks' outputs (``l_out-i``),
    n_layer is the final-normed state (``result_norm``, what llama.cpp's embeddings give)."""
    names = {i: f"l_out-{i}".encode() for i in range(n_layer)}
    names[n_layer] = b"result_norm"
    return names


def check_layers(layers: Sequence[int], n_layer: int) -> List[int]:
    """Layer indices as ints in [0, n_layer] (n_layer = the final norm); negative indices
    count from the end (-1 = the final norm); ValueError otherwise."""
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    out = []
    for x in layers:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise ValueError(f"a layer is an integer, got {x!r}")
        i = int(x) + (n_layer + 1 if x < 0 else 0)
        if not 0 <= i <= n_layer:
            raise ValueError(f"layer {x} is outside [0, {n_layer}] (this model has {n_layer} "
                             f"layers; {n_layer} or -1 is the final norm)")
        out.append(i)
    if not out:
        raise ValueError("no layers asked for")
    if len(set(out)) != len(out):
        raise ValueError(f"layers repeat: {list(layers)}")
    return out


class HiddenSink(list):
    """Collects one [len(layers), n_embd] array per prefill, in prefill order."""

    def __init__(self, layers: Sequence[int]):
        super().__init__()
        self.layers = list(layers)


class HiddenCapture:
    """Owns the ctypes callback (keep this object alive as long as the context)."""

    def __init__(self, llama_cpp, n_layer: int, n_embd: int):
        from llama_cpp._ggml import libggml

        self.n_layer, self.n_embd = n_layer, n_embd
        self._names = layer_names(n_layer)
        self._want: Dict[bytes, int] = {}
        self._got: Dict[int, np.ndarray] = {}
        self._error: Optional[str] = None
        get = libggml.ggml_backend_tensor_get
        get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        get.restype = None
        self._tensor_get = get
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_node)

    def arm(self, layers: Sequence[int]) -> None:
        self._want = {self._names[i]: i for i in layers}
        self._got, self._error = {}, None

    def take(self) -> np.ndarray:
        """float32 [len(layers), n_embd] in the armed order; disarms."""
        want, got, err = self._want, self._got, self._error
        self._want, self._got = {}, {}
        if err:
            raise RuntimeError(err)
        missing = [n.decode() for n, i in want.items() if i not in got]
        if missing:
            raise RuntimeError(f"llama.cpp's graph has no tensor {missing} for this model: "
                               "its architecture names layer outputs differently")
        return np.stack([got[i] for i in want.values()])

    def _on_node(self, t, ask, _user):
        if not self._want:          # unarmed: the decode steps pay only this call
            return not ask          # ask: "not needed"; never abort a computation
        tensor = _Tensor.from_address(t)
        layer = self._want.get(tensor.name)
        if ask:
            return layer is not None
        if layer is not None:
            if tensor.type != GGML_TYPE_F32 or tensor.ne[0] != self.n_embd:
                self._error = (f"{tensor.name.decode()}: expected float32 rows of "
                               f"{self.n_embd}, got type {tensor.type}, ne {list(tensor.ne)}")
                return True
            rows = tensor.ne[1] * tensor.ne[2] * tensor.ne[3]
            if rows == 0:           # a chunk with no output rows (long prompts): no last layer
                return True
            out = np.empty(self.n_embd, np.float32)
            # the last row: the micro-batch's last token (the prompt's, in the last chunk)
            self._tensor_get(t, out.ctypes.data, (rows - 1) * tensor.nb[1], out.nbytes)
            self._got[layer] = out
        return True


class HiddenStates:
    """The hidden-state side of :class:`~confroute.models.llama.model.LlamaModel`: owns
    ``_capture`` (set when the context is made) and ``_hidden_sink`` (the sink of the prefill
    now running); uses its ``_lock``, ``_prompt_ids``, ``_prefill_prompt``, ``name``,
    ``n_ctx`` and ``n_layer``."""

    def _install_capture(self, llama_cpp, cp, on: bool) -> None:
        """Hidden states need llama.cpp's eval callback, which is fixed at context creation:
        opt-in, since every graph node then calls into Python."""
        self._capture = self._hidden_sink = None
        if on:
            self._capture = HiddenCapture(llama_cpp, self.n_layer, self.n_embd)
            cp.cb_eval = self._capture.callback

    def hidden_states(self, messages: Messages, layers: Sequence[int]) -> np.ndarray:
        """float32 [len(layers), n_embd]: the hidden state at the prompt's last token after
        each of ``layers`` (0..n_layer-1 the blocks' outputs, n_layer or -1 the final-normed
        state), from one prefill and no generation. Needs ``hidden_states=True`` at
        construction. ``messages`` may be token ids, as for ``sample``. The prefill stays in
        the cache: a sample of the same prompt next (a kept query's answer) starts from it
        instead of reading the prompt again, and draws the same samples."""
        sink = HiddenSink(self._hidden_layers(layers))
        prompt = self._prompt_ids(messages)
        if len(prompt) > self.n_ctx:
            raise ValueError(f"the prompt ({len(prompt)} tokens) exceeds the context of "
                             f"{self.n_ctx} tokens")
        with self._lock:
            self._hidden_sink = sink
            try:
                self._prefill_prompt(prompt)
            finally:
                self._hidden_sink = None
        return sink[0]

    def hidden_state(self, messages: Messages) -> np.ndarray:
        """Every layer's state at the prompt's last token, [n_layer + 1, n_embd] (row i as
        ``hidden_states(messages, [i])``): what the decision path hands a probe, which picks
        its own layer."""
        return self.hidden_states(messages, list(range(self.n_layer + 1)))

    def _hidden_layers(self, layers) -> List[int]:
        if self._capture is None:
            raise ValueError(f"{self.name}: hidden states need LlamaModel(..., "
                             "hidden_states=True) (llama.cpp's eval callback is set when the "
                             "context is made)")
        return check_layers(layers, self.n_layer)
