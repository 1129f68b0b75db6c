"""Figures drawn from a report's metrics (matplotlib only; no torch).

Every chart comes with alt text: it is returned in :class:`Chart`, and written into the PNG's ``Description``
text chunk so that a file on disk carries it too (read it back with :func:`alt_text`). Lines and bars use the
Okabe–Ito palette and heatmaps use ``cividis``, both readable with the common forms of colour blindness.
"""

from __future__ import annotations

import io
import os
import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlit.reporting.schema import Report

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe & Ito (2008) colours, safe for deuteranopia, protanopia and tritanopia."""
HEATMAP_COLORMAP = "cividis"
"""Perceptually uniform and colour-blind safe (Nuñez et al. 2018)."""
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")

ROBUSTNESS_PLOT = "robust_accuracy_vs_eps.png"
CORRUPTION_PLOT = "corruption_heatmap.png"
RELIABILITY_PLOT = "reliability_diagram.png"
CERTIFIED_PLOT = "certified_accuracy_vs_radius.png"
GROUPS_PLOT = "group_accuracy.png"
METRIC_PLOTS = (ROBUSTNESS_PLOT, CORRUPTION_PLOT, RELIABILITY_PLOT, CERTIFIED_PLOT, GROUPS_PLOT)
"""File names of the plots :func:`plot_report` derives from metric rows."""


@dataclass
class Chart:
    """A rendered PNG figure and its alt text.

    Example:
        >>> chart = corruption_heatmap(report)  # doctest: +SKIP
        >>> chart.save("runs/x")  # doctest: +SKIP
        PosixPath('runs/x/corruption_heatmap.png')
    """

    name: str
    title: str
    alt: str
    png: bytes

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels, read from the PNG header."""
        width, height = struct.unpack(">II", self.png[16:24])
        return width, height

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the PNG as ``directory/name`` and return its path."""
        target = Path(directory) / self.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.png)
        return target


def alt_text(path: str | os.PathLike[str]) -> str | None:
    """The alt text stored in a PNG's ``Description`` chunk, or ``None`` when it has none.

    Example:
        >>> alt_text("runs/demo/baseline/corruption_heatmap.png")  # doctest: +SKIP
        'Corruption error of baseline: …'
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.info.get("Description")
    except OSError:
        return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(figure: Any, name: str, title: str, alt: str) -> Chart:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Title": title, "Description": alt})
    _pyplot().close(figure)
    return Chart(name, title, alt, buffer.getvalue())


def _names(reports: Sequence[Report], names: Sequence[str] | None) -> list[str]:
    names = list(names) if names is not None else [report.run.name for report in reports]
    if len(names) != len(reports):
        raise ValueError(f"got {len(names)} names for {len(reports)} reports")
    return names


def format_eps(norm: str, eps: float) -> str:
    """ε as people write it: ``8/255`` for L∞ radii on the 1/255 grid, otherwise 3 significant digits.

    Example:
        >>> format_eps("Linf", 8 / 255), format_eps("L2", 0.5)
        ('8/255', '0.5')
    """
    in_255ths = eps * 255
    if norm == "Linf" and eps > 0 and abs(in_255ths - round(in_255ths)) < 1e-3:
        return f"{round(in_255ths)}/255"
    return f"{eps:.3g}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


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


