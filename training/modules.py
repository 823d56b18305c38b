"""Kept for models exported before ``policies`` existed: their checkpoints name the class
``training.modules.SquashedPPOModule``, which loads as ``policies.modules.SquashedPPOModule``."""

from policies.modules import SquashedGaussian, SquashedPPOModule

__all__ = ["SquashedGaussian", "SquashedPPOModule"]
