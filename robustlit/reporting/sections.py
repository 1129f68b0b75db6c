"""The content of an exported report: sections of tables, charts and plain-language lines, from report files.

HTML, PDF and CSV exports all render the same :class:`ReportContent`, so they show the same numbers.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from robustlit.reporting.compare import REGRESSION_THRESHOLD, higher_is_better, kpis, regressions
from robustlit.reporting.json import REPORT_FILENAME, read_report
from robustlit.reporting.plots import (
    METRIC_PLOTS,
    Chart,
    alt_text,
    certified_chart,
    corruption_heatmap,
    format_eps,
    group_chart,
    reliability_bins,
    reliability_chart,
    robustness_chart,
)
from robustlit.reporting.schema import Report, ReportError

Cell = str | int | float | None
_ARROWS = {"better": "▲ ", "worse": "▼ ", "same": ""}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
REDRAWN_ARTIFACTS = frozenset({*METRIC_PLOTS, "certified_accuracy.png"})
"""Plot files an export leaves out because it draws the same chart from the metric rows (with alt text);
``certified_accuracy.png`` is the certified suite's curve."""


@dataclass
class RunSource:
    """A loaded report, the label it is shown under, and the folder its relative artifact paths start from.

    Example:
        >>> RunSource("baseline", report, Path("runs/demo/baseline"))  # doctest: +SKIP
    """

    label: str
    report: Report
    directory: Path | None = None


