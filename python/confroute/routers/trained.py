"""The trained routers (importing this module registers them): ``sw``, ``mf``, ``mlp``,
``knn``, ``sep`` (a probe on the edge model's hidden state). The ``random`` router is
:mod:`confroute.routers.random`; the evaluation baselines (``oracle``, ``scores``, the online
``se``) are :mod:`confroute.eval.baselines`."""
from confroute.routers.knn import KNNRouter
from confroute.routers.mf import MFRouter
from confroute.routers.mlp import MLPRouter
from confroute.routers.sep import SEPRouter
from confroute.routers.sw import SWRouter

TRAINED = {"sw": SWRouter, "mf": MFRouter, "mlp": MLPRouter, "knn": KNNRouter, "sep": SEPRouter}

__all__ = ["KNNRouter", "MFRouter", "MLPRouter", "SEPRouter", "SWRouter", "TRAINED"]