def robustness_chart(reports: Sequence[Report], names: Sequence[str] | None = None) -> Chart | None:
    """Robust accuracy vs ε of several runs overlaid: one panel per norm, colour per run, marker per attack.

    Returns:
        The chart, or ``None`` when no attack of any run was run at two or more radii.

    Example:
        >>> robustness_chart([baseline, robust], ["baseline", "pgd_at"]).alt  # doctest: +SKIP
    """
    names = _names(reports, names)
    curves = [robustness_curves(report) for report in reports]
    norms = sorted({
        norm for by_norm in curves for norm, lines in by_norm.items() if any(len(p) > 1 for p in lines.values())
    })
    if not norms:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 3.8), squeeze=False)
    described = []
    for axis, norm in zip(axes[0], norms, strict=True):
        attacks = sorted({attack for by_norm in curves for attack in by_norm.get(norm, {})})
        for run_index, (name, by_norm) in enumerate(zip(names, curves, strict=True)):
            for attack, points in sorted(by_norm.get(norm, {}).items()):
                radii, accuracies = zip(*points, strict=True)
                scale = 255 if norm == "Linf" else 1
                axis.plot([r * scale for r in radii], accuracies, color=PALETTE[run_index % len(PALETTE)],
                          marker=MARKERS[attacks.index(attack) % len(MARKERS)],
                          linestyle=LINESTYLES[attacks.index(attack) % len(LINESTYLES)], label=f"{name}: {attack}")
                steps = ", ".join(f"{_percent(a)} at ε={format_eps(norm, r)}" for r, a in points)
                described.append(f"{name} under {attack} ({norm}): {steps}")
        for run_index, report in enumerate(reports):
            clean = report.find("clean", "accuracy")
            if clean:
                axis.axhline(clean[0].value, color=PALETTE[run_index % len(PALETTE)], linestyle=(0, (1, 3)),
                             linewidth=1, label=f"{names[run_index]}: clean")
        axis.set_xlabel("ε × 255" if norm == "Linf" else f"ε ({norm})")
        axis.set_ylabel("robust accuracy")
        axis.set_ylim(0, 1)
        axis.set_title(f"{norm}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    alt = "Line chart of robust accuracy against attack radius ε. " + "; ".join(described) + "."
    return _render(figure, ROBUSTNESS_PLOT, "Robust accuracy vs ε", alt)


def plot_robustness_curves(report: Report, path: str | os.PathLike[str]) -> Path | None:
    """Save robust accuracy vs ε (one panel per norm, one line per attack) as a PNG with alt text.

    Args:
        report: A report with ``adversarial/robust_accuracy`` rows.
        path: PNG file to write.

    Returns:
        The path written, or ``None`` when no attack was run at two or more radii.

    Example:
        >>> plot_robustness_curves(report, "runs/demo/pgd_at_ls/robust_accuracy_vs_eps.png")  # doctest: +SKIP
    """
    return _save(robustness_chart([report]), path)


def _save(chart: Chart | None, path: str | os.PathLike[str]) -> Path | None:
    if chart is None:
        return None
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(chart.png)
    return target


def corruption_grid(report: Report) -> tuple[list[str], list[int], list[list[float | None]]]:
    """``corruption/error`` rows as a grid: corruptions (first-seen order), severities, errors by row.

    Example:
        >>> corruptions, severities, errors = corruption_grid(report)  # doctest: +SKIP
    """
    cells = {(m.context["corruption"], int(m.context["severity"])): m.value for m in report.find("corruption", "error")}
    corruptions = list(dict.fromkeys(corruption for corruption, _ in cells))
    severities = sorted({severity for _, severity in cells})
    return corruptions, severities, [[cells.get((c, s)) for s in severities] for c in corruptions]


def corruption_heatmap(report: Report, name: str | None = None) -> Chart | None:
    """Heatmap of corruption error, corruption × severity, with each cell's value printed on it.

    Returns:
        The chart, or ``None`` when the report has no ``corruption/error`` rows.

    Example:
        >>> corruption_heatmap(report).name  # doctest: +SKIP
        'corruption_heatmap.png'
    """
    corruptions, severities, grid = corruption_grid(report)
    if not corruptions:
        return None
    name = name or report.run.name
    plt = _pyplot()
    import numpy as np

    values = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    figure, axis = plt.subplots(figsize=(1.1 * len(severities) + 3, 0.32 * len(corruptions) + 1.6))
    image = axis.imshow(values, cmap=HEATMAP_COLORMAP, vmin=0, vmax=1, aspect="auto")
    for row, column in np.ndindex(values.shape):
        if not np.isnan(values[row, column]):
            red, green, blue, _ = image.cmap(image.norm(values[row, column]))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5  # pick the text colour with more contrast
            axis.text(column, row, f"{100 * values[row, column]:.0f}", ha="center", va="center", fontsize=7,
                      color="black" if light else "white")
    axis.set_xticks(range(len(severities)), [str(s) for s in severities])
    axis.set_yticks(range(len(corruptions)), corruptions, fontsize=8)
    axis.set_xlabel("severity")
    axis.set_title(f"{name}: corruption error (%)")
    figure.colorbar(image, ax=axis, label="error")
    flat = [(v, c, s) for c, row in zip(corruptions, grid, strict=True) for s, v in zip(severities, row, strict=True)
            if v is not None]
    worst, best = max(flat), min(flat)
    mean = sum(v for v, _, _ in flat) / len(flat)
    alt = (f"Heatmap of corruption error for {name}: {len(corruptions)} corruptions by {len(severities)} severities. "
           f"Error ranges from {_percent(best[0])} ({best[1]}, severity {best[2]}) to {_percent(worst[0])} "
           f"({worst[1]}, severity {worst[2]}); the mean is {_percent(mean)}.")
    return _render(figure, CORRUPTION_PLOT, f"Corruption error: {name}", alt)


def reliability_bins(report: Report, split: str = "in_domain") -> list[dict[str, float]]:
    """The ``calibration/bin_accuracy`` rows of one split, by bin: ``lo, hi, accuracy, confidence, count``.

    Rows without a ``split`` count as in-domain.

    Example:
        >>> reliability_bins(report)[0]["accuracy"]  # doctest: +SKIP
    """
    rows = [
        m for m in report.find("calibration", "bin_accuracy") if m.context.get("split", "in_domain") == split
    ]
    return [
        {"lo": float(m.context["lo"]), "hi": float(m.context["hi"]), "accuracy": m.value,
         "confidence": float(m.context.get("confidence", (m.context["lo"] + m.context["hi"]) / 2)),
         "count": int(m.context.get("count", 0))}
        for m in sorted(rows, key=lambda m: float(m.context["lo"]))
    ]


def reliability_chart(reports: Sequence[Report], names: Sequence[str] | None = None,
                      split: str = "in_domain") -> Chart | None:
    """Reliability diagrams, one panel per run: accuracy per confidence bin against the diagonal.

    Returns:
        The chart, or ``None`` when no report has ``calibration/bin_accuracy`` rows for ``split``.

    Example:
        >>> reliability_chart([report]).alt  # doctest: +SKIP
    """
    names = _names(reports, names)
    panels = [(name, report, bins) for name, report in zip(names, reports, strict=True)
              if (bins := reliability_bins(report, split))]
    if not panels:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    described = []
    for index, (axis, (name, report, bins)) in enumerate(zip(axes[0], panels, strict=True)):
        axis.bar([b["lo"] for b in bins], [b["accuracy"] for b in bins], width=[b["hi"] - b["lo"] for b in bins],
                 align="edge", color=PALETTE[index % len(PALETTE)], edgecolor="black", linewidth=0.5,
                 label="accuracy")
        axis.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], linestyle="none", marker="_",
                  markersize=12, color="black", label="mean confidence")
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        ece = [m.value for m in report.find("calibration", "ece") if m.context.get("split", "in_domain") == split]
        axis.set_title(f"{name}" + (f" (ECE {ece[0]:.3f})" if ece else ""))
        axis.set_xlabel("confidence")
        axis.set_ylabel("accuracy")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.legend(fontsize=7, loc="upper left")
        gaps = max(bins, key=lambda b: b["count"] * abs(b["confidence"] - b["accuracy"]))
        described.append(
            f"{name}: {len(bins)} bins" + (f", ECE {ece[0]:.3f}" if ece else "")
            + f"; the largest weighted gap is in the bin {gaps['lo']:.2f}–{gaps['hi']:.2f}, where mean confidence "
            f"is {_percent(gaps['confidence'])} and accuracy {_percent(gaps['accuracy'])}"
        )
    alt = f"Reliability diagram ({split}): bars show accuracy per confidence bin against the diagonal. " + "; ".join(
        described) + "."
    return _render(figure, RELIABILITY_PLOT, f"Reliability diagram ({split})", alt)


