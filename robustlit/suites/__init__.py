"""Evaluation suites as Lightning callbacks; the algorithms live in the pure-PyTorch core."""

from robustlit.suites.adversarial import AdversarialSuite
from robustlit.suites.base import EvaluationSuite
from robustlit.suites.calibration import CalibrationSuite
from robustlit.suites.clean import CleanSuite

__all__ = ["AdversarialSuite", "CalibrationSuite", "CleanSuite", "EvaluationSuite"]
