"""Typed records of a study, and their JSON and CSV forms.

* :class:`MethodResult` -- one certificate of one network (one method);
* :class:`RunInfo` / :class:`RunRecord` -- one network: what it is, how it was
  trained, and every certificate (``OUT/runs/.../certificate.json``);
* :class:`StudyResult` -- the whole study (``OUT/results.json``): settings, data,
  every run, the derived summary (:mod:`sparsebound.study.summary`) and the figures.

The records are what the report reads (:mod:`sparsebound.report.markdown`,
:mod:`sparsebound.report.figures`); nothing there recomputes a bound.

JSON: ``to_dict()`` gives plain values (``inf`` as the string ``"inf"`` once passed
through :func:`sparsebound._io.to_jsonable`); ``from_dict()`` reads them back.
``results.json`` carries ``format`` (``sparsebound-reproduce-N``) and
``schema_version`` N; :func:`load_results` reads versions 1 and 2 (version 1
files get the summary recomputed: its union-bound level was undercounted) and
refuses any other with a message naming the version.  A study some of whose runs
failed on their workers (``--executor ray``) lists them under ``failed_runs``
(absent when every run finished); ``runs`` then holds the finished runs only.

Method-specific fields (sigma, KL, curves, sparse-mc draws, baseline
hyper-parameters, ...) stay in :attr:`MethodResult.details`, exactly as
:meth:`sparsebound.certificate.Certificate.to_dict` wrote them; the fields
every method has are typed attributes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .config import StudyConfig
    from .summary import Summary

__all__ = [
    "CSV_COLUMNS",
    "FORMAT",
    "SCHEMA_VERSION",
    "MethodResult",
    "RunInfo",
    "RunRecord",
    "StudyResult",
    "load_results",
    "num",
]

#: the version of ``results.json`` written by this code.
SCHEMA_VERSION = 2
FORMAT = f"sparsebound-reproduce-{SCHEMA_VERSION}"
#: versions :func:`load_results` reads.
READABLE_VERSIONS = (1, 2)

#: the columns of ``results.csv`` (one row per run and method).
CSV_COLUMNS: tuple[str, ...] = (
    "dataset", "width", "depth", "seed", "prior", "posterior", "method", "certificate", "unclipped",
    "log10_unclipped", "vacuous", "empirical_term", "complexity_term", "sigma", "kl_over_m",
    "certified_fraction", "distance_to_prior", "train_error", "test_error", "test_error_lower_confidence",
    "m", "delta", "run", "prior_fraction", "proximal", "max_epochs", "q_hat", "n_draws", "mc_seed",
    "delta_pacbayes", "delta_mc",
)


def num(v: Any) -> float | None:
    """A JSON value as a float (``"inf"`` strings accepted); ``None`` when absent or not a number."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _opt_float(v: Any) -> float | None:
    return num(v)


# ======================================================================================
# one certificate
# ======================================================================================

_METHOD_CORE = ("method", "certificate", "unclipped", "vacuous", "empirical_term", "complexity_term", "m", "delta")


