"""Studies: the ``reproduce`` width sweep (and its tightness levers), in small parts.

Data flow (see ``docs/architecture.md``)::

    options, config file ─► config.resolve_config ─► StudyConfig        (validated once)
    StudyConfig ─► plan.plan_jobs ─► [Job]  (+ budget.Budget: epochs, draws per block)
    RunTask(config, job, settings) ─► runner.Executor ─► runner.execute_run ─► RunRecord
        (train / reuse checkpoints, analyse sparsity, sparsebound.certify, certificate.json)
    [RunRecord] ─► results.StudyResult (+ summary.summarize) ─► results.json, results.csv
    StudyResult ─► report.figures.study_figures, report.markdown.build_report ─► figures/, report.md

Modules: :mod:`.config` (settings), :mod:`.plan` (jobs, seeds, run identity),
:mod:`.budget` (time budget), :mod:`.runner` (execution, resuming, the executor
seam), :mod:`.ray_executor` (``--executor ray``: the runs as Ray tasks),
:mod:`.results` (typed records, JSON, CSV), :mod:`.summary` (derived
numbers, union-bound levels), :mod:`.outputs` (the output folder: lock,
changed settings, rollback, stale files), :mod:`.pipeline` (:func:`run_study`),
:mod:`.cli` (the sub-command).
"""

from __future__ import annotations

from .config import StudyConfig, resolve_config
from .pipeline import run_study
from .ray_executor import RayExecutor
from .results import MethodResult, RunInfo, RunRecord, StudyResult, load_results
from .runner import Executor, LocalExecutor, RunFailure, RunOutcome, RunTask, execute_run

__all__ = [
    "Executor",
    "LocalExecutor",
    "MethodResult",
    "RayExecutor",
    "RunFailure",
    "RunInfo",
    "RunOutcome",
    "RunRecord",
    "RunTask",
    "StudyConfig",
    "StudyResult",
    "execute_run",
    "load_results",
    "resolve_config",
    "run_study",
]
