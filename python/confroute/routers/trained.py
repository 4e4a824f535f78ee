"""The trained routers (importing this module registers them): ``sw``, ``mf``, ``mlp``,
``knn``, ``sep`` (a probe on the edge model's hidden state), and the online ``se`` router they are compared with (live edge SE, no training).
The ``random`` baseline lives in :mod:`confroute.routers.baselines`."""
from confroute.routers.knn import KNNRouter
from confroute.routers.mf import MFRouter
from confroute.routers.mlp import MLPRouter
from confroute.routers.se import SERouter
from confroute.routers.sep import SEPRouter
from confroute.routers.sw import SWRouter

TRAINED = {"sw": SWRouter, "mf": MFRouter, "mlp": MLPRouter, "knn": KNNRouter, "sep": SEPRouter}

__all__ = ["KNNRouter", "MFRouter", "MLPRouter", "SEPRouter", "SERouter", "SWRouter",
           "TRAINED"]