@dataclass(frozen=True)
class MethodResult:
    """One risk certificate of one network.

    Attributes:
        method: method name (``sparse``, ``sparse-mc``, ``neyshabur2018``, ``test-set``, ...).
        certificate: ``min(1, unclipped)``, an upper bound of the 0-1 risk.
        unclipped: the bound before clipping (may be ``inf``).
        vacuous: ``unclipped >= 1``.
        empirical_term, complexity_term: the two parts of the bound (``None`` where a
            method has no such split).
        m: bound-sample size.
        delta: the level of the method's PAC-Bayes (or concentration) step; for
            ``sparse-mc`` the share ``(1 - f) delta`` (its draws hold at :attr:`delta_mc`).
        details: every other field of the method's record (``sigma``, ``kl``,
            ``kl_over_m``, ``certified_fraction``, ``curve``, ``sigma_star_summary``,
            sparse-mc's ``q_hat``, ``n_draws``, ``seed``, ``delta_mc``, baselines'
            ``hyperparameters``, ...), as :meth:`Certificate.to_dict` wrote them.
    """

    method: str
    certificate: float
    unclipped: float | None
    vacuous: bool
    empirical_term: float | None
    complexity_term: float | None
    m: int | None
    delta: float | None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> MethodResult:
        return cls(method=str(d.get("method", name)), certificate=float(d["certificate"]),
                   unclipped=num(d.get("unclipped")), vacuous=bool(d["vacuous"]),
                   empirical_term=_opt_float(d.get("empirical_term")),
                   complexity_term=_opt_float(d.get("complexity_term")),
                   m=None if d.get("m") is None else int(d["m"]), delta=_opt_float(d.get("delta")),
                   details={k: v for k, v in d.items() if k not in _METHOD_CORE})

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "certificate": self.certificate, "unclipped": self.unclipped,
                "vacuous": self.vacuous, "empirical_term": self.empirical_term,
                "complexity_term": self.complexity_term, "m": self.m, "delta": self.delta, **self.details}

    def get(self, key: str, default: Any = None) -> Any:
        """A detail field (``sigma``, ``kl_over_m``, ``q_hat``, ...) or a core field by name."""
        if key in _METHOD_CORE:
            return getattr(self, key if key != "method" else "method")
        return self.details.get(key, default)

    # the details the study reads, typed
    @property
    def sigma(self) -> float | None:
        return num(self.details.get("sigma"))

    @property
    def kl_over_m(self) -> float | None:
        return num(self.details.get("kl_over_m"))

    @property
    def certified_fraction(self) -> float | None:
        return num(self.details.get("certified_fraction"))

    @property
    def median_sigma_star(self) -> float | None:
        return num((self.details.get("sigma_star_summary") or {}).get("median"))

    @property
    def delta_mc(self) -> float | None:
        """sparse-mc: the level of its Monte-Carlo draws (``f delta``); ``None`` otherwise."""
        return num(self.details.get("delta_mc"))

    @property
    def n_draws(self) -> int | None:
        v = self.details.get("n_draws")
        return None if v is None else int(v)

    @property
    def seed(self) -> int | None:
        v = self.details.get("seed")
        return None if v is None else int(v)


# ======================================================================================
# one network
# ======================================================================================


@dataclass(frozen=True)
class RunInfo:
    """What a run is (the ``run`` entry of its record).

    Attributes:
        id: ``w{width}-s{seed}/{kind}``.
        kind: run name (``init``, ``ddp-standard``, ``ddp-proximal-a0.5-l0.1``, ...).
        width, depth, hidden: architecture (K = depth weight layers, hidden widths).
        seed: initialisation seed.
        prior_kind: ``init`` or ``data-dependent``.
        posterior: ``None`` (init prior), ``standard`` or ``proximal``.
        prior_fraction: alpha (``None`` for the init prior).
        proximal: lambda of a proximal posterior (``inf`` allowed; ``None`` otherwise).
        dataset: dataset name.
    """

    id: str
    kind: str
    width: int
    depth: int
    hidden: tuple[int, ...]
    seed: int
    prior_kind: str
    posterior: str | None
    prior_fraction: float | None
    proximal: float | None
    dataset: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunInfo:
        return cls(id=str(d["id"]), kind=str(d["kind"]), width=int(d["width"]), depth=int(d["depth"]),
                   hidden=tuple(int(h) for h in d["hidden"]), seed=int(d["seed"]), prior_kind=str(d["prior_kind"]),
                   posterior=d.get("posterior"), prior_fraction=num(d.get("prior_fraction")),
                   proximal=num(d.get("proximal")), dataset=str(d["dataset"]))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "width": self.width, "depth": self.depth,
                "hidden": list(self.hidden), "seed": self.seed, "prior_kind": self.prior_kind,
                "posterior": self.posterior, "prior_fraction": self.prior_fraction, "proximal": self.proximal,
                "dataset": self.dataset}

    @property
    def alpha(self) -> float | None:
        """The prior fraction (``None`` for the init prior)."""
        return None if self.prior_kind == "init" else self.prior_fraction

    @property
    def lam(self) -> float | None:
        """The proximal lambda (``None`` unless the posterior is proximal)."""
        return self.proximal if self.posterior == "proximal" else None