@dataclass
class Table:
    """A titled table; ``name`` is its CSV file stem. Cells keep full precision, rendering formats them.

    Example:
        >>> Table("kpis", "KPIs", ["kpi", "run"], [["Clean accuracy", 0.9]]).csv().splitlines()
        ['kpi,run', 'Clean accuracy,0.9']
    """

    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    directions: dict[str, bool] = field(default_factory=dict)
    """For Δ columns: row index → whether higher is better, to colour improvements and regressions."""

    def is_delta(self, column: int) -> bool:
        """Whether ``column`` holds differences against the baseline."""
        return self.columns[column].startswith("Δ ")

    def verdict(self, row: int, column: int) -> str | None:
        """``"better"``, ``"worse"`` or ``"same"`` for a Δ cell, ``None`` for any other cell."""
        value = self.rows[row][column]
        if not self.is_delta(column) or not isinstance(value, int | float):
            return None
        if value == 0:
            return "same"
        return "better" if (value > 0) == self.directions.get(str(row), True) else "worse"

    def text(self, row: int, column: int) -> str:
        """A cell as shown: 4 decimals, ε as ``8/255`` under L∞, ▲/▼ before Δs that are better/worse.

        Example:
            >>> table = Table("t", "T", ["norm", "eps", "base", "Δ new"], [["L2", 1.0, 0.5, 0.1]], {"0": True})
            >>> [table.text(0, c) for c in range(4)]
            ['L2', '1', '0.5000', '▲ +0.1000']
        """
        value = self.rows[row][column]
        verdict = self.verdict(row, column)
        if verdict is not None and isinstance(value, int | float):
            return _ARROWS[verdict] + format_delta(value)
        if self.columns[column] == "eps" and isinstance(value, int | float):
            norm = self.rows[row][self.columns.index("norm")] if "norm" in self.columns else "Linf"
            return format_context("eps", value, str(norm))
        return format_number(value)

    @property
    def filename(self) -> str:
        """``<name>.csv``."""
        return f"{self.name}.csv"

    def csv(self) -> str:
        """The table as CSV text (RFC 4180 line ends), floats at full precision."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.columns)
        writer.writerows([["" if cell is None else cell for cell in row] for row in self.rows])
        return buffer.getvalue()


@dataclass
class Section:
    """One part of the report: a title, the plain-language "what this means" line, tables, charts, notes.

    Example:
        >>> Section("data", "Data fingerprint", "All runs used the same test samples.").tables
        []
    """

    key: str
    title: str
    meaning: str
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportContent:
    """Everything an export renders.

    Example:
        >>> content = build_content(load_runs(["runs/demo/baseline", "runs/demo/pgd_at_ls"]))  # doctest: +SKIP
        >>> [s.key for s in content.sections][:2]  # doctest: +SKIP
        ['summary', 'adversarial']
    """

    title: str
    generated_at: str
    runs: list[RunSource]
    baseline: str | None
    sections: list[Section]
    omitted: list[str]

    @property
    def tables(self) -> list[Table]:
        """Every table of every section, in order."""
        return [table for section in self.sections for table in section.tables]

    @property
    def omitted_note(self) -> str | None:
        """The line that lists sections left out for lack of data, or ``None``."""
        return f"Omitted for lack of data: {', '.join(self.omitted)}." if self.omitted else None


SECTION_TITLES = {
    "summary": "Summary",
    "adversarial": "Adversarial robustness",
    "corruption": "Corruption robustness",
    "calibration": "Calibration",
    "ood": "Out-of-distribution detection",
    "selective": "Selective prediction",
    "groups": "Worst-group accuracy",
    "certified": "Certified robustness",
    "warnings": "Gradient-masking and other warnings",
    "plots": "Other plots",
    "config": "Configuration and seed",
    "data": "Data fingerprint",
}
"""Section keys in report order, with their titles."""

_ARTIFACT_SECTIONS = (
    ("ood", ("ood", "roc", "histogram", "score")),
    ("calibration", ("reliab", "calibration")),
    ("corruption", ("corruption", "occlusion")),
    ("certified", ("certif", "radius")),
    ("groups", ("group",)),
    ("selective", ("risk", "coverage", "selective")),
    ("adversarial", ("eps", "attack", "adversarial")),
)


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[RunSource]:
    """Read reports from run folders or ``robustness_report.json`` files; labels are folder names, made unique.

    Raises:
        ReportError: If a path holds no valid report.

    Example:
        >>> [run.label for run in load_runs(["runs/demo/baseline", "runs/demo/pgd_at_ls"])]  # doctest: +SKIP
        ['baseline', 'pgd_at_ls']
    """
    runs: list[RunSource] = []
    for raw in paths:
        path = Path(raw)
        file = path / REPORT_FILENAME if path.is_dir() else path
        report = read_report(file)
        runs.append(RunSource(unique_label(file.resolve().parent.name, [r.label for r in runs]), report,
                              file.resolve().parent))
    return runs


def unique_label(label: str, taken: Sequence[str]) -> str:
    """``label``, or ``label-2``, ``label-3`` … when it is taken.

    Example:
        >>> unique_label("run", ["run", "run-2"])
        'run-3'
    """
    candidate, index = label, 1
    while candidate in taken:
        index += 1
        candidate = f"{label}-{index}"
    return candidate


def format_context(key: str, value: Any, norm: str | None = None) -> str:
    """A context value as a table shows it (ε as ``8/255`` for L∞).

    Example:
        >>> format_context("eps", 8 / 255, "Linf")
        '8/255'
    """
    if key == "eps" and isinstance(value, int | float):
        return format_eps(norm or "Linf", float(value))
    return str(value)


def format_number(value: Cell) -> str:
    """A cell as text: floats to 4 decimals, ``None`` as an em dash.

    Example:
        >>> format_number(0.123456), format_number(None), format_number(3)
        ('0.1235', '—', '3')
    """
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_delta(value: float) -> str:
    """A signed delta to 4 decimals.

    Example:
        >>> format_delta(0.05), format_delta(-0.1)
        ('+0.0500', '-0.1000')
    """
    return f"{value:+.4f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _delta(value: Cell, base: Cell) -> float | None:
    if not isinstance(value, int | float) or not isinstance(base, int | float):
        return None
    return round(value - base, 12)  # drops float noise such as 0.0981000000000008


def _same(run: RunSource, other: RunSource) -> bool:
    return run.report is other.report or (run.directory is not None and run.directory == other.directory)


def metric_table(name: str, title: str, runs: Sequence[RunSource], baseline: RunSource | None, suite: str,
                 names: Sequence[str], where: Any = None, skip_context: Sequence[str] = ()) -> Table | None:
    """Metrics of ``suite`` as a table: context columns, ``metric``, one column per run, and Δ columns.

    Rows are the distinct ``(metric, context)`` pairs in first-seen order; a run without the row shows ``None``.

    Args:
        name: CSV file stem.
        title: Caption.
        runs: Runs, baseline first when there is one.
        baseline: The run the Δ columns compare against, or ``None`` for no Δ columns.
        suite: Suite whose metrics to show.
        names: Metric names to include.
        where: Optional predicate on a metric, to narrow the rows further.
        skip_context: Context keys left out of the columns (rows then differ only in the others).

    Returns:
        The table, or ``None`` when no run has a matching metric.

    Example:
        >>> metric_table("ood", "OOD", runs, None, "ood", ["auroc"]).columns  # doctest: +SKIP
        ['detector', 'ood_set', 'metric', 'baseline']
    """
    rows: dict[tuple[Any, ...], list[Cell]] = {}
    contexts: dict[tuple[Any, ...], dict[str, Any]] = {}
    metric_of: dict[tuple[Any, ...], str] = {}
    keys: list[str] = []
    for index, run in enumerate(runs):
        for metric in run.report.metrics:
            if metric.suite != suite or metric.name not in names or (where is not None and not where(metric)):
                continue
            context = {k: v for k, v in metric.context.items() if k not in skip_context}
            key = (metric.name, *sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in context.items()))
            values = rows.setdefault(key, [None] * len(runs))
            values[index] = metric.value
            contexts.setdefault(key, context)
            metric_of[key] = metric.name
            keys.extend(k for k in context if k not in keys)
    if not rows:
        return None
    labels = [run.label for run in runs]
    columns = [*keys, "metric", *labels]
    others = labels[1:] if baseline is not None else []
    columns += [f"Δ {label}" for label in others]
    table_rows: list[list[Cell]] = []
    directions: dict[str, bool] = {}
    for key, values in rows.items():
        context = contexts[key]
        row: list[Cell] = [context.get(k) if isinstance(context.get(k), int | float | None) else str(context[k])
                           for k in keys]
        row += [metric_of[key], *values]
        if baseline is not None:
            row += [_delta(v, values[0]) for v in values[1:]]
        directions[str(len(table_rows))] = higher_is_better(metric_of[key])
        table_rows.append(row)
    return Table(name, title, columns, table_rows, directions)


def _summary(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    per_run = [{kpi.label: kpi for kpi in kpis(run.report)} for run in runs]
    labels = list(dict.fromkeys(label for by_label in per_run for label in by_label))
    if not labels:
        return None
    columns = ["kpi", *(run.label for run in runs)]
    if baseline is not None:
        columns += [f"Δ {run.label}" for run in runs[1:]]
    rows: list[list[Cell]] = []
    directions: dict[str, bool] = {}
    for index, label in enumerate(labels):
        values = [by_label[label].value if label in by_label else None for by_label in per_run]
        row: list[Cell] = [label, *values]
        if baseline is not None:
            row += [_delta(v, values[0]) for v in values[1:]]
        kpi = next(by_label[label] for by_label in per_run if label in by_label)
        directions[str(index)] = kpi.higher_is_better
        rows.append(row)
    table = Table("summary_kpis", "Headline numbers" + (f" (Δ against {baseline.label})" if baseline else ""),
                  columns, rows, directions)
    notes, meaning = [], _summary_meaning(runs, baseline, per_run)
    if baseline is not None:
        for run in runs[1:]:
            for found in regressions(run.report, baseline.report):
                notes.append(f"Regression: {run.label} has robust accuracy {_pct(found.value)} under {found.label}, "
                             f"{_pct(-found.delta)} below {baseline.label}'s {_pct(found.baseline)} "
                             f"(threshold {_pct(REGRESSION_THRESHOLD)}).")
    return Section("summary", SECTION_TITLES["summary"], meaning, [table], [], notes)


def _summary_meaning(runs: list[RunSource], baseline: RunSource | None, per_run: list[dict[str, Any]]) -> str:
    parts = []
    for run, by_label in zip(runs, per_run, strict=True):
        clean = by_label.get("Clean accuracy")
        robust = next((k for k in by_label.values() if k.metric == "robust_accuracy"), None)
        if clean and robust:
            threat = robust.label.removeprefix("Robust accuracy ")
            parts.append(f"{run.label} answers {_pct(clean.value)} of test inputs correctly, and "
                         f"{_pct(robust.value)} when an attacker perturbs them {threat}")
        elif clean:
            parts.append(f"{run.label} answers {_pct(clean.value)} of test inputs correctly")
    text = "; ".join(parts) + "." if parts else "The table lists each run's headline numbers."
    if baseline is not None and len(runs) > 1:
        text += f" Δ columns compare each run with {baseline.label}; a shaded Δ is better (▲) or worse (▼)."
    return text


def _adversarial(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    table = metric_table("adversarial_robust_accuracy", "Robust accuracy per attack and ε", runs, baseline,
                         "adversarial", ["robust_accuracy"])
    if table is None:
        return None
    chart = robustness_chart([run.report for run in runs], [run.label for run in runs])
    parts = []
    for run in runs:
        rows = run.report.find("adversarial", "robust_accuracy")
        worst = min(rows, key=lambda m: m.value) if rows else None
        if worst is not None:
            norm = str(worst.context.get("norm", ""))
            parts.append(f"{run.label} keeps {_pct(worst.value)} correct under its hardest test "
                         f"({worst.context.get('attack')}, ε={format_context('eps', worst.context.get('eps'), norm)})")
    meaning = ("Robust accuracy is the share of inputs still classified correctly after an attacker changes each "
               "pixel by at most ε; larger ε is a stronger attacker. " + "; ".join(parts) + ".")
    return Section("adversarial", SECTION_TITLES["adversarial"], meaning, [table], [chart] if chart else [])


def _corruption(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    grid = metric_table("corruption_error", "Error per corruption and severity", runs, baseline, "corruption",
                        ["error"])
    summary = metric_table("corruption_summary", "Mean corruption error and mCE", runs, baseline, "corruption",
                           ["mean_error", "mce", "relative_mce"])
    occlusion = metric_table("corruption_occlusion", "Accuracy under occluding patches", runs, baseline,
                             "corruption", ["occlusion_accuracy"])
    tables = [t for t in (summary, grid, occlusion) if t is not None]
    if not tables:
        return None
    charts = []
    for run in runs:
        chart = corruption_heatmap(run.report, run.label)
        if chart is not None:
            chart.name = f"{run.label}-{chart.name}"
            charts.append(chart)
    parts = []
    for run in runs:
        errors = run.report.find("corruption", "error")
        if errors:
            worst = max(errors, key=lambda m: m.value)
            parts.append(f"{run.label} gets {_pct(sum(m.value for m in errors) / len(errors))} wrong on average on "
                         f"corrupted images, worst on {worst.context.get('corruption')} at severity "
                         f"{worst.context.get('severity')} ({_pct(worst.value)})")
    meaning = ("Corruptions are everyday image damage (noise, blur, weather, compression) at severities 1–5; "
               "lower error is better. " + ("; ".join(parts) + "." if parts else ""))
    return Section("corruption", SECTION_TITLES["corruption"], meaning.strip(), tables, charts)


def _calibration(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    names = ["ece", "adaptive_ece", "classwise_ece", "mce", "nll", "brier", "temperature"]
    table = metric_table("calibration_metrics", "Calibration metrics per split", runs, baseline, "calibration",
                         names)
    thresholds = metric_table("calibration_thresholds", "Confidence thresholds for a target risk", runs, baseline,
                              "calibration", ["threshold"])
    bins = [
        [run.label, b["lo"], b["hi"], b["confidence"], b["accuracy"], b["count"]]
        for run in runs for b in reliability_bins(run.report)
    ]
    bins_table = Table("calibration_bins", "Reliability bins (in-domain)",
                       ["run", "lo", "hi", "confidence", "accuracy", "count"], bins) if bins else None
    tables = [t for t in (table, thresholds, bins_table) if t is not None]
    if not tables:
        return None
    chart = reliability_chart([run.report for run in runs], [run.label for run in runs])
    parts = []
    for run in runs:
        ece = [m for m in run.report.find("calibration", "ece") if m.context.get("split", "in_domain") == "in_domain"]
        if ece:
            parts.append(f"{run.label}'s stated confidence is off from its real accuracy by {_pct(ece[0].value)} on "
                         f"average (ECE)")
    meaning = ("Calibration asks whether a model that says it is 90% sure is right 90% of the time; lower ECE is "
               "better. " + ("; ".join(parts) + "." if parts else ""))
    return Section("calibration", SECTION_TITLES["calibration"], meaning.strip(), tables, [chart] if chart else [])


def _ood(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    table = metric_table("ood_detection", "OOD detection per detector and OOD set", runs, baseline, "ood",
                         ["auroc", "aupr_in", "aupr_out", "fpr95"])
    if table is None:
        return None
    parts = []
    for run in runs:
        rows = run.report.find("ood", "auroc", ood_set="mean") or run.report.find("ood", "auroc")
        if rows:
            best = max(rows, key=lambda m: m.value)
            fpr = run.report.find("ood", "fpr95", **{k: best.context[k] for k in ("detector", "ood_set")
                                                      if k in best.context})
            parts.append(f"{run.label}'s best detector ({best.context.get('detector')}) reaches AUROC "
                         f"{best.value:.3f}" + (f" and lets {_pct(fpr[0].value)} of unfamiliar inputs through when it "
                                                f"keeps 95% of familiar ones" if fpr else ""))
    meaning = ("These scores say how well the model can tell inputs unlike its training data apart from familiar "
               "ones: AUROC 1.0 is perfect, 0.5 is a coin toss. " + "; ".join(parts) + ".")
    return Section("ood", SECTION_TITLES["ood"], meaning, [table])


def _selective(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    table = metric_table("selective_prediction", "Selective prediction", runs, baseline, "selective",
                         ["aurc", "e_aurc", "coverage_at_risk"])
    if table is None:
        return None
    meaning = ("If the model may abstain on inputs it is unsure about, AURC measures the remaining error across "
               "all abstention levels (lower is better), and coverage at risk says what share of inputs it can still "
               "answer while keeping its error below the target.")
    return Section("selective", SECTION_TITLES["selective"], meaning, [table])


def _groups(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    table = metric_table("groups_accuracy", "Accuracy per group", runs, baseline, "groups",
                         ["accuracy", "worst_group_accuracy", "average_accuracy"])
    if table is None:
        return None
    chart = group_chart([run.report for run in runs], [run.label for run in runs])
    parts = []
    for run in runs:
        groups = run.report.find("groups", "accuracy")
        if groups:
            worst = min(groups, key=lambda m: m.value)
            average = sum(m.value for m in groups) / len(groups)
            parts.append(f"{run.label}'s weakest group ({worst.context.get('group')}) gets {_pct(worst.value)} "
                         f"right against {_pct(average)} averaged over groups")
    meaning = ("A model can look accurate overall while failing one subgroup; the worst group is the one to watch. "
               + ("; ".join(parts) + "." if parts else ""))
    return Section("groups", SECTION_TITLES["groups"], meaning.strip(), [table], [chart] if chart else [])


def _certified(runs: list[RunSource], baseline: RunSource | None) -> Section | None:
    table = metric_table("certified_radius", "Certified accuracy per radius", runs, baseline, "certified",
                         ["certified_accuracy"])
    summary = metric_table("certified_summary", "Median certified radius and abstain rate", runs, baseline,
                           "certified", ["median_radius", "abstain_rate"])
    tables = [t for t in (summary, table) if t is not None]
    if not tables:
        return None
    chart = certified_chart([run.report for run in runs], [run.label for run in runs])
    parts = []
    for run in runs:
        for median in run.report.find("certified", "median_radius"):
            parts.append(f"half of {run.label}'s test inputs are provably classified correctly up to radius "
                         f"{median.value:.3g} ({median.context.get('method')})")
    meaning = ("Certified accuracy is a guarantee, not a test: no attack of the given radius can change these "
               "predictions. " + ("; ".join(parts) + "." if parts else ""))
    return Section("certified", SECTION_TITLES["certified"], meaning.strip(), tables, [chart] if chart else [])


def _warnings(runs: list[RunSource]) -> Section | None:
    findings = [(run.label, finding) for run in runs for finding in run.report.warnings]
    rows: list[list[Cell]] = [[label, f.suite, f.check, f.message] for label, f in findings]
    attacked = [run.label for run in runs if run.report.find("adversarial", "robust_accuracy")]
    if not rows and not attacked:
        return None
    masking = sum(f.suite == "adversarial" for _, f in findings)
    if masking:
        meaning = (f"{masking} gradient-masking warning(s): the attacks may have been blocked by the model's "
                   "gradients rather than defeated by it, so the robust accuracy above may be too optimistic. "
                   "Confirm it with a gradient-free attack before relying on it.")
    elif attacked:
        meaning = (f"No signs of gradient masking were found for {', '.join(attacked)}: the attacks had working "
                   "gradients, so their robust accuracy is not inflated by that known failure.")
    else:
        meaning = "No attack was run, so gradient masking was not checked."
    others = sorted({f.suite for _, f in findings if f.suite != "adversarial"})
    if others:
        meaning += (f" {len(rows) - masking} other warning(s) from the {', '.join(others)} suite(s) are listed too; "
                    "each says what to check.")
    tables = [Table("evaluation_warnings", "Warnings raised during evaluation", ["run", "suite", "check", "message"],
                    rows)] if rows else []
    return Section("warnings", SECTION_TITLES["warnings"], meaning, tables)


def _config(runs: list[RunSource], baseline: RunSource | None) -> Section:
    fields = [
        ("run id", lambda r: r.run.id), ("name", lambda r: r.run.name), ("type", lambda r: r.run.type),
        ("seed", lambda r: r.run.seed), ("started at", lambda r: r.run.started_at),
        ("finished at", lambda r: r.run.finished_at), ("git sha", lambda r: r.run.git_sha),
        ("robustlit version", lambda r: r.run.robustlit_version), ("model", lambda r: r.model.name),
        ("parameters", lambda r: r.model.params), ("checkpoint", lambda r: r.model.checkpoint),
        ("packages", lambda r: json.dumps(getattr(r.run, "packages", None), sort_keys=True)
         if getattr(r.run, "packages", None) else None),
    ]
    labels = [run.label for run in runs]
    info = Table("run_info", "Runs", ["field", *labels],
                 [[name, *(get(run.report) for run in runs)] for name, get in fields])
    flat = [_flatten(run.report.run.config) for run in runs]
    keys = list(dict.fromkeys(key for config in flat for key in config))
    config = Table("configuration", "Resolved configuration", ["key", *labels],
                   [[key, *(config.get(key) for config in flat)] for key in keys])
    timing_keys = list(dict.fromkeys(key for run in runs for key in run.report.timings))
    timings = Table("timings", "Timings (seconds)", ["step", *labels],
                    [[key, *(run.report.timings.get(key) for run in runs)] for key in timing_keys])
    seeds = ", ".join(f"{run.label}: {run.report.run.seed}" for run in runs)
    meaning = f"These settings and seeds ({seeds}) reproduce the runs."
    if baseline is not None and len(runs) > 1:
        differing = [key for key in keys if len({json.dumps(c.get(key), default=str) for c in flat}) > 1]
        meaning += f" {len(differing)} setting(s) differ between the runs" + (
            f": {', '.join(differing[:6])}{' …' if len(differing) > 6 else ''}." if differing else ".")
    tables = [info, config] + ([timings] if timing_keys else [])
    return Section("config", SECTION_TITLES["config"], meaning, tables)


def _flatten(config: Any, prefix: str = "") -> dict[str, Cell]:
    if isinstance(config, dict) and config:
        flat: dict[str, Cell] = {}
        for key, value in config.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(config, str | int | float) or config is None:
        return {prefix: config}
    return {prefix: json.dumps(config, default=str)}


def _data(runs: list[RunSource], baseline: RunSource | None) -> Section:
    rows: list[list[Cell]] = [
        [run.label, run.report.data.name, run.report.data.n_test, run.report.data.fingerprint] for run in runs
    ]
    table = Table("data_fingerprint", "Evaluation data", ["run", "dataset", "n_test", "fingerprint"], rows)
    fingerprints = {run.report.data.fingerprint for run in runs}
    if len(runs) == 1:
        meaning = (f"{runs[0].label} was scored on {runs[0].report.data.n_test} samples of {runs[0].report.data.name}; "
                   "the fingerprint identifies exactly those samples, so a rerun can prove it used the same data.")
    elif len(fingerprints) == 1:
        meaning = ("All runs were scored on the very same test samples (identical fingerprints), so their numbers "
                   "compare like for like.")
    else:
        meaning = ("The runs were scored on different test data (the fingerprints differ), so differences between "
                   "them mix model and data effects: compare with care.")
    return Section("data", SECTION_TITLES["data"], meaning, [table])


def artifact_path(run: RunSource, uri: str) -> Path | None:
    """Where an artifact's file is on disk: its URI as given, or relative to the run folder; ``None`` if absent.

    Example:
        >>> artifact_path(run, "ood_roc.png")  # doctest: +SKIP
        PosixPath('runs/x/ood_roc.png')
    """
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    candidates = [Path(uri)]
    if run.directory is not None:
        candidates += [run.directory / uri, run.directory / Path(uri).name]
    return next((path for path in candidates if path.is_file()), None)


def artifact_charts(runs: Sequence[RunSource]) -> dict[str, list[Chart]]:
    """Plot artifacts (PNG/JPEG on disk) by the section they belong to; plots re-drawn from metrics are skipped.

    Files in :data:`REDRAWN_ARTIFACTS` are left out because the export draws those charts from the metric rows
    itself; the rest are placed by keywords in their names (``ood``, ``roc`` … go to
    ``ood``), and anything unmatched goes to ``plots``.

    Example:
        >>> artifact_charts(runs)["ood"][0].name  # doctest: +SKIP
        'ood_score_histogram.png'
    """
    placed: dict[str, list[Chart]] = {}
    for run in runs:
        for artifact in run.report.artifacts:
            if artifact.type not in ("plot", "plots") or Path(artifact.uri).name in REDRAWN_ARTIFACTS:
                continue
            path = artifact_path(run, artifact.uri)
            if path is None or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            text = f"{artifact.name} {path.name}".lower()
            section = next((key for key, words in _ARTIFACT_SECTIONS if any(w in text for w in words)), "plots")
            alt = alt_text(path) or f"Plot {artifact.name} written by run {run.label} (no description was stored)."
            placed.setdefault(section, []).append(Chart(f"{run.label}-{path.name}", f"{run.label}: {artifact.name}",
                                                        alt, path.read_bytes()))
    return placed


def build_content(runs: Sequence[RunSource], baseline: RunSource | None = None,
                  title: str | None = None) -> ReportContent:
    """Assemble the sections of a report over ``runs``; sections without data are left out and listed.

    Args:
        runs: Runs to report on.
        baseline: The run Δs compare against (shown first); it need not be among ``runs``.
        title: Report title; defaults to "Robustness report: <labels>".

    Raises:
        ReportError: If no runs are given.

    Example:
        >>> content = build_content(load_runs(["runs/demo/pgd_at_ls"]), load_runs(["runs/demo/baseline"])[0])
        ... # doctest: +SKIP
    """
    if not runs and baseline is None:
        raise ReportError("a report needs at least one run")
    ordered = list(runs) if baseline is None else [baseline, *(run for run in runs if not _same(run, baseline))]
    taken: list[str] = []
    for index, run in enumerate(ordered):
        ordered[index] = RunSource(unique_label(run.label, taken), run.report, run.directory)
        taken.append(ordered[index].label)
    baseline = ordered[0] if baseline is not None else None
    builders = {
        "summary": lambda: _summary(ordered, baseline),
        "adversarial": lambda: _adversarial(ordered, baseline),
        "corruption": lambda: _corruption(ordered, baseline),
        "calibration": lambda: _calibration(ordered, baseline),
        "ood": lambda: _ood(ordered, baseline),
        "selective": lambda: _selective(ordered, baseline),
        "groups": lambda: _groups(ordered, baseline),
        "certified": lambda: _certified(ordered, baseline),
        "warnings": lambda: _warnings(ordered),
        "plots": lambda: None,
        "config": lambda: _config(ordered, baseline),
        "data": lambda: _data(ordered, baseline),
    }
    extra = artifact_charts(ordered)
    sections, omitted = [], []
    for key, build in builders.items():
        section = build()
        if key in extra:
            if section is None:
                meaning = ("Plots the runs wrote themselves; each image's description says what it shows."
                           if key == "plots" else "The runs wrote these plots; the metric rows behind them were "
                           "not in the report.")
                section = Section(key, SECTION_TITLES[key], meaning)
            section.charts.extend(extra[key])
        if section is None:
            if key != "plots":
                omitted.append(SECTION_TITLES[key])
            continue
        sections.append(section)
    names = ", ".join(run.label for run in ordered)
    return ReportContent(
        title=title or f"Robustness report: {names}",
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        runs=ordered,
        baseline=baseline.label if baseline is not None else None,
        sections=sections,
        omitted=omitted,
    )
