"""Evaluation suites as Lightning callbacks; the algorithms live in the pure-PyTorch core."""

from robustlit.suites.adversarial import AdversarialSuite
from robustlit.suites.base import EvaluationSuite
from robustlit.suites.calibration import CalibrationSuite
from robustlit.suites.certified import CertifiedSuite
from robustlit.suites.clean import CleanSuite
from robustlit.suites.corruption import CorruptionSuite
from robustlit.suites.groups import GroupSuite
from robustlit.suites.ood import OODSuite
from robustlit.suites.selective import SelectiveSuite

__all__ = ["AdversarialSuite", "CalibrationSuite", "CleanSuite", "CorruptionSuite", "EvaluationSuite"]
__all__ += ["OODSuite", "SelectiveSuite"]
__all__ += ["CertifiedSuite"]
__all__ += ["GroupSuite"]