#: the fields of a run record the study adds to the certificate's own record.
_RUN_FIELDS = ("run", "run_config", "settings", "checkpoint", "prior_checkpoint", "bound_sample", "train_error",
               "distance_to_prior_fro", "distance_to_init_fro", "training", "sparsity", "timings", "decomposition",
               "binding", "noise_layers", "objective")
#: the certificate fields typed on :class:`RunRecord`.
_CERT_FIELDS = ("m", "delta", "eta1", "eta2", "test_error", "m_test", "test_error_lower_confidence", "results",
                "ratios", "tradeoff", "grids")


@dataclass(frozen=True)
class RunRecord:
    """One trained and certified network (``certificate.json``; ``results.json["runs"][i]``).

    Attributes:
        run: what the run is.
        run_config: everything that determined its results (compared on resume;
            :func:`sparsebound.study.plan.run_config`), including the sparse-mc seed.
        settings: epochs and draws used and requested, and the budget plan.
        m, delta, eta1, eta2: bound-sample size and levels.
        train_error, test_error: errors of the certified network; ``m_test`` test points;
            ``test_error_lower_confidence`` the (1 - delta) lower confidence bound of the
            test error, below which no valid certificate can lie.
        distance_to_prior_fro, distance_to_init_fro: ``||W - W0||_F`` to the prior mean and
            to the initialisation.
        results: the certificates by method name.
        ratios: ratios of unclipped values (``sparse/neyshabur2018``, ``sparse/dense``).
        tradeoff: the global-sparsity trade-off rows (init runs).
        grids: the grids the certificates used.
        training: the training record (epochs, errors, the prior's, reuse).
        timings: seconds per stage.
        checkpoint: the run's checkpoint folder; ``prior_checkpoint`` the shared prior's
            (path, tensor hash, whether this run trained it); ``bound_sample`` a description.
        sparsity: the activation-sparsity summary (init runs).
        decomposition: per PAC-Bayes-kl method the parts of the certificate
            (``certification.certificate_parts``: empirical, kl_over_m, confidence, eta1,
            inversion_gap, unclipped) and, with ``pbb``, ``derandomisation`` (sparse vs pbb).
        binding: ``certification.binding_summary`` of ``sparse`` (shares of samples whose
            sigma*(x) is set by the margin or by a layer's witness radius, ...), or ``None``.
        noise_layers: the layers that carry noise in ``sparse``'s profile (1-based).
        objective: the training recipe of an objective run (``sparsebound.recipes``: options,
            rules, frozen layers, profile, the erm and robust priors' errors), else ``None``.
        certificate_fields: the other fields of the certificate's record (network,
            environment, ...), kept as written.
    """

    run: RunInfo
    run_config: dict[str, Any]
    settings: dict[str, Any]
    m: int
    delta: float
    eta1: float
    eta2: float
    train_error: float | None
    test_error: float | None
    m_test: int | None
    test_error_lower_confidence: float | None
    distance_to_prior_fro: float | None
    distance_to_init_fro: float | None
    results: dict[str, MethodResult]
    ratios: dict[str, Any]
    tradeoff: list[dict[str, Any]]
    grids: dict[str, Any]
    training: dict[str, Any]
    timings: dict[str, Any]
    checkpoint: str
    prior_checkpoint: dict[str, Any] | None
    bound_sample: Any
    sparsity: dict[str, Any] | None
    certificate_fields: dict[str, Any] = field(default_factory=dict)
    decomposition: dict[str, Any] = field(default_factory=dict)
    binding: dict[str, Any] | None = None
    noise_layers: list[int] = field(default_factory=list)
    objective: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        return cls(
            run=RunInfo.from_dict(d["run"]), run_config=dict(d.get("run_config") or {}),
            settings=dict(d.get("settings") or {}), m=int(d["m"]), delta=float(d["delta"]),
            eta1=float(d["eta1"]), eta2=float(d["eta2"]), train_error=num(d.get("train_error")),
            test_error=num(d.get("test_error")), m_test=None if d.get("m_test") is None else int(d["m_test"]),
            test_error_lower_confidence=num(d.get("test_error_lower_confidence")),
            distance_to_prior_fro=num(d.get("distance_to_prior_fro")),
            distance_to_init_fro=num(d.get("distance_to_init_fro")),
            results={k: MethodResult.from_dict(k, v) for k, v in (d.get("results") or {}).items()},
            ratios=dict(d.get("ratios") or {}), tradeoff=list(d.get("tradeoff") or []),
            grids=dict(d.get("grids") or {}), training=dict(d.get("training") or {}),
            timings=dict(d.get("timings") or {}), checkpoint=str(d.get("checkpoint", "")),
            prior_checkpoint=d.get("prior_checkpoint"), bound_sample=d.get("bound_sample"),
            sparsity=d.get("sparsity"),
            certificate_fields={k: v for k, v in d.items() if k not in _RUN_FIELDS and k not in _CERT_FIELDS},
            decomposition=dict(d.get("decomposition") or {}), binding=d.get("binding"),
            noise_layers=[int(k) for k in (d.get("noise_layers") or [])], objective=d.get("objective"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.certificate_fields)
        d.update({"m": self.m, "delta": self.delta, "eta1": self.eta1, "eta2": self.eta2,
                  "test_error": self.test_error, "m_test": self.m_test,
                  "test_error_lower_confidence": self.test_error_lower_confidence,
                  "results": {k: v.to_dict() for k, v in self.results.items()}, "ratios": self.ratios,
                  "tradeoff": self.tradeoff, "grids": self.grids})
        d.update({"run": self.run.to_dict(), "run_config": self.run_config, "settings": self.settings,
                  "checkpoint": self.checkpoint})
        if self.prior_checkpoint is not None:
            d["prior_checkpoint"] = self.prior_checkpoint
        d.update({"bound_sample": self.bound_sample, "train_error": self.train_error,
                  "distance_to_prior_fro": self.distance_to_prior_fro,
                  "distance_to_init_fro": self.distance_to_init_fro, "training": self.training})
        if self.sparsity is not None:
            d["sparsity"] = self.sparsity
        d["timings"] = self.timings
        d["decomposition"] = self.decomposition
        d["binding"] = self.binding
        d["noise_layers"] = self.noise_layers
        if self.objective is not None:
            d["objective"] = self.objective
        return d

    @property
    def shared_prior_sha256(self) -> str | None:
        """The tensor hash of the block's shared erm prior (``prior-a{alpha}``): for an objective run,
        the erm prior its recipe started from (its own prior may be the robust prior)."""
        pc = self.prior_checkpoint or {}
        return pc.get("erm_prior_tensor_sha256") or pc.get("tensor_sha256")

    @property
    def prior_test_error(self) -> float | None:
        """Test error of the prior mean the certificate used (data-dependent runs), else ``None``."""
        return num((self.training.get("prior") or {}).get("test_error"))

    @property
    def median_sigma_star(self) -> float | None:
        """Median per-sample sigma* of ``sparse`` (``None`` when not computed)."""
        r = self.results.get("sparse")
        if r is None:
            return None
        s = (r.details.get("sigma_star_summary") or {}).get("median")
        return num(s)

    def unclipped(self, method: str) -> float | None:
        """The unclipped value of ``method`` (``None`` when not computed)."""
        r = self.results.get(method)
        return None if r is None else r.unclipped

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """The certificate's validity warnings (``Certificate.warnings``, recorded in
        ``certificate.json`` and ``results.json``), e.g. a certificate below the held-out
        lower confidence bound.  A ``prior-equals-network`` warning on a data-dependent run
        (written by earlier versions for a posterior that is its prior, the proximal
        lambda = inf case) is the expected case, not a warning, and is left out."""
        out = []
        for w in self.certificate_fields.get("warnings") or []:
            if not isinstance(w, Mapping):
                continue
            if w.get("kind") == "prior-equals-network" and self.run.prior_kind == "data-dependent":
                continue
            out.append(dict(w))
        return out

    @property
    def valid(self) -> bool:
        """False when a warning says the values are not certificates."""
        from ..records import Certificate

        return not any(w.get("invalidates") or w.get("kind") in Certificate.INVALIDATING for w in self.warnings)

    @property
    def prior_sha256(self) -> str | None:
        """The tensor hash of the shared data-dependent prior (``None`` for the init prior)."""
        return (self.prior_checkpoint or {}).get("tensor_sha256")

    def sparsity_samples(self) -> dict[str, Any] | None:
        """The per-sample sparsity arrays of an init run (``sparsity.json`` beside its checkpoint):
        ``activity_ratios`` (n,), ``active_fractions``, ``mid_radii`` (per hidden layer, (n,));
        ``None`` when the file is missing or damaged."""
        from .._io import load_json

        try:
            return dict(load_json(Path(self.checkpoint) / "sparsity.json")["per_sample"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def sort_key(r: RunRecord) -> tuple[Any, ...]:
    """Table order: by width, init first, then by alpha, standard before proximal, lambda
    ascending (inf last), then seed."""
    run = r.run
    if run.prior_kind == "init":
        kk: tuple[Any, ...] = (0, 0.0, 0, 0.0)
    else:
        order = {"standard": 0, "proximal": 1, "certificate": 2, "pbb": 3}
        kk = (1, run.alpha or 0.0, order.get(run.posterior or "", 4), run.lam or 0.0)
    return (run.width, *kk, run.seed)


# ======================================================================================
# the study
# ======================================================================================


@dataclass(frozen=True)
class StudyResult:
    """A whole study (``results.json``).

    Attributes:
        config: the resolved settings.
        created: local time the record was assembled.
        runs: every run, in run order.
        data: the data split record (sizes, radius, ...).
        grids: the grids shared by the runs (per-run grids are on each run).
        versions: library versions.
        timings: wall time, runs loaded from disk, per-run timings, priors trained.
        budget: the time-budget record (``--budget-minutes``; ``None`` without).
        figures: relative paths of the figures, by kind (empty until they are drawn).
        summary: the derived numbers the report quotes (recomputed from ``runs``).
        failed_runs: the runs that failed on their workers (``--executor ray``), each
            ``{"run", "kind", "error", "attempts"}``; ``runs`` holds the finished ones only.
            Written to ``results.json`` only when not empty (a complete study's file is
            the same as before).
    """

    config: StudyConfig
    created: str
    runs: tuple[RunRecord, ...]
    data: dict[str, Any]
    grids: dict[str, Any]
    versions: dict[str, Any]
    timings: dict[str, Any]
    budget: dict[str, Any] | None
    figures: dict[str, Any]
    summary: Summary
    failed_runs: tuple[dict[str, Any], ...] = ()

    # ---- views ---------------------------------------------------------------------
    @property
    def seeds(self) -> list[int]:
        return list(self.config.seeds)

    @property
    def widths(self) -> list[int]:
        return list(self.config.widths)

    @property
    def depth(self) -> int:
        return self.config.depth

    @property
    def methods(self) -> list[str]:
        return list(self.config.methods)

    @property
    def delta(self) -> float:
        return self.config.delta

    @property
    def eta1(self) -> float:
        return self.config.eta1

    @property
    def eta2(self) -> float:
        return self.config.eta2

    @property
    def prior_fractions(self) -> list[float]:
        return list(self.config.prior_fractions)

    @property
    def proximal(self) -> list[float]:
        return list(self.config.proximal_grid)

    @property
    def sigma_profiles(self) -> list[list[float]]:
        return [list(p) for p in self.config.sigma_profiles]

    @property
    def kinds(self) -> list[str]:
        """Run names in table order (first appearance)."""
        return list(dict.fromkeys(r.run.kind for r in self.ordered_runs()))

    def ordered_runs(self) -> list[RunRecord]:
        """The runs in table order (:func:`sort_key`)."""
        return sorted(self.runs, key=sort_key)

    # ---- building ------------------------------------------------------------------
    @classmethod
    def assemble(cls, config: StudyConfig, runs: Sequence[RunRecord], *, data: dict[str, Any],
                 versions: dict[str, Any], timings: dict[str, Any], budget: dict[str, Any] | None,
                 created: str, figures: dict[str, Any] | None = None,
                 failed_runs: Sequence[Mapping[str, Any]] = ()) -> StudyResult:
        """A study from its runs; computes the shared grid record and the summary."""
        from ..noise import DEFAULT_ACTIVE_FRACTIONS
        from .summary import summarize

        first = runs[0] if runs else None
        grids = {
            "sigma": (first.grids.get("sigma") if first is not None else None),
            "sigma_profiles": [list(p) for p in config.sigma_profiles] or "all-ones",
            "active_fractions": list(DEFAULT_ACTIVE_FRACTIONS),
            "per_run": "runs[i].grids (sparsity grid, noise constants, exact-norm refinement)",
        }
        runs = tuple(runs)
        return cls(config=config, created=created, runs=runs, data=data, grids=grids, versions=versions,
                   timings=timings, budget=budget, figures=dict(figures or {}),
                   summary=summarize(config, runs), failed_runs=tuple(dict(f) for f in failed_runs))

    def with_figures(self, figures: dict[str, Any]) -> StudyResult:
        from dataclasses import replace

        return replace(self, figures=dict(figures))

    # ---- JSON ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` record (pass through :func:`sparsebound._io.to_jsonable` or
        :func:`sparsebound._io.dump_json`)."""
        from .._io import to_jsonable

        d: dict[str, Any] = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "config": self.config.to_dict(),
            "seeds": self.seeds,
            "widths": self.widths,
            "depth": self.depth,
            "kinds": self.kinds,
            "methods": self.methods,
            "prior_fractions": self.prior_fractions,
            "proximal": self.proximal,
            "sigma_profiles": self.sigma_profiles,
            "data": self.data,
            "delta": self.delta,
            "eta1": self.eta1,
            "eta2": self.eta2,
            "grids": self.grids,
            "versions": self.versions,
            "timings": self.timings,
            "runs": [r.to_dict() for r in self.runs],
        }
        if self.budget is not None:
            d["budget"] = self.budget
        d["summary"] = self.summary.to_dict()
        d["figures"] = self.figures
        if self.failed_runs:
            d["failed_runs"] = [dict(f) for f in self.failed_runs]
        return to_jsonable(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "results record") -> StudyResult:
        """Read a ``results.json`` record of a readable version (see :func:`schema_version`).

        The summary is recomputed from the runs (so a version-1 file gets the exact
        union-bound level of this version).

        Raises:
            ConfigError: an unknown version, or a record that is not a study.
        """
        from .config import StudyConfig
        from .summary import summarize

        version = schema_version(d, source)
        try:
            config = StudyConfig.from_dict(d["config"])
            runs = tuple(RunRecord.from_dict(r) for r in d["runs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: damaged results record (version {version}: {exc!r}); re-run "
                              "`sparsebound reproduce` to regenerate it") from None
        return cls(config=config, created=str(d.get("created", "")), runs=runs, data=dict(d.get("data") or {}),
                   grids=dict(d.get("grids") or {}), versions=dict(d.get("versions") or {}),
                   timings=dict(d.get("timings") or {}), budget=d.get("budget"),
                   figures=dict(d.get("figures") or {}), summary=summarize(config, runs),
                   failed_runs=tuple(dict(f) for f in d.get("failed_runs") or ()))

    # ---- CSV -----------------------------------------------------------------------
    def csv_rows(self) -> list[dict[str, Any]]:
        """One tidy row per run and method (the rows of ``results.csv``, :data:`CSV_COLUMNS`)."""
        rows = []
        for r in self.runs:
            run = r.run
            epochs = r.settings.get("max_epochs", (r.run_config.get("training") or {}).get("max_epochs"))
            for method in self.methods:
                m = r.results.get(method)
                if m is None:
                    continue
                unc = m.unclipped
                lg = None if unc is None else (math.log10(unc) if 0 < unc < math.inf else
                                               ("inf" if unc == math.inf else None))
                mc = method == "sparse-mc"
                rows.append({
                    "dataset": run.dataset, "width": run.width, "depth": run.depth, "seed": run.seed,
                    "prior": run.prior_kind, "posterior": run.posterior or "", "method": method,
                    "certificate": m.certificate, "unclipped": _json_number(m.unclipped), "log10_unclipped": lg,
                    "vacuous": m.vacuous, "empirical_term": m.empirical_term,
                    "complexity_term": m.complexity_term, "sigma": m.details.get("sigma"),
                    "kl_over_m": m.details.get("kl_over_m"), "certified_fraction": m.details.get("certified_fraction"),
                    "distance_to_prior": m.details.get("distance_to_prior"), "train_error": r.train_error,
                    "test_error": r.test_error, "test_error_lower_confidence": r.test_error_lower_confidence,
                    "m": m.m if m.m is not None else r.m, "delta": r.delta,
                    "run": run.kind, "prior_fraction": run.alpha, "proximal": _json_number(run.lam),
                    "max_epochs": epochs,
                    "q_hat": m.details.get("q_hat") if mc else None,
                    "n_draws": m.details.get("n_draws") if mc else None,
                    "mc_seed": m.details.get("seed") if mc else None, "delta_pacbayes": m.delta if mc else None,
                    "delta_mc": m.details.get("delta_mc") if mc else None,
                })
        return rows

    def csv_text(self) -> str:
        """``results.csv`` (header :data:`CSV_COLUMNS`; empty cells for missing values)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        w.writeheader()
        for row in self.csv_rows():
            w.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
        return buf.getvalue()


def _json_number(v: float | None) -> Any:
    """A float as results.json writes it (``inf`` as ``"inf"``)."""
    if v is None:
        return None
    return "inf" if v == math.inf else ("-inf" if v == -math.inf else v)


def schema_version(d: Mapping[str, Any], source: str = "results record") -> int:
    """The schema version of a ``results.json`` record.

    Raises:
        ConfigError: no ``format``, or a version this code cannot read (named in the message).
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source} is not a sparsebound results record (not a JSON object)")
    fmt = d.get("format")
    prefix = "sparsebound-reproduce-"
    if not isinstance(fmt, str) or not fmt.startswith(prefix):
        raise ConfigError(f"{source} is not a sparsebound reproduce results file (format {fmt!r}); "
                          "give the results.json that `sparsebound reproduce` wrote")
    try:
        version = int(fmt[len(prefix):])
    except ValueError:
        raise ConfigError(f"{source}: unknown results format {fmt!r}; this sparsebound reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}") from None
    if version not in READABLE_VERSIONS:
        raise ConfigError(f"{source} has results format version {version}; this sparsebound reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))} (upgrade sparsebound, or re-run "
                          "`sparsebound reproduce` to regenerate it)")
    return version


def load_results(path: str | Path) -> StudyResult:
    """Read a ``results.json`` (schema version 1 or 2) as a :class:`StudyResult`.

    Raises:
        ConfigError: missing or unreadable file, not JSON, or an unknown version.
    """
    import json

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"results file {str(p)!r} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read results file {str(p)!r} ({exc}); re-run `sparsebound reproduce`") \
            from None
    return StudyResult.from_dict(d, source=f"results file {str(p)!r}")
