"""The jobs of a study: which networks are trained and certified, and with which settings.

For every seed and hidden width (a *block*, ``w{width}-s{seed}``) the plan holds

* ``init``: a network trained from its recorded initialisation, certified with the
  initialisation as prior on the whole training set;
* for every prior fraction alpha, one data-dependent prior trained once on a fraction
  alpha of the training set (``prior-a{alpha}``, THEORY.md 4.4) and every posterior
  from it: the standard posterior and a proximal posterior per lambda of the grid
  (``inf``: the posterior is the prior).  With one alpha and at most one lambda the
  runs are ``ddp-standard`` and ``ddp-proximal``; otherwise
  ``ddp-standard-a{alpha}`` and ``ddp-proximal-a{alpha}-l{lambda}``;
* for every objective other than ``erm`` (``--objectives``, :mod:`sparsebound.recipes`) at the
  objective widths, one more run per alpha, ``ddp-{objective}-a{alpha}``, trained by the
  recipe from the same shared erm prior (the ``certificate`` recipe's own prior, the robust
  prior, is trained inside the run on ``S_prior`` only).

A :class:`Job` names one run; :class:`Settings` are the values a block runs with
(scaled by ``--budget-minutes``, see :mod:`sparsebound.study.budget`);
:func:`run_config` is everything that determines one run's results (compared when
resuming).  ``sparse-mc`` seeds are decided here too (THEORY.md 4.5: fresh
randomness, recorded before drawing): :func:`mc_seed_for`.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import Any

from .._io import to_jsonable
from .config import MC_MAX_EVALS, StudyConfig

__all__ = [
    "Job",
    "Settings",
    "derived_mc_seed",
    "fresh_mc_seed",
    "mc_seed_for",
    "pbb_seed_for",
    "plan_jobs",
    "run_config",
    "same_run_config",
    "tag",
]


def tag(x: float) -> str:
    """A number as it appears in run names (0.5, 0.01, 1, 1e-05, inf)."""
    return "inf" if math.isinf(x) else format(x, "g")


@dataclass(frozen=True)
class Job:
    """One run: the init-prior network, or one posterior of a data-dependent prior.

    Attributes:
        seed: initialisation seed (also the seed of the prior/bound split and batch order).
        width: hidden width (every hidden layer).
        kind: run name inside its block (``init``, ``ddp-standard``, ``ddp-proximal-a0.5-l1``, ...).
        posterior: ``None`` for ``init``; ``standard`` or ``proximal``.
        alpha: prior fraction (``None`` for ``init``).
        lam: proximal lambda (``None`` unless proximal; ``inf``: the posterior is the prior).
        objective: the training recipe (``erm``, ``certificate``, ``pbb``); for a recipe run
            ``posterior`` is the objective's name too.
    """

    seed: int
    width: int
    kind: str
    posterior: str | None = None
    alpha: float | None = None
    lam: float | None = None
    objective: str = "erm"

    @property
    def block(self) -> str:
        """``w{width}-s{seed}``: the folder of the block under ``OUT/runs``."""
        return f"w{self.width}-s{self.seed}"

    @property
    def id(self) -> str:
        """``w{width}-s{seed}/{kind}``: unique within a study."""
        return f"{self.block}/{self.kind}"

    @property
    def prior_kind(self) -> str:
        return "init" if self.posterior is None else "data-dependent"

    @property
    def prior_folder(self) -> str | None:
        """Name of the shared data-dependent prior's folder in the block (``prior-a{alpha}``)."""
        return None if self.alpha is None else f"prior-a{tag(float(self.alpha))}"

    @property
    def trains_posterior(self) -> bool:
        """False for lambda = inf (the posterior is the prior; nothing is trained)."""
        return not (self.lam is not None and math.isinf(self.lam))

    @property
    def proximal_lambda(self) -> float:
        """The penalty the posterior is trained with (0 for the standard posterior)."""
        return float(self.lam) if self.posterior == "proximal" and self.lam is not None else 0.0


@dataclass(frozen=True)
class Settings:
    """The values a (seed, width) block runs with (scaled by ``--budget-minutes``).

    Attributes:
        max_epochs: training epochs (of the prior and of the posterior).
        mc_draws: ``sparse-mc`` draws N (``None`` when sparse-mc is not certified).
    """

    max_epochs: int
    mc_draws: int | None

    @classmethod
    def requested(cls, config: StudyConfig) -> Settings:
        """The values asked for (no budget)."""
        return cls(config.max_epochs, config.mc_draws if config.uses_mc else None)

    def record(self, config: StudyConfig, plan: dict[str, Any] | None) -> dict[str, Any]:
        """The ``settings`` record of a run: used and requested values, and the budget plan."""
        return {"max_epochs": self.max_epochs, "max_epochs_requested": config.max_epochs,
                "mc_draws": self.mc_draws,
                "mc_draws_requested": config.mc_draws if self.mc_draws is not None else None,
                "scaled_by_budget": plan is not None and (self.max_epochs != config.max_epochs or (
                    self.mc_draws is not None and self.mc_draws != config.mc_draws)),
                "budget_minutes": config.budget_minutes, "budget_plan": plan}


