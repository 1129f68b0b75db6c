"""Figures drawn from a report's metrics (matplotlib only; no torch)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from robustlit.reporting.schema import Report


def robustness_curves(report: Report) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Robust accuracy against ε, per norm and attack: ``{norm: {attack: [(eps, accuracy), …]}}``.

    Example:
        >>> robustness_curves(read_report("runs/demo/pgd_at_ls"))["Linf"]["pgd"][:1]  # doctest: +SKIP
        [(0.0156863, 0.98)]
    """
    curves: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for metric in report.find("adversarial", "robust_accuracy"):
        context = metric.context
        curves[context["norm"]][context["attack"]].append((float(context["eps"]), metric.value))
    return {
        norm: {attack: sorted(points) for attack, points in by_attack.items()} for norm, by_attack in curves.items()
    }


def plot_robustness_curves(report: Report, path: str | os.PathLike[str]) -> Path | None:
    """Save robust accuracy vs ε (one panel per norm, one line per attack) as an image.

    Args:
        report: A report with ``adversarial/robust_accuracy`` rows.
        path: Image file to write (the suffix picks the format, e.g. ``.png``).

    Returns:
        The path written, or ``None`` when no attack was run at two or more radii.

    Example:
        >>> plot_robustness_curves(report, "runs/demo/pgd_at_ls/robust_accuracy_vs_eps.png")  # doctest: +SKIP
    """
    curves = {
        norm: lines
        for norm, lines in robustness_curves(report).items()
        if any(len(points) > 1 for points in lines.values())
    }
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = report.find("clean", "accuracy")
    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for axis, (norm, lines) in zip(axes[0], sorted(curves.items()), strict=True):
        for attack, points in sorted(lines.items()):
            radii, accuracies = zip(*points, strict=True)
            scale = 255 if norm == "Linf" else 1
            axis.plot([r * scale for r in radii], accuracies, marker="o", label=attack)
        if clean:
            axis.axhline(clean[0].value, color="grey", linestyle="--", linewidth=1, label="clean")
        axis.set_xlabel("ε × 255" if norm == "Linf" else f"ε ({norm})")
        axis.set_ylabel("robust accuracy")
        axis.set_ylim(0, 1)
        axis.set_title(f"{report.run.name}: {norm}")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target
