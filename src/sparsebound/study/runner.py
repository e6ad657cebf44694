"""Running the jobs of a study: train (or reuse), analyse, certify, record; and resuming.

The unit of work is a :class:`RunTask`: a frozen, picklable description of one
run (the study's settings, the job, the block's settings and budget plan).
:func:`execute_run` turns a task into a :class:`RunOutcome` (the typed
:class:`~sparsebound.study.results.RunRecord` plus the timings the budget
learns from), reading and writing only below ``OUT/runs/w{width}-s{seed}/``.

Execution goes through the :class:`Executor` seam.  :class:`LocalExecutor`
runs tasks one after the other in this process;
:class:`~sparsebound.study.ray_executor.RayExecutor` runs each as a Ray task.
An executor for a cluster (Ray, Dask, a job queue) only has to run
:func:`execute_run` on each task somewhere that sees the same ``OUT`` folder and
yield the outcomes; its one obligation is the order inside a *group*
(:attr:`RunTask.group`): the runs of one (width, seed) block share a
data-dependent prior per alpha, trained by the first of them that needs it (and
read back from ``OUT`` by the others), so a group's tasks run in the given
order, one at a time.  Groups are independent and may run at the same time.

Resuming (every file is written atomically, so an interrupted study keeps its
finished runs):

* a run whose ``certificate.json`` records the same run configuration
  (:func:`~sparsebound.study.plan.same_run_config`) and, for a posterior, the same
  shared prior is loaded, not recomputed (and never redrawn: its sparse-mc seed
  stays the one it recorded);
* checkpoints (and shared priors) on disk trained with the same settings are
  reused instead of retrained;
* a fresh sparse-mc seed is written to ``run.json`` in the run folder *before*
  training and drawing (THEORY.md 4.5: recorded beforehand); a run interrupted
  before it finished resumes with that same seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._io import dump_json, load_json, to_jsonable
from ..errors import CheckpointError
from .budget import CertifyTiming, TrainingTiming
from .config import MC_MAX_EVALS, StudyConfig
from .plan import Job, Settings, mc_seed_for, pbb_seed_for, run_config, same_run_config
from .results import RunRecord

__all__ = ["Executor", "LocalExecutor", "RunEnvironment", "RunFailure", "RunOutcome", "RunTask", "execute_run"]

#: the record a run writes before it trains or draws (its configuration, with the sparse-mc seed).
RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunTask:
    """Everything one run needs, picklable (no tensors, no open files).

    Attributes:
        config: the study's settings.
        job: which network.
        settings: epochs and draws of its block.
        plan: the block's budget plan (``None`` without ``--budget-minutes``), recorded in the run.
    """

    config: StudyConfig
    job: Job
    settings: Settings
    plan: dict[str, Any] | None = None

    @property
    def group(self) -> str:
        """Tasks of one group run in order on one worker (they share priors): the block name."""
        return self.job.block

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def block_dir(self) -> Path:
        return self.out / "runs" / self.job.block

    @property
    def run_dir(self) -> Path:
        return self.block_dir / self.job.kind

    @property
    def prior_dir(self) -> Path | None:
        f = self.job.prior_folder
        return None if f is None else self.block_dir / f


@dataclass(frozen=True)
class RunOutcome:
    """What a task returns.

    Attributes:
        task: the task.
        record: the run's typed record (as written to ``certificate.json``).
        skipped: the run was finished already and loaded from disk.
        measurements: timings for the budget, in the order taken
            (:class:`~sparsebound.study.budget.TrainingTiming`, ``("sparsity", width, rate)``,
            :class:`~sparsebound.study.budget.CertifyTiming`).
        prior_trained: ``w{w}-s{s}/prior-a{alpha}`` when this run trained the shared prior.
    """

    task: RunTask
    record: RunRecord
    skipped: bool
    measurements: list[Any] = field(default_factory=list)
    prior_trained: str | None = None


@dataclass(frozen=True)
class RunFailure:
    """A run that did not finish (an executor that reports failures per run yields it).

    Attributes:
        task: the task.
        error: one line: the exception's type and message, or what happened to the worker.
        kind: ``raised`` (the run raised an exception; not retried: it would raise again)
            or ``system`` (its worker process or node was lost on every attempt).
        attempts: how many times the run was started (``None`` when not known).
    """

    task: RunTask
    error: str
    kind: str
    attempts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry of ``results.json["failed_runs"]``."""
        return {"run": self.task.job.id, "kind": self.kind, "error": self.error, "attempts": self.attempts}


