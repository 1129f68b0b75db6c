"""Adversarial attacks in pure PyTorch; every function works on any ``nn.Module``.

Example:
    >>> import torch
    >>> from robustlit.attacks import pgd
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> x_adv = pgd(model, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), eps=8 / 255, steps=10)
"""

from robustlit.attacks._common import NORMS, eval_mode, margin_loss, parse_eps, project
from robustlit.attacks.pgd import PGD, fgsm, pgd

ATTACKS = {"fgsm": fgsm, "pgd": pgd}
"""Attacks by name, as the evaluation suites and configs refer to them."""

__all__ = ["ATTACKS", "NORMS", "PGD", "eval_mode", "fgsm", "margin_loss", "parse_eps", "pgd", "project"]
