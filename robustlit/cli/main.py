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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point of ``robustlit``."""
    args = build_parser().parse_args(argv)
    exit_on_user_error(f"robustlit {args.command}")(args.run)(args)
