"""Time ``robustlit report`` on a synthetic full-size report: a 10,000-sample evaluation with every suite.

Writes two reports (a baseline and a candidate) with the metric rows a full CIFAR-10 evaluation produces:
- adversarial: 3 L∞ attacks × 5 ε and 2 L2 attacks × 4 ε;
- corruption: 19 corruptions × 5 severities, their means, mCE and relative mCE, occlusion 4 × 9;
- calibration: 6 metrics and 15 reliability bins for in-domain and each of the 95 corruption/severity splits;
- OOD: 8 detectors × (6 sets + mean) × 4 metrics; selective; 10 groups; certified 2 methods × 21 radii.
Then it times each stage in process and the whole command in a fresh process (imports included).

Usage:
    .venv/bin/python benchmarks/report_export.py --output /tmp/report-bench
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from robustlit.reporting import DataInfo, Finding, Metric, ModelInfo, Report, RunInfo, write_report

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "snow",
    "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise",
    "gaussian_blur", "spatter", "saturate",
)
DETECTORS = ("msp", "maxlogit", "energy", "odin", "mahalanobis", "knn", "vim", "react")
OOD_SETS = ("svhn", "textures", "lsun", "held_out_classes", "gaussian_noise", "blobs")


def synthetic_report(name: str, strength: float, n_test: int = 10_000) -> Report:
    """A report with every suite's rows; ``strength`` shifts the numbers so two runs differ."""
    metrics = [Metric("clean", "accuracy", 0.94 - 0.1 * strength, {"n": n_test})]
    for norm, attacks, radii in (("Linf", ("pgd", "apgd-ce", "autoattack"), (1, 2, 4, 8, 16)),
                                 ("L2", ("pgd", "apgd-ce"), (0.25, 0.5, 1.0, 2.0))):
        for attack in attacks:
            for eps in radii:
                value = (0.9 - 0.1 * strength) * math.exp(-eps / (4 + 20 * strength))
                eps_value = round(eps / 255, 7) if norm == "Linf" else eps
                metrics.append(Metric("adversarial", "robust_accuracy", value,
                                      {"attack": attack, "norm": norm, "eps": eps_value}))
    for index, corruption in enumerate(CORRUPTIONS):
        errors = [min(0.95, 0.06 + 0.02 * index * severity * (1 - strength / 2)) for severity in range(1, 6)]
        metrics += [Metric("corruption", "error", e, {"corruption": corruption, "severity": s})
                    for s, e in enumerate(errors, start=1)]
        metrics.append(Metric("corruption", "mean_error", sum(errors) / 5, {"corruption": corruption}))
    metrics += [Metric("corruption", "mce", 0.8 + strength / 10, {"baseline": "baseline"}),
                Metric("corruption", "relative_mce", 0.9, {"baseline": "baseline"})]
    metrics += [Metric("corruption", "occlusion_accuracy", 0.9 - size / 40, {"patch": size, "position": position})
                for size in (4, 8, 12, 16) for position in range(9)]
    splits = ["in_domain"] + [f"{c}/{s}" for c in CORRUPTIONS for s in range(1, 6)]
    for index, split in enumerate(splits):
        ece = 0.02 + 0.001 * index
        context = {"bins": 15, "temperature": 1.4, "split": split}
        for metric, value in (("ece", ece), ("adaptive_ece", ece * 0.9), ("classwise_ece", ece / 5),
                              ("mce", ece * 4), ("nll", 0.3 + ece), ("brier", 0.1 + ece)):
            metrics.append(Metric("calibration", metric, value, dict(context)))
        for b in range(15):
            lo, hi = b / 15, (b + 1) / 15
            metrics.append(Metric("calibration", "bin_accuracy", max(0.0, (lo + hi) / 2 - ece),
                                  {"bin": b, "lo": lo, "hi": hi, "confidence": (lo + hi) / 2,
                                   "count": n_test // 15, "split": split}))
    metrics.append(Metric("calibration", "temperature", 1.4, {"split": "in_domain"}))
    metrics.append(Metric("calibration", "threshold", 0.9, {"target_risk": 0.02, "coverage": 0.7}))
    for d, detector in enumerate(DETECTORS):
        for ood_set in (*OOD_SETS, "mean"):
            auroc = 0.8 + 0.02 * d - 0.05 * strength
            for metric, value in (("auroc", auroc), ("aupr_in", auroc), ("aupr_out", auroc - 0.05),
                                  ("fpr95", 1 - auroc)):
                metrics.append(Metric("ood", metric, value, {"detector": detector, "ood_set": ood_set}))
    metrics += [Metric("selective", "aurc", 0.02, {}), Metric("selective", "e_aurc", 0.01, {})]
    metrics += [Metric("selective", "coverage_at_risk", 0.8, {"risk": r}) for r in (0.01, 0.02, 0.05)]
    groups = {f"group_{g}": 0.95 - 0.03 * g * (1 + strength) for g in range(10)}
    metrics += [Metric("groups", "accuracy", v, {"group": g}) for g, v in groups.items()]
    metrics += [Metric("groups", "worst_group_accuracy", min(groups.values()), {}),
                Metric("groups", "average_accuracy", sum(groups.values()) / 10, {})]
    for method, norm, guarantee in (("smoothing", "L2", "probabilistic"), ("ibp", "Linf", "exact")):
        metrics += [Metric("certified", "certified_accuracy", max(0.0, 0.8 - r / 20 - strength / 10),
                           {"method": method, "norm": norm, "radius": r / 20, "guarantee": guarantee})
                    for r in range(21)]
        metrics.append(Metric("certified", "median_radius", 0.4, {"method": method, "norm": norm,
                                                                   "guarantee": guarantee}))
        metrics.append(Metric("certified", "abstain_rate", 0.08, {"method": method}))
    config = {"data": {"name": "cifar10", "limit_test": None}, "seed": 0,
              "evaluation": {suite: {"enabled": True} for suite in ("adversarial", "corruption", "ood")}}
    return Report(
        RunInfo(name, name, "evaluate", 0, "2026-11-27T00:00:00Z", "2026-11-27T01:00:00Z", config, None, "0.1.0"),
        ModelInfo("resnet18", 11_173_962), DataInfo("cifar10", n_test, "f" * 64), metrics,
        {"suite/adversarial": 900.0}, [], [Finding("adversarial", "zero_gradients", "0.1% of inputs")],
    )


def main() -> None:
    """Write the two reports, time each stage, then time the CLI end to end."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("/tmp/report-bench"))
    args = parser.parse_args()
    runs = {name: write_report(synthetic_report(name, strength), args.output / name / "robustness_report.json").parent
            for name, strength in (("baseline", 0.0), ("candidate", 1.0))}
    report = synthetic_report("candidate", 1.0)
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"{len(report.metrics)} metric rows per run, n_test={report.data.n_test}")

    from robustlit.reporting.csv_export import write_csv
    from robustlit.reporting.html import render_html
    from robustlit.reporting.pdf import render_pdf
    from robustlit.reporting.sections import build_content, load_runs

    began, cpu = time.perf_counter(), time.process_time()
    content = build_content(load_runs([runs["candidate"]]), load_runs([runs["baseline"]])[0])
    stages = {"load + sections + charts": (time.perf_counter() - began, time.process_time() - cpu)}
    for stage, render in (("HTML", lambda: render_html(content)), ("PDF", lambda: render_pdf(content)),
                          ("CSV", lambda: write_csv(content, args.output / "csv"))):
        began, cpu = time.perf_counter(), time.process_time()
        render()
        stages[stage] = (time.perf_counter() - began, time.process_time() - cpu)
    for stage, (seconds, cpu_seconds) in stages.items():
        print(f"{stage:>26}: {seconds:6.2f} s wall, {cpu_seconds:6.2f} s CPU")
    command = [str(Path(sys.executable).parent / "robustlit"), "report", str(runs["candidate"]), "--baseline",
               str(runs["baseline"]), "--format", "html,pdf,json,csv", "--output", str(args.output / "export")]
    began, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    print(f"{'robustlit report (CLI)':>26}: {time.perf_counter() - began:6.2f} s wall, {cpu:6.2f} s CPU  "
          f"(html {(args.output / 'export' / 'robustness_report.html').stat().st_size / 1e6:.1f} MB, "
          f"pdf {(args.output / 'export' / 'robustness_report.pdf').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