def certified_curves(report: Report) -> dict[str, list[tuple[float, float]]]:
    """Certified accuracy against radius, per ``method norm guarantee``: ``{label: [(radius, accuracy), …]}``.

    Example:
        >>> certified_curves(report)  # doctest: +SKIP
        {'smoothing L2 probabilistic': [(0.0, 0.8), (0.25, 0.6)]}
    """
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for metric in report.find("certified", "certified_accuracy"):
        context = metric.context
        label = " ".join(str(context[k]) for k in ("method", "norm", "guarantee") if k in context)
        curves[label].append((float(context["radius"]), metric.value))
    return {label: sorted(points) for label, points in curves.items()}


def certified_chart(reports: Sequence[Report], names: Sequence[str] | None = None) -> Chart | None:
    """Certified accuracy vs radius of several runs overlaid: colour per run, marker per method.

    Returns:
        The chart, or ``None`` when no report has ``certified/certified_accuracy`` rows.

    Example:
        >>> certified_chart([report]).name  # doctest: +SKIP
        'certified_accuracy_vs_radius.png'
    """
    names = _names(reports, names)
    curves = [certified_curves(report) for report in reports]
    if not any(curves):
        return None
    plt = _pyplot()
    methods = sorted({label for by_label in curves for label in by_label})
    figure, axis = plt.subplots(figsize=(6, 3.8))
    described = []
    for run_index, (name, by_label) in enumerate(zip(names, curves, strict=True)):
        for label, points in sorted(by_label.items()):
            radii, accuracies = zip(*points, strict=True)
            style = methods.index(label)
            axis.step(radii, accuracies, where="post", color=PALETTE[run_index % len(PALETTE)],
                      linestyle=LINESTYLES[style % len(LINESTYLES)], marker=MARKERS[style % len(MARKERS)],
                      label=f"{name}: {label}")
            steps = ", ".join(f"{_percent(a)} at r={r:.3g}" for r, a in points)
            described.append(f"{name} with {label}: {steps}")
    axis.set_xlabel("radius")
    axis.set_ylabel("certified accuracy")
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    alt = "Step chart of certified accuracy against certification radius. " + "; ".join(described) + "."
    return _render(figure, CERTIFIED_PLOT, "Certified accuracy vs radius", alt)