class RunEnvironment:
    """Process-local state of the runs of one study: the loaded data and the shared priors.

    Created lazily by :func:`execute_run` (one per worker process); never pickled.
    """

    def __init__(self, config: StudyConfig, splits: Any = None) -> None:
        self.config = config
        self.spec = config.data_spec()
        self._splits = splits
        self.priors: dict[Path, Any] = {}

    @property
    def splits(self) -> Any:
        if self._splits is None:
            self._splits = self.spec.load()
        return self._splits


class Executor(Protocol):
    """Runs groups of tasks and yields their outcomes (in any order across groups).

    ``groups`` is consumed lazily: an executor takes the next group only when it can
    start it (so a caller may decide a group's settings, e.g. its time budget, at that
    moment, from the outcomes yielded so far).  ``slots`` is how many groups it runs
    at the same time (1 for :class:`LocalExecutor`).

    Contract: the tasks of one group (:attr:`RunTask.group`) run in the given order,
    one at a time, and see each other's files (the same ``OUT`` folder).  A task that
    raises either propagates (:class:`LocalExecutor`: the study stops) or is yielded
    as a :class:`RunFailure` after the executor's retries, and the other tasks go on.
    """

    slots: int

    def run(self, groups: Iterable[Sequence[RunTask]]) -> Iterator[RunOutcome | RunFailure]:
        ...


class LocalExecutor:
    """Runs the tasks here, in order, sharing one :class:`RunEnvironment` (data loaded once);
    an exception of a task propagates."""

    slots = 1

    def __init__(self, env: RunEnvironment | None = None, progress: bool = False) -> None:
        self.env = env
        self.progress = progress

    def run(self, groups: Iterable[Sequence[RunTask]]) -> Iterator[RunOutcome | RunFailure]:
        for group in groups:
            for task in group:
                if self.env is None or self.env.config != task.config:
                    self.env = RunEnvironment(task.config)
                yield execute_run(task, self.env, progress=self.progress)


# ======================================================================================
# does what is on disk fit this run?
# ======================================================================================


def _strip(d: Any, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in dict(d).items() if k not in keys}


def _same_data_arch(meta: dict[str, Any], c: StudyConfig, hidden: list[int], seed: int) -> bool:
    return (_strip(meta.get("data", {}), "data_dir") == _strip(c.data_spec().to_dict(), "data_dir")
            and list(meta["architecture"]["widths"][1:-1]) == hidden and int(meta["seed"]) == seed
            and not meta["architecture"].get("bias", False))


def _want_training(c: StudyConfig, job: Job, st: Settings) -> dict[str, Any]:
    return to_jsonable(_strip(c.train_config(job.seed, st.max_epochs).to_dict(), "device"))


def prior_matches(meta: dict[str, Any], c: StudyConfig, job: Job, st: Settings) -> bool:
    """Whether a prior checkpoint on disk was trained with this run's settings."""
    try:
        hidden = [job.width] * (c.depth - 1)
        bs = meta["bound_sample"]
        return (_same_data_arch(meta, c, hidden, job.seed) and meta["prior"].get("kind") == "init"
                and bs.get("kind") == "bound-split" and float(bs["prior_fraction"]) == float(job.alpha)  # type: ignore[arg-type]
                and int(bs["seed"]) == job.seed
                and _strip(meta["training"]["config"], "device") == _want_training(c, job, st))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def checkpoint_matches(meta: dict[str, Any], c: StudyConfig, job: Job, st: Settings) -> bool:
    """Whether a run's checkpoint on disk was trained with this run's settings."""
    try:
        hidden = [job.width] * (c.depth - 1)
        want_cfg = _want_training(c, job, st)
        if not _same_data_arch(meta, c, hidden, job.seed):
            return False
        pr = meta["prior"]
        if job.posterior is None:
            return pr.get("kind") == "init" and _strip(meta["training"]["config"], "device") == want_cfg
        if job.objective != "erm":
            ob = meta["objective"]
            return (pr.get("kind") == "data-dependent" and ob.get("objective") == job.objective
                    and to_jsonable(ob.get("options")) == to_jsonable(c.objective_options(job.objective).to_dict())
                    and float(meta["bound_sample"]["prior_fraction"]) == float(job.alpha)  # type: ignore[arg-type]
                    and _strip(pr["erm_prior_training"]["config"], "device") == want_cfg
                    and int(meta["training"]["config"]["max_epochs"]) == int(st.max_epochs))
        prox = job.proximal_lambda
        return (pr.get("kind") == "data-dependent" and pr.get("posterior") == job.posterior
                and float(pr.get("proximal", 0.0)) == float(prox)
                and float(meta["bound_sample"]["prior_fraction"]) == float(job.alpha)  # type: ignore[arg-type]
                and _strip(pr["prior_training"]["config"], "device") == want_cfg
                and _strip(meta["training"]["config"], "device") == to_jsonable({**want_cfg, "proximal": prox}))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _same_net(a: Any, b: Any) -> bool:
    import torch

    if a is None or b is None or len(a.weights) != len(b.weights) or a.has_bias != b.has_bias:
        return False
    if not all(torch.equal(x, y) for x, y in zip(a.weights, b.weights, strict=True)):
        return False
    return a.biases is None or all(torch.equal(x, y) for x, y in zip(a.biases, b.biases, strict=True))


