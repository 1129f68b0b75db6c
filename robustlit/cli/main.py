"""``robustlit``: umbrella command (``demo``, ``compare``); training and evaluation have their own apps."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import robustlit
from robustlit.cli.app import exit_on_user_error


def _demo(args: argparse.Namespace) -> None:
    from robustlit.cli.demo import run_demo

    run_demo(Path(args.output), recipes=args.recipes, overrides=args.overrides)


def _compare(args: argparse.Namespace) -> None:
    from robustlit.reporting import print_comparison, read_report

    reports = [read_report(path) for path in args.reports]
    names = [Path(path).resolve().parent.name if Path(path).is_file() else Path(path).name for path in args.reports]
    print_comparison(reports, names=names)


def _report(args: argparse.Namespace) -> None:
    from robustlit.reporting.export import export_reports

    for path in export_reports(args.runs, args.output, args.format, baseline=args.baseline, title=args.title):
        print(path)


def _dashboard(args: argparse.Namespace) -> None:
    from robustlit_dashboard.launch import run_dashboard

    raise SystemExit(run_dashboard(runs=args.runs, api=args.api, api_key=args.api_key, port=args.port))


def _serve(args: argparse.Namespace) -> None:
    from robustlit_service.server import serve

    serve(host=args.host, port=args.port, home=args.home, log_level=args.log_level)


def build_parser() -> argparse.ArgumentParser:
    """The ``robustlit`` argument parser.

    Example:
        >>> build_parser().parse_args(["compare", "a.json", "b.json"]).reports
        ['a.json', 'b.json']
    """
    parser = argparse.ArgumentParser(prog="robustlit", description="Robust-by-default training and evaluation.")
    parser.add_argument("--version", action="version", version=f"robustlit {robustlit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a baseline and a robust recipe on digits and compare them")
    demo.add_argument("--output", default="runs/demo", help="folder for the runs (default: runs/demo)")
    demo.add_argument(
        "--recipes", nargs="+", default=["baseline", "pgd_at_ls"], help="recipes; the first is the baseline"
    )
    demo.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=2")
    demo.set_defaults(run=_demo)
    compare = commands.add_parser("compare", help="print reports side by side with deltas against the first")
    compare.add_argument("reports", nargs="+", help="robustness_report.json files or run folders")
    compare.set_defaults(run=_compare)
    report = commands.add_parser("report", help="export runs as HTML, PDF, CSV or JSON, with deltas to a baseline")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or robustness_report.json files")
    report.add_argument("--baseline", metavar="RUN_DIR", help="run the deltas compare against (shown first)")
    report.add_argument("--format", default="html,pdf", help="comma-separated: html,pdf,json,csv (default: html,pdf)")
    report.add_argument("--output", default="report", help="folder for the exports (default: report)")
    report.add_argument("--title", help="report title (default: the run names)")
    report.set_defaults(run=_report)
    dashboard = commands.add_parser("dashboard", help="start the Streamlit dashboard on a runs folder or the API")
    dashboard.add_argument("--runs", metavar="DIR", help="folder searched recursively for robustness_report.json")
    dashboard.add_argument("--api", metavar="URL", help="service base URL, e.g. http://127.0.0.1:8000")
    dashboard.add_argument("--api-key", metavar="KEY", help="API key (or set ROBUSTLIT_API_KEY)")
    dashboard.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    dashboard.set_defaults(run=_dashboard)
    serve = commands.add_parser("serve", help="start the REST API service (SQLite in ./.robustlit unless configured)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to serve on (default: 8000)")
    serve.add_argument("--home", metavar="DIR", help="data folder (default: $ROBUSTLIT_HOME or ./.robustlit)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(run=_serve)
    from robustlit.cli.launch import add_launch_parser

    add_launch_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of ``robustlit``."""
    args = build_parser().parse_args(argv)
    exit_on_user_error(f"robustlit {args.command}")(args.run)(args)