def group_chart(reports: Sequence[Report], names: Sequence[str] | None = None) -> Chart | None:
    """Accuracy per group as horizontal bars, one bar per run, with each run's worst group marked.

    Returns:
        The chart, or ``None`` when no report has ``groups/accuracy`` rows.

    Example:
        >>> group_chart([report]).name  # doctest: +SKIP
        'group_accuracy.png'
    """
    names = _names(reports, names)
    per_run = [{str(m.context["group"]): m.value for m in report.find("groups", "accuracy")} for report in reports]
    groups = list(dict.fromkeys(group for by_group in per_run for group in by_group))
    if not groups:
        return None
    plt = _pyplot()
    height = 0.8 / len(reports)
    figure, axis = plt.subplots(figsize=(6.5, 0.45 * len(groups) * max(1, len(reports) * 0.6) + 1.4))
    described = []
    hatches = ("", "//", "..", "xx", "\\\\", "++")
    for run_index, (name, by_group) in enumerate(zip(names, per_run, strict=True)):
        if not by_group:
            continue
        worst = min(by_group, key=by_group.__getitem__)
        positions = [groups.index(g) + run_index * height for g in by_group]
        axis.barh(positions, list(by_group.values()), height=height, color=PALETTE[run_index % len(PALETTE)],
                  hatch=hatches[run_index % len(hatches)], edgecolor="black", linewidth=0.5, label=name)
        axis.annotate("worst", (by_group[worst], groups.index(worst) + run_index * height), xytext=(4, -3),
                      textcoords="offset points", fontsize=7)
        described.append(f"{name}: " + ", ".join(f"{g} {_percent(v)}" for g, v in by_group.items())
                         + f" (worst: {worst})")
    axis.set_yticks([i + height * (len(reports) - 1) / 2 for i in range(len(groups))], groups)
    axis.set_xlim(0, 1.1)
    axis.set_xlabel("accuracy")
    axis.invert_yaxis()
    axis.legend(fontsize=8)
    alt = "Horizontal bar chart of accuracy per group. " + "; ".join(described) + "."
    return _render(figure, GROUPS_PLOT, "Accuracy per group", alt)


def report_charts(report: Report) -> list[Chart]:
    """Every chart derivable from one report's metric rows, in :data:`METRIC_PLOTS` order.

    Example:
        >>> [chart.name for chart in report_charts(report)]  # doctest: +SKIP
        ['robust_accuracy_vs_eps.png', 'reliability_diagram.png']
    """
    charts = [
        robustness_chart([report]), corruption_heatmap(report), reliability_chart([report]),
        certified_chart([report]), group_chart([report]),
    ]
    return [chart for chart in charts if chart is not None]


def plot_report(report: Report, output_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every plot derivable from the report's metric rows into ``output_dir`` (PNG, alt text embedded).

    Args:
        report: Any report; plots whose metrics are absent are skipped.
        output_dir: Folder for the files, named as in :data:`METRIC_PLOTS`.

    Returns:
        The paths written.

    Example:
        >>> [path.name for path in plot_report(report, "runs/x")]  # doctest: +SKIP
        ['robust_accuracy_vs_eps.png', 'reliability_diagram.png']
    """
    return [chart.save(output_dir) for chart in report_charts(report)]
