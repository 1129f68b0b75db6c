"""The smoothed ε ramp of certified training: polynomial growth that turns into a linear ramp.

Reference: Gowal et al. 2018 (IBP) and Zhang et al. 2020 (CROWN-IBP) ramp ε from 0 to its final value;
the smoothed variant starts as ``t^β`` and joins a straight line at ``mid`` of the ramp with a matching
slope, so ε grows slowly while the bounds are still loose.
"""

from __future__ import annotations


def smoothed_ramp(step: float, start: float, length: float, final: float, mid: float = 0.25,
                  beta: float = 4.0) -> float:
    """ε at ``step`` of a ramp from 0 (before ``start``) to ``final`` (after ``start + length``).

    On ``[start, start + mid·length]`` the value is ``a·(step − start)^β``; after that it is linear up
    to ``final``; ``a`` makes value and slope continuous where the two pieces meet.

    Args:
        step: Current training step.
        start: Step at which the ramp starts.
        length: Steps the ramp lasts (0: jump to ``final`` at ``start``).
        final: Value at the end of the ramp.
        mid: Fraction of the ramp spent on the polynomial part, in [0, 1).
        beta: Exponent of the polynomial part (≥ 1).

    Returns:
        The scheduled value.

    Example:
        >>> [round(smoothed_ramp(t, 0, 100, 1.0), 4) for t in (0, 25, 50, 100, 200)]
        [0.0, 0.0769, 0.3846, 1.0, 1.0]
    """
    if length < 0 or not 0 <= mid < 1 or beta < 1:
        raise ValueError(f"smoothed_ramp needs length >= 0, 0 <= mid < 1 and beta >= 1, got {length}, {mid}, {beta}")
    t = step - start
    if t <= 0:
        return 0.0 if length > 0 or t < 0 else final
    if t >= length:
        return final
    knee = mid * length
    # value a·knee^β and slope a·β·knee^(β−1) at the knee; the line from there reaches final at length
    scale = final / (knee**beta + beta * knee ** (beta - 1) * (length - knee)) if knee > 0 else 0.0
    if t < knee:
        return scale * t**beta
    at_knee = scale * knee**beta
    return at_knee + (final - at_knee) * (t - knee) / (length - knee)
