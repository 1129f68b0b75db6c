"""Adversarial attacks in pure PyTorch; every function works on any ``nn.Module``.

Example:
    >>> import torch
    >>> from robustlit.attacks import pgd
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> x_adv = pgd(model, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), eps=8 / 255, steps=10)
"""

from functools import partial

from robustlit.attacks._common import NORMS, eval_mode, margin_loss, parse_eps, project
from robustlit.attacks.apgd import APGD, APGDT, apgd, apgd_targeted
from robustlit.attacks.autoattack import VERSIONS, AutoAttackResult, autoattack
from robustlit.attacks.cw import CWL2, CWLinf, cw_l2, cw_linf
from robustlit.attacks.fab import FAB, FABT, fab, fab_targeted
from robustlit.attacks.l1 import l1_projection, l1_steepest_ascent
from robustlit.attacks.losses import dlr_loss, targeted_dlr_loss
from robustlit.attacks.pgd import PGD, fgsm, pgd
from robustlit.attacks.precision import AutocastModel, with_precision
from robustlit.attacks.square import Square, square
from robustlit.attacks.sweep import RobustnessCurve, robustness_curve

ATTACKS = {
    "fgsm": fgsm,
    "pgd": pgd,
    "apgd-ce": partial(apgd, loss="ce"),
    "apgd-dlr": partial(apgd, loss="dlr"),
    "apgd-t": apgd_targeted,
    "fab": fab,
    "fab-t": fab_targeted,
    "square": square,
    "cw-l2": cw_l2,
    "cw-linf": cw_linf,
}
"""Attacks by name, as the evaluation suites and configs refer to them."""

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "CWL2",
    "FAB",
    "FABT",
    "NORMS",
    "PGD",
    "VERSIONS",
    "AutoAttackResult",
    "AutocastModel",
    "CWLinf",
    "RobustnessCurve",
    "Square",
    "apgd",
    "apgd_targeted",
    "autoattack",
    "cw_l2",
    "cw_linf",
    "fab",
    "fab_targeted",
    "robustness_curve",
    "square",
    "with_precision",
    "dlr_loss",
    "eval_mode",
    "fgsm",
    "l1_projection",
    "l1_steepest_ascent",
    "margin_loss",
    "parse_eps",
    "pgd",
    "project",
    "targeted_dlr_loss",
]
