"""Type stub of the compiled core (cpp/bindings.cpp); tests/test_stub.py keeps it in sync."""
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

def build_info() -> str: ...
def token_logprobs(logits: npt.ArrayLike, token_ids: npt.ArrayLike, temperature: float = 1.0,
                   n_threads: int = 0) -> npt.NDArray[np.float64]: ...
def sequence_logprobs(token_logprobs: npt.ArrayLike, token_offsets: npt.ArrayLike,
                      reduce: str = "mean") -> npt.NDArray[np.float64]: ...
def cluster_by_similarity(embeddings: npt.ArrayLike, sample_offsets: npt.ArrayLike,
                          threshold: float, method: str = "greedy",
                          n_threads: int = 0) -> npt.NDArray[np.int32]: ...
def semantic_entropy(cluster_ids: npt.ArrayLike, sample_offsets: npt.ArrayLike,
                     seq_logprobs: Optional[npt.ArrayLike] = None, kind: str = "discrete",
                     n_threads: int = 0) -> npt.NDArray[np.float64]: ...
def confidence_batch(token_logprobs: npt.ArrayLike, token_offsets: npt.ArrayLike,
                     embeddings: npt.ArrayLike, sample_offsets: npt.ArrayLike,
                     threshold: float, method: str = "greedy", likelihood: str = "mean",
                     n_threads: int = 0) -> dict[str, Any]: ...