def _finished(task: RunTask, rc: dict[str, Any], env: RunEnvironment) -> dict[str, Any] | None:
    """The finished record of a run, when it was computed with this configuration (and prior)."""
    cert_path = task.run_dir / "certificate.json"
    if not cert_path.is_file():
        return None
    try:
        rec = load_json(cert_path)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not same_run_config(rec.get("run_config"), rc):
        return None
    if task.job.posterior is None:
        return rec if (task.run_dir / "sparsity.json").is_file() else None
    pck = rec.get("prior_checkpoint") or {}
    sha = pck.get("erm_prior_tensor_sha256") if task.job.objective != "erm" else pck.get("tensor_sha256")
    if sha is not None:
        pdir = task.prior_dir
        assert pdir is not None
        if pdir in env.priors:
            now = env.priors[pdir].meta.get("tensor_sha256")
        else:
            try:
                now = load_json(pdir / "checkpoint.json").get("tensor_sha256")
            except (OSError, ValueError, AttributeError):
                now = None
        if now is not None and now != sha:
            return None  # the shared prior was retrained since: recompute from it
    return rec


def _recorded_seed(task: RunTask, rc: dict[str, Any], key: str = "mc") -> int | None:
    """The fresh seed (``mc``: sparse-mc, ``pbb``) an earlier, unfinished attempt of this same run
    recorded before drawing."""
    try:
        rec = load_json(task.run_dir / RUN_FILE)
        old = rec["run_config"]
        if same_run_config(old, rc) and (old.get(key) or {}).get("seed_rule") == "fresh":
            return int(old[key]["seed"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


# ======================================================================================
# one run
# ======================================================================================


def _training_summary(meta: dict[str, Any], reused: bool) -> dict[str, Any]:
    tr = meta.get("training", {})
    out = {
        "epochs": tr.get("epochs"),
        "reached_target": tr.get("reached_target"),
        "train_error": meta.get("train_error"),
        "test_error": meta.get("test_error"),
        "seconds": tr.get("seconds"),
        "config": tr.get("config"),
        "reused_checkpoint": reused,
    }
    pr = meta.get("prior", {})
    if pr.get("kind") == "data-dependent":
        ptr = pr.get("prior_training") or {}
        out["prior"] = {
            "train_error": pr.get("prior_train_error"),
            "test_error": pr.get("prior_test_error"),
            "epochs": ptr.get("epochs"),
            "reached_target": ptr.get("reached_target"),
            "seconds": ptr.get("seconds"),
            "checkpoint": pr.get("checkpoint"),
            "tensor_sha256": pr.get("tensor_sha256"),
        }
        out["posterior"] = pr.get("posterior")
        out["proximal"] = pr.get("proximal")
        out["bound_split"] = meta.get("bound_sample")
    return out


def _training_timing(width: int, meta: dict[str, Any], wall_s: float, n_train: int) -> TrainingTiming:
    tr = meta.get("training") or {}
    n = int((meta.get("bound_sample") or {}).get("n_prior") or 0) if meta.get("role") else n_train
    return TrainingTiming(width=width, epochs=int(tr.get("epochs") or 0), train_s=float(tr.get("seconds") or 0.0),
                          wall_s=wall_s, n_points=n or n_train)


def _shared_prior(task: RunTask, env: RunEnvironment, progress: bool) -> tuple[Any, bool, float]:
    """The data-dependent prior of a posterior: loaded when one with these settings is on disk,
    else trained (once per (width, seed, alpha)).  Returns (checkpoint, trained now, wall seconds)."""
    from ..checkpoint import load_checkpoint
    from ..experiments import train_prior

    c, job, pdir = task.config, task.job, task.prior_dir
    assert pdir is not None and job.alpha is not None
    if pdir in env.priors:
        return env.priors[pdir], False, 0.0
    try:
        ck = load_checkpoint(pdir)
        if prior_matches(ck.meta, c, job, task.settings):
            env.priors[pdir] = ck
            return ck, False, 0.0
    except CheckpointError:
        pass
    t0 = time.perf_counter()
    ck = train_prior(pdir, data=env.spec, hidden=[job.width] * (c.depth - 1), prior_fraction=float(job.alpha),
                     seed=job.seed, config=c.train_config(job.seed, task.settings.max_epochs), splits=env.splits,
                     progress=progress)
    env.priors[pdir] = ck
    return ck, True, time.perf_counter() - t0


def _network(task: RunTask, env: RunEnvironment, prior: Any, progress: bool) -> tuple[Any, bool, float]:
    """The run's checkpoint: loaded when it matches (and was trained from ``prior``), else trained.
    Returns (checkpoint, reused, wall seconds of training)."""
    from ..checkpoint import load_checkpoint
    from ..experiments import train_checkpoint

    c, job, rdir = task.config, task.job, task.run_dir
    try:
        ck = load_checkpoint(rdir)
        if job.objective != "erm":
            same_prior = ck.meta["prior"].get("erm_prior_tensor_sha256") == prior.meta.get("tensor_sha256")
        else:
            same_prior = prior is None or _same_net(ck.prior, prior.network)
        if checkpoint_matches(ck.meta, c, job, task.settings) and same_prior:
            return ck, True, 0.0
    except (CheckpointError, KeyError, TypeError, AttributeError):
        pass
    cfg = c.train_config(job.seed, task.settings.max_epochs)
    hidden = [job.width] * (c.depth - 1)
    t0 = time.perf_counter()
    if job.posterior is None:
        ck = train_checkpoint(rdir, data=env.spec, hidden=hidden, seed=job.seed, config=cfg, prior_fraction=None,
                              splits=env.splits, progress=progress)
    elif job.objective != "erm":
        ck = train_checkpoint(rdir, data=env.spec, hidden=hidden, seed=job.seed, config=cfg,
                              prior_fraction=job.alpha, splits=env.splits, progress=progress, prior=prior,
                              objective=c.objective_options(job.objective))
    else:
        ck = train_checkpoint(rdir, data=env.spec, hidden=hidden, seed=job.seed, config=cfg,
                              prior_fraction=job.alpha, posterior=job.posterior, proximal=job.proximal_lambda,
                              splits=env.splits, progress=progress, prior=prior)
    return ck, False, time.perf_counter() - t0


def _certify(task: RunTask, env: RunEnvironment, ck: Any, mc_seed: int | None, progress: bool,
             pbb_seed: int | None = None) -> tuple[Any, str, Any]:
    from ..certificate import certify
    from ..experiments import bound_sample
    from ..pacbayes import SigmaGrid

    c, job, splits = task.config, task.job, env.splits
    profiles = c.sigma_profiles
    methods = list(c.methods)
    if job.objective != "erm":
        prof = (ck.meta.get("objective") or {}).get("certificate_profile")
        if prof:
            profiles = (tuple(float(x) for x in prof),)
        methods.append("pbb")
    if job.posterior is None:
        bs, desc = bound_sample(ck, splits, prior="init")
        prior, prior_kind = ck.init, "init"
    else:
        bs, desc = bound_sample(ck, splits, prior="recorded")
        prior, prior_kind = ck.prior, "data-dependent"
    cert = certify(ck.network, bs.X, bs.y, prior=prior, init=ck.init, delta=c.delta, methods=methods,
                   prior_kind=prior_kind, X_test=splits.test.X, y_test=splits.test.y, radius=bs.radius,
                   eta1=c.eta1, eta2=c.eta2, sigma_grid=SigmaGrid(profiles=profiles),
                   rescale=not c.no_rescale, exact_rounds=c.exact_rounds,
                   mc_draws=task.settings.mc_draws or c.mc_draws, mc_seed=mc_seed, mc_batch=c.mc_batch,
                   mc_delta_fraction=c.mc_delta_fraction, mc_max_evals=MC_MAX_EVALS, device=c.device,
                   progress=progress, pbb_passes=c.pbb_passes, pbb_seed=pbb_seed,
                   posterior_std=ck.posterior_std if "pbb" in methods else None)
    return cert, desc, prior


def _decomposition(cert: Any, network: Any, bs: Any) -> tuple[dict[str, Any], dict[str, Any] | None, list[int]]:
    """The parts of each PAC-Bayes-kl certificate, the derandomisation cost (sparse vs pbb), the
    binding-condition summary of ``sparse`` and the layers that carry noise (docs/theory.md 15)."""
    from ..certification import binding_summary, certificate_parts, derandomisation_cost

    parts: dict[str, Any] = {}
    for m in ("sparse", "sparse-mc", "uniform-sparse", "dense", "pbb"):
        r = cert.results.get(m)
        if r is not None and getattr(r, "kl", None) is not None and getattr(r, "m", None):
            try:
                parts[m] = certificate_parts(r)
            except (TypeError, ValueError, AttributeError):
                continue
    s, p = cert.results.get("sparse"), cert.results.get("pbb")
    if s is not None and p is not None:
        parts["derandomisation"] = derandomisation_cost(s, p)
    binding = None
    noise_layers: list[int] = []
    if s is not None:
        prof = tuple(float(x) for x in s.profile)
        noise_layers = [k + 1 for k, c in enumerate(prof) if c > 0]
        binding = binding_summary(network, bs.X, bs.y, prof, tuple(float(x) for x in s.rescaling))
    return parts, binding, noise_layers


def _bound_of(ck: Any, env: RunEnvironment, job: Job) -> Any:
    from ..experiments import bound_sample

    return bound_sample(ck, env.splits, prior="init" if job.posterior is None else "recorded")[0]


def execute_run(task: RunTask, env: RunEnvironment | None = None, *, progress: bool = False) -> RunOutcome:
    """Train (or reuse), analyse, certify and save one run; or load it when finished.

    Writes below ``task.run_dir``: ``run.json`` (the run configuration with its sparse-mc
    seed, before anything is trained or drawn), the checkpoint, ``sparsity.json`` (init
    runs) and ``certificate.json`` (last, atomically); and the shared prior in
    ``task.prior_dir`` when it is missing.

    Raises:
        SparseboundError: from the data, training or certification layers.
    """
    env = env or RunEnvironment(task.config)
    c, job = task.config, task.job
    derived = c.mc_seed is not None
    rc0 = run_config(c, job, task.settings, mc_seed_for(c, job) if derived else None,
                     pbb_seed_for(c, job) if derived else None)
    rec = _finished(task, rc0, env)
    if rec is not None:
        return RunOutcome(task, RunRecord.from_dict(rec), skipped=True)
    mc_seed = rc0["mc"]["seed"] if derived and c.uses_mc else mc_seed_for(c, job, recorded=_recorded_seed(task, rc0))
    pbb_seed = (rc0["pbb"]["seed"] if derived and "pbb" in rc0 else
                pbb_seed_for(c, job, recorded=_recorded_seed(task, rc0, "pbb")))
    rc = run_config(c, job, task.settings, mc_seed, pbb_seed)
    dump_json(task.run_dir / RUN_FILE, {"run": job.id, "run_config": rc})  # recorded before any draw
    measurements: list[Any] = []
    n_train = len(env.splits.train)
    t_run = time.perf_counter()
    prior_ck, prior_trained = None, False
    timings: dict[str, Any] = {}
    t_prior = 0.0
    if job.posterior is not None:
        prior_ck, prior_trained, t_prior = _shared_prior(task, env, progress)
        if prior_trained:
            measurements.append(_training_timing(job.width, prior_ck.meta, t_prior, n_train))
    ck, reused, t_net = _network(task, env, prior_ck, progress)
    if not reused and job.trains_posterior:
        measurements.append(_training_timing(job.width, ck.meta, t_net, n_train))
    timings["training_s"] = t_prior + t_net
    if job.posterior is not None:
        timings["prior_training_s"] = t_prior if prior_trained else 0.0
    sparsity_summary = None
    if job.posterior is None:
        from ..analysis import analyse_sparsity

        t0 = time.perf_counter()
        rep = analyse_sparsity(ck.network, env.splits.train.X, device=c.device, progress=progress)
        timings["sparsity_s"] = time.perf_counter() - t0
        measurements.append(("sparsity", job.width, timings["sparsity_s"] / n_train))
        sparsity_summary = rep.to_dict()
        dump_json(task.run_dir / "sparsity.json", {
            "summary": sparsity_summary,
            "per_sample": {"activity_ratios": rep.activity_ratios, "active_fractions": rep.active_fractions,
                           "mid_radii": list(rep.mid_radii)},
        })
    t0 = time.perf_counter()
    cert, desc, prior = _certify(task, env, ck, mc_seed, progress, pbb_seed)
    timings["certify_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bs_decomp = _bound_of(ck, env, job)
    parts, binding, noise_layers = _decomposition(cert, ck.network, bs_decomp)
    timings["decomposition_s"] = time.perf_counter() - t0
    timings["certify"] = dict(cert.timings)
    timings["total_s"] = time.perf_counter() - t_run
    measurements.append(CertifyTiming(width=job.width, seconds=timings["certify_s"],
                                      mc_s=float(cert.timings.get("sparse_mc", 0.0)), m=cert.m,
                                      mc_draws=task.settings.mc_draws))
    rec = cert.to_dict()
    rec["run"] = {
        "id": job.id, "kind": job.kind, "width": job.width, "depth": c.depth,
        "hidden": [job.width] * (c.depth - 1), "seed": job.seed, "prior_kind": job.prior_kind,
        "posterior": job.posterior, "prior_fraction": job.alpha, "proximal": job.lam, "dataset": c.dataset,
    }
    rec["run_config"] = rc
    rec["settings"] = task.settings.record(c, task.plan)
    rec["checkpoint"] = str(task.run_dir)
    if prior_ck is not None and job.objective != "erm":
        pm = ck.meta.get("prior") or {}
        rec["prior_checkpoint"] = {"path": pm.get("checkpoint"), "tensor_sha256": pm.get("tensor_sha256"),
                                   "erm_prior_path": str(task.prior_dir),
                                   "erm_prior_tensor_sha256": prior_ck.meta.get("tensor_sha256"),
                                   "trained_for_this_run": prior_trained}
    elif prior_ck is not None:
        rec["prior_checkpoint"] = {"path": str(task.prior_dir), "tensor_sha256": prior_ck.meta.get("tensor_sha256"),
                                   "trained_for_this_run": prior_trained}
    rec["decomposition"] = parts
    rec["binding"] = binding
    rec["noise_layers"] = noise_layers
    if job.objective != "erm":
        ob = ck.meta.get("objective") or {}
        rec["objective"] = {k: ob.get(k) for k in ("objective", "options", "rules", "frozen_layers",
                                                   "certificate_profile", "noise_layers", "certifies")}
        rec["objective"]["erm_prior"] = {k: (ob.get("erm_prior") or {}).get(k) for k in ("train_error", "test_error")}
        rob = ob.get("robust_prior")
        if rob:
            rec["objective"]["robust_prior"] = {k: rob.get(k) for k in ("train_error", "test_error", "accepted",
                                                                         "tensor_sha256")}
    rec["bound_sample"] = desc
    rec["train_error"] = ck.meta.get("train_error")
    rec["distance_to_prior_fro"] = ck.network.distance_to(prior)
    rec["distance_to_init_fro"] = ck.network.distance_to(ck.init)
    rec["training"] = _training_summary(ck.meta, reused)
    if sparsity_summary is not None:
        rec["sparsity"] = sparsity_summary
    rec["timings"] = timings
    cert_path = task.run_dir / "certificate.json"
    dump_json(cert_path, rec)
    record = RunRecord.from_dict(load_json(cert_path))
    pname = f"{job.block}/{job.prior_folder}" if prior_trained else None
    return RunOutcome(task, record, skipped=False, measurements=measurements, prior_trained=pname)
