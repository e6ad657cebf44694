"""`sparsebound reproduce` (placeholder while being written)."""

from __future__ import annotations

import argparse


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("reproduce", help="(in progress)")


def run_reproduce_cli(args: argparse.Namespace) -> int:
    raise NotImplementedError
