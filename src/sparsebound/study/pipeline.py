"""A whole study, end to end: check, claim the folder, run the jobs, assemble, report.

:func:`run_study` is what ``sparsebound reproduce`` calls after
:func:`~sparsebound.study.config.resolve_config`:

1. validate everything that can fail before any work: the data load, every run's
   bound sample is large enough for the PAC-Bayes-kl bound, the folder is writable
   (nothing is created until all of this passed);
2. create ``OUT`` and lock it; refuse a folder holding a study with other settings
   unless ``force``; write ``config.json``;
3. hand the (seed, width) blocks to the executor (:mod:`.runner`; ``--executor ray``:
   :mod:`.ray_executor`), each block's settings (the budget, :mod:`.budget`) fixed
   when the executor takes it; print one line per run (or per failed run);
4. assemble the typed :class:`~sparsebound.study.results.StudyResult`, write
   ``results.json`` and ``results.csv``, draw the figures
   (:func:`sparsebound.report.figures.study_figures`), write ``report.md``
   (:func:`sparsebound.report.markdown.build_report`), and remove what the new
   report does not mention (runs and figures of other settings).

A failure before any run was computed in this invocation undoes step 2
(:class:`~sparsebound.study.outputs.Rollback`); later failures keep the finished
runs for resuming.  Runs that an executor reports as failed (a Ray task that raised,
or whose worker was lost on every attempt) leave the others going: the results are
assembled from the finished runs only, list the failures (``failed_runs``), and
:class:`~sparsebound.errors.RunFailedError` is raised after everything is written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._io import atomic_write_text, dump_json, output_lock
from ..errors import ConfigError, RunFailedError
from .budget import Budget
from .config import StudyConfig
from .outputs import CONFIG_FILE, Rollback, check_same_study, check_writable, create_folder, prune_stale
from .plan import Job, Settings, plan_jobs
from .results import RunRecord, StudyResult
from .runner import Executor, LocalExecutor, RunEnvironment, RunFailure, RunOutcome, RunTask

__all__ = ["check_bound_samples", "run_study"]


def check_bound_samples(config: StudyConfig, splits: Any, jobs: list[Job]) -> None:
    """Every run's bound sample must be large enough for the PAC-Bayes-kl bound (m >= 8), and a
    test-set bound needs test points; checked before anything is trained.

    Raises:
        ConfigError: names the run, its bound-sample size and the fix.
    """
    from ..certificate import MIN_BOUND_SAMPLES
    from ..data import split_prior_bound

    n = len(splits.train)
    if n < MIN_BOUND_SAMPLES:
        raise ConfigError(f"the training set has {n} points; the PAC-Bayes-kl bound needs a bound sample of at "
                          f"least {MIN_BOUND_SAMPLES} (raise --n-train)")
    for alpha in config.prior_fractions:
        if not any(j.alpha == alpha for j in jobs):
            continue
        seeds = sorted({j.seed for j in jobs if j.alpha == alpha})
        for s in seeds:
            _, bound = split_prior_bound(n, alpha, s)
            if bound.size < MIN_BOUND_SAMPLES:
                raise ConfigError(
                    f"with {n} training points and prior fraction {alpha:g} the bound sample S_bound has "
                    f"{bound.size} points; the PAC-Bayes-kl bound needs at least {MIN_BOUND_SAMPLES} (raise "
                    "--n-train or lower --prior-fractions)")
    if "test-set" in config.methods and len(splits.test) < 1:
        raise ConfigError("the test-set bound needs test points; raise --n-test or drop test-set from --methods")


def _run_line(rec: RunRecord, skipped: bool) -> str:
    def val(m: str) -> str:
        v = rec.unclipped(m)
        return f"{v:.3g}" if v is not None else "?"

    def f4(x: float | None) -> str:
        return "?" if x is None else f"{x:.4f}"

    t = rec.timings
    tail = "loaded from disk" if skipped else (
        f"train {t.get('training_s', 0.0):.0f}s"
        + (f", sparsity {t['sparsity_s']:.0f}s" if "sparsity_s" in t else "")
        + f", certify {t.get('certify_s', 0.0):.0f}s")
    shown = [m for m in ("sparse", "sparse-mc", "dense", "neyshabur2018", "test-set") if m in rec.results]
    return (f"{rec.run.id}: train err {f4(rec.train_error)}, test err {f4(rec.test_error)}; "
            f"unclipped " + ", ".join(f"{m} {val(m)}" for m in shown) + f" ({tail})")


def _warn_prior_mismatch(records: list[RunRecord], say: Callable[[str], Any]) -> None:
    """Posteriors of one (width, seed, alpha) must share one prior; say so when a resumed run did not."""
    shas: dict[tuple[Any, Any, Any], set[str]] = {}
    for r in records:
        if r.shared_prior_sha256 is not None:
            shas.setdefault((r.run.width, r.run.seed, r.run.prior_fraction), set()).add(r.shared_prior_sha256)
    for (w, s, a), v in shas.items():
        if len(v) > 1:
            say(f"warning: the posteriors of w{w}-s{s} with alpha {a:g} come from {len(v)} different prior "
                "checkpoints (a prior was retrained between invocations); delete their certificate.json to "
                "recompute them from one prior")


def run_study(config: StudyConfig, *, force: bool = False, executor: Executor | None = None) -> StudyResult:
    """Run the study described by ``config`` into ``config.out`` and write its results and report.

    Args:
        config: resolved settings (:func:`~sparsebound.study.config.resolve_config`).
        force: replace a study with other settings in the same folder (its stale runs and
            figures are removed once the new report is written).
        executor: where the runs execute (default: ``config.executor``: a
            :class:`~sparsebound.study.runner.LocalExecutor`, or a
            :class:`~sparsebound.study.ray_executor.RayExecutor` connected here and closed
            at the end).

    Returns:
        The study's typed results (also in ``OUT/results.json``).

    Raises:
        ConfigError: an unusable output folder, a folder in use by another run, a folder
            holding other settings (without ``force``), bound samples too small; with
            ``--executor ray``: Ray missing, an unreachable cluster, a node that does not see
            ``OUT``.
        DataError: data that cannot be loaded.
        RunFailedError: some runs failed on their workers (an executor that reports failures
            per run); the others were recorded and the results and report written (the
            error's ``study``), with the failures in them.
    """
    import torch

    # with --executor ray the runs use --threads (default 1) each; the budget's calibration here too
    threads = config.threads or (1 if config.executor == "ray" else None)
    if threads:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return _run_study(config, force, executor)
        finally:
            torch.set_num_threads(old_threads)
    return _run_study(config, force, executor)


def _run_study(config: StudyConfig, force: bool, executor: Executor | None) -> StudyResult:
    t_start = time.perf_counter()
    out = Path(config.out)
    # 1. everything that can be checked before creating anything
    check_writable(out)
    jobs = plan_jobs(config)
    splits = config.data_spec().load()
    check_bound_samples(config, splits, jobs)
    own: Any = None
    if executor is None and config.executor == "ray":
        from .ray_executor import RayExecutor

        own = executor = RayExecutor.for_config(config).connect()
    try:
        # 2. claim the folder
        created = create_folder(out)
        with output_lock(out, "reproduce"):
            rollback = Rollback(out, created)
            state = {"computed": 0, "failed": 0}
            try:
                return _run_claimed(config, force, executor, out, jobs, splits, t_start, state)
            except Exception:
                if state["computed"] == 0 and state["failed"] == 0:
                    rollback.undo()
                raise
    finally:
        if own is not None:
            own.close()


class _OpenBlocks:
    """The blocks an executor has started and not finished, for the budget of the next one:
    the estimated seconds of their unfinished runs, less the time since their last outcome."""

    def __init__(self) -> None:
        self.blocks: dict[str, dict[str, Any]] = {}

    def start(self, block: str, jobs: list[Job], st: Settings) -> None:
        self.blocks[block] = {"jobs": {j.id: j for j in jobs}, "st": st, "t": time.perf_counter()}

    def finish(self, job: Job) -> None:
        b = self.blocks.get(job.block)
        if b is not None:
            b["jobs"].pop(job.id, None)
            b["t"] = time.perf_counter()
            if not b["jobs"]:
                del self.blocks[job.block]

    def seconds_left(self, budget: Budget) -> float:
        now = time.perf_counter()
        return sum(max(0.0, budget.estimate(list(b["jobs"].values()), b["st"]) - (now - b["t"]))
                   for b in self.blocks.values())


def _run_claimed(config: StudyConfig, force: bool, executor: Executor | None, out: Path, jobs: list[Job],
                 splits: Any, t_start: float, state: dict[str, int]) -> StudyResult:
    """Steps 2-4 of :func:`run_study`, with ``out`` locked; counts computed and failed runs in ``state``."""
    from tqdm.auto import tqdm

    check_same_study(out, config, force)
    dump_json(out / CONFIG_FILE, config.to_dict())
    progress = not config.quiet
    say: Callable[[str], Any] = print if not progress else (lambda s: tqdm.write(s))
    executor = executor or LocalExecutor(RunEnvironment(config, splits), progress=progress)
    slots = max(1, int(getattr(executor, "slots", 1)))
    budget = Budget(config, splits, jobs, t_start, say) if config.budget_minutes is not None else None
    done: dict[str, RunOutcome] = {}
    failed: dict[str, RunFailure] = {}
    open_blocks = _OpenBlocks()

    def groups() -> Iterator[list[RunTask]]:
        """Each block's tasks, its settings fixed when the executor takes it."""
        for block in dict.fromkeys(j.block for j in jobs):
            i = next(k for k, j in enumerate(jobs) if j.block == block)
            block_jobs = [j for j in jobs if j.block == block]
            if budget is not None:
                # workers the rest can use: at most one per block started or not started yet
                usable = min(slots, len(open_blocks.blocks) + len(dict.fromkeys(j.block for j in jobs[i:])))
                st, plan = budget.plan_block(out / "runs" / block, jobs[i:], slots=usable,
                                             in_flight_s=open_blocks.seconds_left(budget) if usable > 1 else 0.0)
            else:
                st, plan = Settings.requested(config), None
            open_blocks.start(block, block_jobs, st)
            yield [RunTask(config, j, st, plan) for j in block_jobs]

    with tqdm(total=len(jobs), desc="reproduce", unit="run", disable=None if progress else True) as bar, \
            contextlib.closing(executor.run(groups())) as outcomes:
        for outcome in outcomes:
            job = outcome.task.job
            open_blocks.finish(job)
            if isinstance(outcome, RunFailure):
                failed[job.id] = outcome
                state["failed"] += 1
                line = f"{job.id}: FAILED ({outcome.kind}): {outcome.error}"
            else:
                done[job.id] = outcome
                state["computed"] += not outcome.skipped
                if budget is not None:
                    budget.observe_all(outcome.measurements)
                line = _run_line(outcome.record, outcome.skipped)
            if progress:
                bar.write(line)
            else:
                print(line)
            bar.update(1)
    # the results hold finished runs only, in plan order (whatever order they finished in)
    finished = [done[j.id] for j in jobs if j.id in done]
    records = [o.record for o in finished]
    failures = tuple(failed[j.id] for j in jobs if j.id in failed)
    n_skipped = sum(o.skipped for o in finished)
    priors_trained = [o.prior_trained for o in finished if o.prior_trained]
    if not records:
        raise RunFailedError(_failure_message(failures, len(jobs), written=False), None, failures)
    _warn_prior_mismatch(records, say)
    study = _assemble(config, records, splits, time.perf_counter() - t_start, n_skipped, priors_trained, budget,
                      failures)
    study = _write(out, study, jobs, budget is not None)
    if failures:
        raise RunFailedError(_failure_message(failures, len(jobs), written=True), study, failures)
    return study


def _failure_message(failures: tuple[RunFailure, ...], n_runs: int, written: bool) -> str:
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    kept = ("the other runs are recorded in results.json and the report, with the failures" if written else
            "no run finished, so no results were written")
    return (f"{len(failures)} of {n_runs} runs failed: {first.task.job.id}: {first.error}{more}; {kept}; "
            "run the same command again to retry the failed runs (finished ones are kept)")


def _assemble(config: StudyConfig, records: list[RunRecord], splits: Any, seconds: float, n_skipped: int,
              priors_trained: list[str], budget: Budget | None, failures: tuple[RunFailure, ...] = ()) -> StudyResult:
    from ..experiments import versions

    timing_rows = [{"run": r.run.id, "training_s": r.timings.get("training_s"),
                    "prior_training_s": r.timings.get("prior_training_s"), "sparsity_s": r.timings.get("sparsity_s"),
                    "certify_s": r.timings.get("certify_s"), "total_s": r.timings.get("total_s"),
                    "certify": r.timings.get("certify")} for r in records]
    return StudyResult.assemble(
        config, records, data=splits.to_dict(), versions=versions(),
        timings={"wall_s": seconds, "runs_skipped": n_skipped, "per_run": timing_rows,
                 "priors_trained": priors_trained},
        budget=budget.record(seconds) if budget is not None else None,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), failed_runs=[f.to_dict() for f in failures])


def _write(out: Path, study: StudyResult, jobs: list[Job], budgeted: bool) -> StudyResult:
    """results.json, results.csv, the figures, report.md; then remove what the report does not mention."""
    from ..report.figures import figure_paths, study_figures
    from ..report.markdown import build_report

    dump_json(out / "results.json", study.to_dict())
    atomic_write_text(out / "results.csv", study.csv_text())
    study = study.with_figures(study_figures(study, out))
    dump_json(out / "results.json", study.to_dict())
    atomic_write_text(out / "report.md", build_report(study))
    prune_stale(out, jobs, figure_paths(study.figures), budgeted)
    return study
