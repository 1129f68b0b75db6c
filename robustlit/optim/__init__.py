"""Optimizers that PyTorch does not ship (pure PyTorch)."""

from robustlit.optim.sam import sam_perturbation
from robustlit.optim.schedules import WarmupCosine, warmup_cosine
from robustlit.optim.sgdw import SGDW
from robustlit.optim.swag import SWAGPosterior

__all__ = ["SGDW", "sam_perturbation"]
__all__ += ["WarmupCosine", "warmup_cosine"]
__all__ += ["SWAGPosterior"]
