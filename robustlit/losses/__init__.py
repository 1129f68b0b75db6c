"""Loss functions (pure PyTorch)."""

from robustlit.losses.soft_ce import label_smoothing_targets, one_hot_targets, soft_cross_entropy

__all__ = ["label_smoothing_targets", "one_hot_targets", "soft_cross_entropy"]
