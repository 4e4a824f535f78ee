"""`confroute info`: what was compiled in, and semantic entropy on a tiny worked batch."""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _llama() -> dict:
    """What llama.cpp uses here: its compiled SIMD, the CPU's flags, and for each pulled
    default GGUF whether extra buffer types (AMX kernels, repacked weights) are on, and why."""
    try:
        from confroute.models import store
        from confroute.models.llama import probe as llama_probe
    except ImportError as e:  # pragma: no cover - llama_cpp is a dependency
        return {"error": str(e)}
    out = llama_probe.report()
    models = {}
    for name in (store.DEFAULT_EDGE, store.DEFAULT_CLOUD):
        try:
            path = store.model_path(name, pull_if_missing=False)
        except store.ModelError:  # not pulled (or corrupt): nothing to probe
            continue
        c = llama_probe.choose(path)
        models[name] = {"extra_bufts": c.extra_bufts, "source": c.source, "reason": c.reason}
    out["models"] = models
    out.pop("verdicts")
    return out


def run(args) -> int:
    import numpy as np

    import confroute

    # Two queries of three samples: the first agrees with itself, the second does not.
    emb = np.array([[1, 0, 0], [0.99, 0.1, 0], [0.98, 0, 0.1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    lp = np.array([-0.1, -0.2, -0.3, -0.1, -0.2, -0.2, -1.0, -2.0, -0.5, -0.5, -3.0, -1.0])
    r = confroute.confidence_batch(lp, np.arange(0, 13, 2), emb, [0, 3, 6], threshold=0.9)
    info = {
        "version": confroute.__version__,
        "build": confroute.build_info(),
        "example_se_kuhn": r.se_kuhn.tolist(),
        "example_n_clusters": r.n_clusters.tolist(),
        "llama_cpp": _llama(),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            if isinstance(v, dict):  # one level deeper: llama.cpp's build and choices
                for k2, v2 in v.items():
                    print(f"{k + '.' + k2:>28}: {v2}")
            else:
                print(f"{k:>28}: {v}")
    return 0
