"""Continual-learning methods, looked up by name: ``get_method("pbl", params)``."""
from __future__ import annotations

from mscl.methods.base import Method, SequentialLoRA, StageContext
from mscl.methods.cit import CIT, ComputeMatchedCIT
from mscl.methods.dpo import DPO
from mscl.methods.flearning import FLearning
from mscl.methods.mocl import MoCL
from mscl.methods.osf import OSF
from mscl.methods.pbl import CIT_VARIANTS, PBL, PBL_VARIANTS
from mscl.methods.replay import Replay

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (CIT, ComputeMatchedCIT, PBL, MoCL, FLearning,
                                                                Replay, DPO, OSF, *PBL_VARIANTS,
                                                                *CIT_VARIANTS)}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return self.args[0]


def get_method(name: str, params) -> Method:
    """The method called ``name``, configured with ``params`` (a :class:`mscl.common.params.TrainingParams`)."""
    if name not in METHODS:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name](params)


__all__ = ["METHODS", "Method", "SequentialLoRA", "StageContext", "get_method", "UnknownMethodError"]