def plan_jobs(config: StudyConfig) -> list[Job]:
    """Every run, in order: per seed and width, ``init``, then per alpha its posteriors."""
    prox = config.proximal_grid
    sweep = len(config.prior_fractions) > 1 or len(prox) > 1
    jobs = []
    for s in config.seeds:
        for w in config.widths:
            jobs.append(Job(s, w, "init"))
            for a in config.prior_fractions:
                if "standard" in config.posteriors:
                    jobs.append(Job(s, w, f"ddp-standard-a{tag(a)}" if sweep else "ddp-standard", "standard", a, None))
                for lam in prox:
                    jobs.append(Job(s, w, f"ddp-proximal-a{tag(a)}-l{tag(lam)}" if sweep else "ddp-proximal",
                                    "proximal", a, lam))
                if w in config.objective_widths:
                    for obj in config.recipes:
                        jobs.append(Job(s, w, f"ddp-{obj}-a{tag(a)}", obj, a, None, obj))
    return jobs


# ======================================================================================
# sparse-mc seeds (THEORY.md 4.5, docs/theory.md section 10)
# ======================================================================================


def fresh_mc_seed() -> int:
    """A fresh seed from the operating system's randomness (63 bits, within the seed rule)."""
    return secrets.randbits(63)


def derived_mc_seed(base: int, run_id: str) -> int:
    """The seed of run ``run_id`` derived from ``--mc-seed base`` (SHA-256 of both, 63 bits).

    Deterministic, so ``--mc-seed`` reproduces a study exactly; distinct runs get
    distinct, unrelated streams.
    """
    h = hashlib.sha256(f"sparsebound-mc:{int(base)}:{run_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def pbb_seed_for(config: StudyConfig, job: Job, recorded: int | None = None) -> int | None:
    """The ``pbb`` seed of a recipe run (``None`` for the others), fixed before its draws: derived
    from ``--mc-seed`` and the run name when given, else ``recorded`` or a fresh one (the rule of
    :func:`mc_seed_for`)."""
    if job.objective == "erm":
        return None
    if config.mc_seed is not None:
        return derived_mc_seed(config.mc_seed, job.id + "/pbb")
    return recorded if recorded is not None else fresh_mc_seed()


def mc_seed_for(config: StudyConfig, job: Job, recorded: int | None = None) -> int | None:
    """The ``sparse-mc`` seed of a run, fixed before its draws.

    ``None`` when sparse-mc is not certified.  With ``--mc-seed B``: the seed derived
    from B and the run name.  Without: ``recorded`` (the seed an interrupted attempt
    of the same run recorded before drawing, so a resumed run repeats the same draws
    rather than choosing among seeds) or a fresh one.
    """
    if not config.uses_mc:
        return None
    if config.mc_seed is not None:
        return derived_mc_seed(config.mc_seed, job.id)
    return recorded if recorded is not None else fresh_mc_seed()


# ======================================================================================
# the identity of one run (compared on resume)
# ======================================================================================


def _strip(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def run_config(config: StudyConfig, job: Job, st: Settings, mc_seed: int | None = None,
               pbb_seed: int | None = None) -> dict[str, Any]:
    """Everything that determines one run's results, as JSON (``run_config`` of ``certificate.json``).

    The ``mc`` entry (sparse-mc only) records the seed with its rule: ``fresh`` (drawn
    from the operating system before drawing) or ``derived`` (from ``base_seed``).
    """
    rc: dict[str, Any] = {
        "data": _strip(config.data_spec().to_dict(), "data_dir"),
        "hidden": [job.width] * (config.depth - 1),
        "seed": job.seed,
        "training": _strip(config.train_config(job.seed, st.max_epochs).to_dict(), "device"),
        "kind": job.kind,
        "delta": config.delta,
        "eta1": config.eta1,
        "eta2": config.eta2,
        "methods": list(config.methods),
        "exact_rounds": config.exact_rounds,
        "rescale": not config.no_rescale,
    }
    if job.posterior is not None:
        rc["prior_fraction"] = job.alpha
        rc["posterior"] = job.posterior
        rc["proximal"] = job.proximal_lambda
    if config.sigma_profiles:
        rc["sigma_profiles"] = [list(p) for p in config.sigma_profiles]
    if config.uses_mc:
        rule: dict[str, Any] = ({"seed_rule": "fresh"} if config.mc_seed is None
                                else {"seed_rule": "derived", "base_seed": config.mc_seed})
        rc["mc"] = {"draws": st.mc_draws, "seed": mc_seed, **rule, "delta_fraction": config.mc_delta_fraction,
                    "max_evals": MC_MAX_EVALS}
    if job.objective != "erm":
        rule = ({"seed_rule": "fresh"} if config.mc_seed is None
                else {"seed_rule": "derived", "base_seed": config.mc_seed})
        rc["objective"] = config.objective_options(job.objective).to_dict()
        rc["methods"] = [*rc["methods"], "pbb"]
        rc["pbb"] = {"passes": config.pbb_passes, "seed": pbb_seed, **rule,
                     "delta_fraction": config.mc_delta_fraction}
    return to_jsonable(rc)


def _without_fresh_seed(rc: dict[str, Any]) -> dict[str, Any]:
    for key in ("mc", "pbb"):
        sub = rc.get(key)
        if isinstance(sub, dict) and sub.get("seed_rule") == "fresh":
            rc = {**rc, key: _strip(sub, "seed")}
    return rc


def same_run_config(recorded: Any, wanted: dict[str, Any]) -> bool:
    """Whether a recorded run configuration is the one wanted.

    Equal, except that a fresh ``sparse-mc`` seed may be any fresh seed: each finished
    run keeps the one it recorded before drawing (never redrawn on resume).
    """
    if not isinstance(recorded, dict):
        return False
    return _without_fresh_seed(recorded) == _without_fresh_seed(wanted)
