"""The robustness_report.json contract: round trip, validation errors, tables, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rich.console import Console

from robustlit.reporting import (
    DataInfo,
    Metric,
    ModelInfo,
    Report,
    ReportError,
    RunInfo,
    comparison_rows,
    metric_label,
    print_comparison,
    read_report,
    write_report,
)


def _report(name: str = "baseline", accuracy: float = 0.9, robust: float = 0.4) -> Report:
    return Report(
        run=RunInfo(name, name, "train", 0, "2026-11-27T00:00:00Z", "2026-11-27T00:01:00Z", {"seed": 0}, None, "0.1.0"),
        model=ModelInfo("smallcnn", 1234, "last.ckpt"),
        data=DataInfo("digits", 359, "ab" * 32),
        metrics=[
            Metric("clean", "accuracy", accuracy),
            Metric("adversarial", "robust_accuracy", robust, {"attack": "pgd", "norm": "Linf", "eps": 8 / 255}),
        ],
        timings={"fit": 1.5},
    )


def test_round_trip_through_a_file(tmp_path):
    path = write_report(_report(), tmp_path)
    assert path.name == "robustness_report.json"
    data = json.loads(path.read_text())
    assert list(data)[0] == "schema_version" and data["schema_version"] == 1
    assert set(data) == {"schema_version", "run", "model", "data", "metrics", "timings", "artifacts", "warnings"}
    assert read_report(tmp_path) == _report()
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=2), "unsupported schema_version 2"),
        (lambda d: d["run"].pop("seed"), "run is missing seed"),
        (lambda d: d["run"].update(type="tune"), "run.type must be one of train, evaluate"),
        (lambda d: d["metrics"][1].update(value="high"), r"metrics\[1\].value must be a number"),
        (lambda d: d.update(metrics={}), "metrics must be a list"),
        (lambda d: d.pop("data"), "data must be an object"),
        (lambda d: d.update(timings={"fit": "slow"}), "timings must map names to seconds"),
    ],
)
def test_schema_violations_name_the_field(mutate, message):
    data = _report().to_dict()
    mutate(data)
    with pytest.raises(ReportError, match=message):
        Report.from_dict(data)


def test_unreadable_files_give_one_line_errors(tmp_path):
    with pytest.raises(ReportError, match="cannot read report"):
        read_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="is not valid JSON"):
        read_report(bad)


def test_nan_values_are_refused_on_write_and_read(tmp_path):
    report = _report(robust=float("nan"))
    with pytest.raises(ValueError):
        write_report(report, tmp_path)
    data = _report().to_dict()
    data["metrics"][0]["value"] = float("nan")
    with pytest.raises(ReportError, match="must be a number"):
        Report.from_dict(data)


def test_labels_and_comparison_rows_align_reports():
    assert metric_label(_report().metrics[1]) == "adversarial/robust_accuracy pgd Linf eps=8/255"
    extra = _report("robust", 0.8, 0.6)
    extra.metrics.append(Metric("calibration", "ece", 0.05, {"bins": 15}))
    rows = dict(comparison_rows([_report(), extra]))
    assert rows["clean/accuracy"] == [0.9, 0.8]
    assert rows["calibration/ece bins=15"] == [None, 0.05]


def test_comparison_table_prints_deltas():
    console = Console(record=True, width=200)
    print_comparison([_report(), _report("robust", 0.8, 0.6)], console=console)
    text = console.export_text()
    assert "-0.1000" in text and "+0.2000" in text and "robust" in text


def test_reporting_does_not_import_torch():
    code = "import sys, robustlit.reporting; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
