"""`confroute info`: what was compiled in, and semantic entropy on a tiny worked batch."""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


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
    }
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>20}: {v}")
    return 0
