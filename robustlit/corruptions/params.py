"""Severity tables of the 19 corruptions at 32 px (CIFAR-10-C) and 224 px (ImageNet-C), and the rule for other sizes.

Values are those of Hendrycks & Dietterich's generation scripts (``make_cifar_c.py`` and ``make_imagenet_c.py`` in
hendrycks/robustness). For an image whose shorter side is ``side``:

* the CIFAR table is used when ``side < 85`` (85 ≈ √(32·224), the geometric midpoint of the two reference
  sizes) and the ImageNet table otherwise;
* parameters measured in pixels (blur radii and σ, glass-blur displacement, motion-blur length, elastic
  displacement, smoothness and affine jitter, spatter smoothing) are multiplied by ``side / reference side``
  (32 or 224); glass-blur displacements are rounded to an integer of at least 1;
* photometric parameters (noise σ and rate, brightness, contrast, saturation, JPEG quality, pixelation factor,
  zoom factors, fog and frost mixing) are used as they are.

At exactly 32 px and 224 px the tables are used unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robustlit.errors import ConfigError

STANDARD = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS = STANDARD + EXTRA
SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZES = {"cifar": 32, "imagenet": 224}
CIFAR_MAX_SIDE = 84  # images up to this side use the CIFAR table


def _zooms(stops: tuple[float, ...], steps: tuple[float, ...]) -> list[tuple[float, ...]]:
    # np.arange's float rounding decides how many factors each severity has; keep it identical to the scripts.
    return [tuple(float(v) for v in np.arange(1, stop, step)) for stop, step in zip(stops, steps, strict=True)]


_E32 = 32
_E224 = 244  # the ImageNet-C script multiplies by 244 (a typo for 224 that its authors kept); so do we

TABLES: dict[str, dict[str, list]] = {
    "gaussian_noise": {"cifar": [0.04, 0.06, 0.08, 0.09, 0.10], "imagenet": [0.08, 0.12, 0.18, 0.26, 0.38]},
    "shot_noise": {"cifar": [500, 250, 100, 75, 50], "imagenet": [60, 25, 12, 5, 3]},
    "impulse_noise": {"cifar": [0.01, 0.02, 0.03, 0.05, 0.07], "imagenet": [0.03, 0.06, 0.09, 0.17, 0.27]},
    "speckle_noise": {"cifar": [0.06, 0.1, 0.12, 0.16, 0.2], "imagenet": [0.15, 0.2, 0.35, 0.45, 0.6]},
    # (radius, alias-blur σ)
    "defocus_blur": {
        "cifar": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "imagenet": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    },
    # (σ, max displacement δ, iterations)
    "glass_blur": {
        "cifar": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "imagenet": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    },
    # (radius, σ) of ImageMagick's motion blur
    "motion_blur": {
        "cifar": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "imagenet": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    },
    "zoom_blur": {
        "cifar": _zooms((1.06, 1.11, 1.16, 1.21, 1.26), (0.01,) * 5),
        "imagenet": _zooms((1.11, 1.16, 1.21, 1.26, 1.31), (0.01, 0.01, 0.02, 0.02, 0.03)),
    },
    "gaussian_blur": {"cifar": [0.4, 0.6, 0.7, 0.8, 1], "imagenet": [1, 2, 3, 4, 6]},
    # (mean, std, zoom, threshold, motion radius, motion σ, image weight)
    "snow": {
        "cifar": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                  (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
        "imagenet": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                     (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
    },
    # (image weight, frost weight)
    "frost": {
        "cifar": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "imagenet": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    },
    # (amount, wibble decay) of the plasma fractal
    "fog": {
        "cifar": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "imagenet": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    },
    "brightness": {"cifar": [0.05, 0.1, 0.15, 0.2, 0.3], "imagenet": [0.1, 0.2, 0.3, 0.4, 0.5]},
    "contrast": {"cifar": [0.75, 0.5, 0.4, 0.3, 0.15], "imagenet": [0.4, 0.3, 0.2, 0.1, 0.05]},
    # (displacement α, smoothing σ, affine jitter)
    "elastic_transform": {
        "cifar": [(_E32 * 0, _E32 * 0, _E32 * 0.08), (_E32 * 0.05, _E32 * 0.2, _E32 * 0.07),
                  (_E32 * 0.08, _E32 * 0.06, _E32 * 0.06), (_E32 * 0.1, _E32 * 0.04, _E32 * 0.05),
                  (_E32 * 0.1, _E32 * 0.03, _E32 * 0.03)],
        "imagenet": [(_E224 * 2, _E224 * 0.7, _E224 * 0.1), (_E224 * 2, _E224 * 0.08, _E224 * 0.2),
                     (_E224 * 0.05, _E224 * 0.01, _E224 * 0.02), (_E224 * 0.07, _E224 * 0.01, _E224 * 0.02),
                     (_E224 * 0.12, _E224 * 0.01, _E224 * 0.02)],
    },
    "pixelate": {"cifar": [0.95, 0.9, 0.85, 0.75, 0.65], "imagenet": [0.6, 0.5, 0.4, 0.3, 0.25]},
    "jpeg_compression": {"cifar": [80, 65, 58, 50, 40], "imagenet": [25, 18, 15, 10, 7]},
    # (mean, std, smoothing σ, threshold, strength or mud σ, mode: 0 water / 1 mud)
    "spatter": {
        "cifar": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                  (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
        "imagenet": [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                     (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)],
    },
    # (saturation factor, offset)
    "saturate": {
        "cifar": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
        "imagenet": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    },
}

# Positions, within each severity's tuple, of the parameters measured in pixels (None: the value itself).
_PIXEL_FIELDS: dict[str, tuple[int | None, ...]] = {
    "defocus_blur": (0, 1),
    "glass_blur": (0, 1),
    "motion_blur": (0, 1),
    "gaussian_blur": (None,),
    "snow": (4, 5),
    "elastic_transform": (0, 1, 2),
    "spatter": (2,),
}


@dataclass(frozen=True)
class Setting:
    """The parameters of one corruption at one severity for one image size.

    Attributes:
        name: Corruption name.
        severity: 1 to 5.
        table: ``"cifar"`` or ``"imagenet"``: which reference table the values come from.
        scale: Factor applied to the parameters measured in pixels (1 at the reference size).
        value: The (scaled) parameter or tuple of parameters.
    """

    name: str
    severity: int
    table: str
    scale: float
    value: object


def check_name_severity(name: str, severity: int) -> None:
    """Raise ConfigError unless ``name`` is a known corruption and ``severity`` is 1..5.

    Example:
        >>> check_name_severity("fog", 6)
        Traceback (most recent call last):
        ...
        robustlit.errors.ConfigError: corruption severity=6 must be an integer from 1 to 5
    """
    if name not in TABLES:
        raise ConfigError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ConfigError(f"corruption severity={severity!r} must be an integer from 1 to 5")


def setting(name: str, severity: int, height: int, width: int) -> Setting:
    """The parameters of ``name`` at ``severity`` for an image of ``height`` × ``width`` pixels.

    Args:
        name: One of :data:`CORRUPTIONS`.
        severity: 1 to 5.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        The :class:`Setting`, with pixel-unit parameters scaled by the shorter side over the reference size.

    Example:
        >>> setting("gaussian_blur", 5, 224, 224).value
        6.0
        >>> s = setting("gaussian_blur", 5, 64, 64)
        >>> s.table, s.value
        ('cifar', 2.0)
    """
    check_name_severity(name, severity)
    side = min(height, width)
    table = "cifar" if side <= CIFAR_MAX_SIDE else "imagenet"
    scale = side / REFERENCE_SIZES[table]
    value = TABLES[name][table][severity - 1]
    fields = _PIXEL_FIELDS.get(name, ())
    if fields == (None,):
        value = float(value) * scale
    elif fields:
        value = tuple(v * scale if i in fields else v for i, v in enumerate(value))
        if name == "glass_blur":
            value = (value[0], max(1, round(value[1])), value[2])
        if name == "spatter" and value[5] == 1:  # in mud mode the fifth value is a blur σ in pixels
            value = (*value[:4], value[4] * scale, value[5])
    return Setting(name, int(severity), table, scale, value)
