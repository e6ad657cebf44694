"""``sparsebound reproduce`` (compatibility module): the study layer lives in :mod:`sparsebound.study`.

This module keeps the names earlier versions exported, with their dictionary
interfaces: :func:`resolve_config` returns the ``config.json`` record,
:func:`run_reproduce` takes it (or a :class:`~sparsebound.study.config.StudyConfig`)
and returns the ``results.json`` record, :func:`build_report` takes either form.
New code should use :mod:`sparsebound.study` (typed records) directly; the CLI
registers the sub-command through :func:`add_reproduce_parser` and
:func:`run_reproduce_cli`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .study.cli import add_reproduce_parser, run_reproduce_cli
from .study.config import ALL_METHODS, DEFAULTS, METHODS, QUICK, StudyConfig
from .study.results import CSV_COLUMNS, StudyResult

__all__ = [
    "ALL_METHODS",
    "CSV_COLUMNS",
    "DEFAULTS",
    "METHODS",
    "QUICK",
    "add_reproduce_parser",
    "build_report",
    "resolve_config",
    "run_reproduce",
    "run_reproduce_cli",
]


def resolve_config(cli: Mapping[str, Any], config_file: str | None = None) -> dict[str, Any]:
    """The resolved settings as the ``config.json`` record (see :func:`sparsebound.study.resolve_config`).

    Raises:
        ConfigError: any invalid option or config-file value.
    """
    from .study.config import resolve_config as resolve

    return resolve(cli, config_file).to_dict()


def run_reproduce(config: Mapping[str, Any] | StudyConfig, *, force: bool = False) -> dict[str, Any]:
    """Run a study (see :func:`sparsebound.study.run_study`); returns the ``results.json`` record."""
    from .study.pipeline import run_study

    cfg = config if isinstance(config, StudyConfig) else StudyConfig.from_dict(config)
    return run_study(cfg, force=force).to_dict()


def build_report(results: Mapping[str, Any] | StudyResult) -> str:
    """``report.md`` of a study from its results (a :class:`StudyResult` or a ``results.json`` record)."""
    from .report.markdown import build_report as build

    study = results if isinstance(results, StudyResult) else StudyResult.from_dict(results)
    return build(study)
