"""The derived numbers of a study: what the report's plain-language readings quote.

Computed from the typed run records only (:func:`summarize`), stored under
``results.json["summary"]`` and recomputed whenever a results file is loaded,
so the report never computes a number itself:

* :class:`GroupSummary` per run kind (``init``, ``ddp-standard``, ...): vacuity per
  method, how far ``sparse`` lies below each other method, per-width means and
  trends, the non-vacuous certificates, the best level of the trade-off curve;
* :class:`SparsityRow` per init run and hidden layer: effective activity ratio and
  share of positive sparse local radii;
* :class:`LeverBlock` per (width, seed) with several posteriors: the best setting,
  the effect of each lever, and the exact union-bound level of picking the best
  (:class:`UnionLevel`, docs/theory.md section 9);
* :class:`McSummary`: delta, delta', N and the seed rule of ``sparse-mc``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import MC_MAX_EVALS, StudyConfig
from .results import RunRecord, num, sort_key

__all__ = [
    "FIT_THRESHOLD",
    "GroupSummary",
    "LeverBlock",
    "McSummary",
    "ObjectiveRow",
    "Summary",
    "UnionLevel",
    "summarize",
    "trend",
    "union_level",
]

#: training-error level below which a network counts as fitted in the levers summary.
FIT_THRESHOLD = 0.02
#: the certificates the levers' "best" is chosen among.
BEST_METHODS = ("sparse", "sparse-mc")


def trend(values: Sequence[float]) -> str:
    """'increases', 'decreases', 'constant' or 'non-monotone' over an ordered list ('single' for one)."""
    if len(values) < 2:
        return "single"
    d = [b - a for a, b in itertools.pairwise(values)]
    if all(x > 0 for x in d):
        return "increases"
    if all(x < 0 for x in d):
        return "decreases"
    if all(x == 0 for x in d):
        return "constant"
    return "non-monotone"


def _mean(xs: Iterable[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else None


def group_label(kind: str) -> str:
    if kind.startswith("ddp-certificate"):
        return f"certificate-aware training ({kind})"
    if kind.startswith("ddp-pbb"):
        return f"pbb-objective training ({kind})"
    return {"init": "prior = initialisation",
            "ddp-standard": "data-dependent prior, standard posterior",
            "ddp-proximal": "data-dependent prior, proximal posterior"}.get(kind, kind)


# ======================================================================================
# per run kind
# ======================================================================================


@dataclass(frozen=True)
class Comparison:
    """``other / sparse`` of the unclipped values over the runs of a group."""

    factor_min: float | None
    factor_max: float | None
    n_infinite: int
    sparse_below_all: bool
    sparse_above_all: bool
    sparse_equal_all: bool
    n_runs: int


@dataclass(frozen=True)
class TradeoffBest:
    """The quoted level of one run's trade-off curve (``figures.tradeoff_best_index``), the
    densest level and the plain minimum (values as stored in the run's ``tradeoff`` rows)."""

    width: int
    seed: int
    common_level: bool
    uncertified_active_fractions: list[Any]
    best_active_fraction: Any
    best_unclipped: Any
    best_augmented_loss: Any
    window: float
    best_complexity_term: Any
    full_active_fraction: Any
    full_unclipped: Any
    full_augmented_loss: Any
    full_complexity_term: Any
    plain_min_active_fraction: Any
    plain_min_unclipped: Any
    plain_min_augmented_loss: Any


@dataclass(frozen=True)
class NonVacuous:
    width: int
    seed: int
    method: str
    certificate: float


@dataclass(frozen=True)
class GroupSummary:
    """The runs of one kind (e.g. every ``init`` run, over widths and seeds).

    ``per_width_mean_unclipped`` rows hold ``width``, one mean per method (keys are
    method names), ``test_error`` and ``train_error`` (means over seeds).
    """

    label: str
    widths: list[int]
    n_runs: int
    vacuous: dict[str, str]
    sparse_vs: dict[str, Comparison]
    per_width_mean_unclipped: list[dict[str, Any]]
    trend_with_width: dict[str, str]
    non_vacuous: list[NonVacuous]
    tradeoff_best: list[TradeoffBest]


def _tradeoff_best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The trade-off level the report quotes (the rule of ``figures.tradeoff_best_index``, so
    that the report and the figure's star agree); ``rows`` carry at least one finite bound."""
    from ..report import figures as fig

    i = fig.tradeoff_best_index(rows)
    if i is None:
        raise ValueError("no trade-off level carries a finite bound")
    return rows[i]


def _tradeoff_best(r: RunRecord) -> TradeoffBest | None:
    every = r.tradeoff
    rows = [t for t in every if num(t.get("unclipped")) is not None]
    if not rows:
        return None
    from ..certification import INFORMATIVE_WINDOW

    best = _tradeoff_best_row(rows)
    plain = min(rows, key=lambda t: (num(t["unclipped"]), -(num(t["active_fraction"]) or 0.0)))
    # the densest level of the curve, certified or not (None: nothing reaches the common level)
    full = max(every, key=lambda t: num(t["active_fraction"]) or 0.0)
    return TradeoffBest(
        width=r.run.width, seed=r.run.seed, common_level=all("certifiable" in t for t in every),
        uncertified_active_fractions=[t["active_fraction"] for t in every if num(t.get("unclipped")) is None],
        best_active_fraction=best["active_fraction"], best_unclipped=best["unclipped"],
        best_augmented_loss=best["augmented_loss"], window=INFORMATIVE_WINDOW,
        best_complexity_term=best["complexity_term"],
        full_active_fraction=full["active_fraction"], full_unclipped=full["unclipped"],
        full_augmented_loss=full["augmented_loss"], full_complexity_term=full["complexity_term"],
        plain_min_active_fraction=plain["active_fraction"], plain_min_unclipped=plain["unclipped"],
        plain_min_augmented_loss=plain["augmented_loss"])


def _group(kind: str, rs: list[RunRecord], methods: Sequence[str]) -> GroupSummary:
    widths = sorted({r.run.width for r in rs})
    vac = {}
    for m in methods:
        flags = [r.results[m].vacuous for r in rs if m in r.results]
        vac[m] = "all" if flags and all(flags) else ("none" if not any(flags) else "some")
    # factor by which sparse is below each other method (other / sparse), per run
    comp = {}
    for other in ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "dense", "uniform-sparse", "sparse-mc"):
        fac = []
        for r in rs:
            s, o = r.unclipped("sparse"), r.unclipped(other)
            if s is not None and o is not None and s > 0:
                fac.append(o / s)
        if fac:
            fin = [f for f in fac if math.isfinite(f)]
            comp[other] = Comparison(
                factor_min=min(fin) if fin else None, factor_max=max(fin) if fin else None,
                n_infinite=len(fac) - len(fin), sparse_below_all=all(f > 1 for f in fac),
                sparse_above_all=all(f < 1 for f in fac), sparse_equal_all=all(f == 1 for f in fac),
                n_runs=len(fac))
    per_width = []
    for w in widths:
        rw = [r for r in rs if r.run.width == w]
        row: dict[str, Any] = {"width": w}
        for m in methods:
            row[m] = _mean(r.unclipped(m) for r in rw)
        row["test_error"] = _mean(r.test_error for r in rw)
        row["train_error"] = _mean(r.train_error for r in rw)
        per_width.append(row)
    trends = {m: trend([row[m] for row in per_width if row.get(m) is not None])
             for m in ("sparse", "sparse-mc", "dense", "neyshabur2018", "bartlett2017", "test-set") if m in methods}
    non_vac = [NonVacuous(r.run.width, r.run.seed, m, r.results[m].certificate) for r in rs
               for m in methods if m != "test-set" and m in r.results and not r.results[m].vacuous]
    trade = [t for t in (_tradeoff_best(r) for r in rs) if t is not None]
    return GroupSummary(label=group_label(kind), widths=widths, n_runs=len(rs), vacuous=vac, sparse_vs=comp,
                        per_width_mean_unclipped=per_width, trend_with_width=trends, non_vacuous=non_vac,
                        tradeoff_best=trade)


@dataclass(frozen=True)
class SparsityRow:
    """Activation sparsity of one init-prior network at one hidden layer (training set)."""

    width: int
    seed: int
    layer: int
    effective_activity_ratio_mean: float
    active_fraction_raw_mean: float
    mid_fraction: Any
    radius_share_positive: Any


def _sparsity_rows(runs: Sequence[RunRecord]) -> list[SparsityRow]:
    out = []
    for r in runs:
        if r.run.kind != "init" or r.sparsity is None:
            continue
        for h in r.sparsity["hidden_layers"]:
            mid = str(r.sparsity.get("mid_fraction"))
            rad = h.get("radius", {}).get(mid, {})
            out.append(SparsityRow(width=r.run.width, seed=r.run.seed, layer=h["layer"],
                                   effective_activity_ratio_mean=h["effective_activity_ratio"]["mean"],
                                   active_fraction_raw_mean=h["active_fraction_raw"]["mean"],
                                   mid_fraction=r.sparsity.get("mid_fraction"),
                                   radius_share_positive=rad.get("share_positive")))
    return out


# ======================================================================================
# sparse-mc
# ======================================================================================


@dataclass(frozen=True)
class McSummary:
    """delta, delta', N and seeds of ``sparse-mc`` (docs/theory.md section 10), as recorded.

    ``seed_rule``: ``fresh`` (a fresh seed per run from the operating system, recorded
    before drawing), ``derived`` (per-run seeds derived from ``seed`` = ``--mc-seed`` and
    the run name), ``fixed`` (format-1 studies: one seed for every run), or ``mixed``.
    """

    delta_total: float
    delta: list[float]
    delta_mc: list[float]
    delta_fraction: float
    n_draws: list[int]
    n_draws_per_width: list[dict[str, Any]]
    seed: int | None
    seed_rule: str
    seeds: list[int]
    max_evals: int


def _mc_summary(config: StudyConfig, runs: Sequence[RunRecord]) -> McSummary | None:
    rows = [(r, r.results["sparse-mc"]) for r in runs if "sparse-mc" in r.results]
    if not rows:
        return None

    def distinct(vals: Iterable[Any]) -> list[Any]:
        return sorted({v for v in vals if v is not None}, key=float)

    per_width = []
    for w in config.widths:
        n = distinct(m.n_draws for r, m in rows if r.run.width == w)
        if n:
            per_width.append({"width": w, "n_draws": n})
    rules = {((r.run_config.get("mc") or {}).get("seed_rule") or "fixed") for r, _ in rows}
    rule = rules.pop() if len(rules) == 1 else "mixed"
    bases = {(r.run_config.get("mc") or {}).get("base_seed") for r, _ in rows}
    if rule == "derived" and len(bases) == 1:
        base = bases.pop()
    elif rule == "fixed":
        base = next(iter(distinct(m.seed for _, m in rows)), None)
    else:
        base = None
    return McSummary(delta_total=config.delta, delta=distinct(m.delta for _, m in rows),
                     delta_mc=distinct(m.delta_mc for _, m in rows), delta_fraction=config.mc_delta_fraction,
                     n_draws=distinct(m.n_draws for _, m in rows), n_draws_per_width=per_width,
                     seed=base, seed_rule=rule, seeds=distinct(m.seed for _, m in rows), max_evals=MC_MAX_EVALS)


# ======================================================================================
# union-bound level of "best over several networks" (docs/theory.md section 9)
# ======================================================================================


@dataclass(frozen=True)
class UnionLevel:
    """The level at which every ``sparse`` and ``sparse-mc`` certificate of a set of networks
    holds simultaneously, so that any of them may be picked after looking at all.

    Each PAC-Bayes-kl event is one per prior (with its bound sample, loss ``L_mid`` and
    sigma-grid weights): at level d it holds for every posterior of that prior at once,
    and it implies the same event at any smaller level d' <= d (a larger complexity
    term).  So all PAC-Bayes steps taken with one prior (``sparse`` at delta,
    ``sparse-mc`` at (1 - f) delta, for any number of posteriors) fail together with
    probability at most the largest of their levels.  Each ``sparse-mc`` certificate adds
    its own Monte-Carlo event (its draws) at level f delta.  The union bound gives

        level = sum over priors of (largest PAC-Bayes level used with it)
              + sum over sparse-mc certificates of delta'.

    Attributes:
        level: the total.
        n_priors: number of distinct PAC-Bayes events (priors).
        prior_levels: ``[{"level": d, "priors": count}]`` grouped by level.
        n_mc: number of sparse-mc certificates; ``mc_levels`` grouped like ``prior_levels``.
        n_networks: networks with a sparse or sparse-mc certificate.
    """

    level: float
    n_priors: int
    prior_levels: list[dict[str, Any]]
    n_mc: int
    mc_levels: list[dict[str, Any]]
    n_networks: int


def _loss_family(r: RunRecord) -> str:
    """What fixes the loss ``L_mid`` and the grid weights pi(sigma) of a PAC-Bayes event: eta1,
    the sigma grid (reference, steps, profiles, weights) and the sparsity grid."""
    sig = {k: v for k, v in (r.grids.get("sigma") or {}).items() if k != "j_range_evaluated"}
    return json.dumps({"eta1": r.eta1, "sigma": sig, "sparsity": r.grids.get("sparsity")}, sort_keys=True,
                      default=str)


def _prior_event(r: RunRecord) -> tuple[Any, ...]:
    """The PAC-Bayes event a run's certificates live on: its prior (init: the seed's
    initialisation of this architecture; data-dependent: the shared prior, by alpha and tensor
    hash), its bound sample (size m) and its loss family."""
    if r.run.prior_kind == "init":
        prior: tuple[Any, ...] = ("init", r.run.seed, r.run.hidden)
    else:
        prior = ("data-dependent", r.run.seed, r.run.hidden, r.run.alpha, r.prior_sha256)
    return (*prior, r.m, _loss_family(r))


def _grouped(levels: Iterable[float]) -> list[dict[str, Any]]:
    counts: dict[float, int] = {}
    for x in levels:
        counts[x] = counts.get(x, 0) + 1
    return [{"level": x, "count": n} for x, n in sorted(counts.items(), reverse=True)]


def union_level(runs: Sequence[RunRecord], methods: Sequence[str] = BEST_METHODS) -> UnionLevel:
    """The exact union-bound level of every ``methods`` certificate of ``runs`` (see :class:`UnionLevel`).

    Only ``sparse`` and ``sparse-mc`` (the PAC-Bayes-kl certificates of THEORY.md 4.2 and 4.5)
    may be counted this way.
    """
    bad = [m for m in methods if m not in BEST_METHODS]
    if bad:
        raise ValueError(f"union_level counts sparse and sparse-mc only, not {bad}")
    events: dict[tuple[Any, ...], float] = {}
    mc: list[float] = []
    networks = 0
    for r in runs:
        used = [m for m in methods if m in r.results]
        networks += bool(used)
        for m in used:
            res = r.results[m]
            d = res.delta if res.delta is not None else r.delta
            key = _prior_event(r)
            events[key] = max(events.get(key, 0.0), float(d))
            if m == "sparse-mc":
                dm = res.delta_mc
                if dm is None:
                    raise ValueError(f"{r.run.id}: sparse-mc record without delta_mc")
                mc.append(float(dm))
    level = math.fsum([*events.values(), *mc])
    return UnionLevel(level=level, n_priors=len(events), prior_levels=_grouped(events.values()), n_mc=len(mc),
                      mc_levels=_grouped(mc), n_networks=networks)


# ======================================================================================
# tightness levers
# ======================================================================================


@dataclass(frozen=True)
class Pick:
    """A chosen network and its lowest sparsity-aware certificate (sparse or sparse-mc).

    ``rule`` (``fitted``: among networks with training error at most the threshold;
    ``lowest``: none fits, among those with the lowest training error), ``lowest_train_error``
    and ``n_eligible`` are set for the levers' ``best``, ``None`` for ``best_overall``.
    """

    run: str
    kind: str
    prior_kind: str
    posterior: str | None
    alpha: float | None
    lam: float | None
    train_error: float | None
    test_error: float | None
    distance_to_prior_fro: float | None
    method: str
    certificate: float
    unclipped: float | None
    vacuous: bool
    rule: str | None = None
    lowest_train_error: float | None = None
    n_eligible: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"run": self.run, "kind": self.kind, "prior_kind": self.prior_kind,
                             "posterior": self.posterior, "alpha": self.alpha, "lambda": self.lam,
                             "train_error": self.train_error, "test_error": self.test_error,
                             "distance_to_prior_fro": self.distance_to_prior_fro}
        if self.rule is not None:
            d.update({"rule": self.rule, "lowest_train_error": self.lowest_train_error,
                      "n_eligible": self.n_eligible})
        d.update({"method": self.method, "certificate": self.certificate, "unclipped": self.unclipped,
                  "vacuous": self.vacuous})
        return d


@dataclass(frozen=True)
class AlphaEffect:
    """The sparse certificate against the prior fraction, at one fixed posterior."""

    posterior: str | None
    lam: float | None
    values: list[dict[str, Any]]
    trend: str
    factor: float | None
    lowest: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"posterior": self.posterior, "lambda": self.lam, "values": self.values, "trend": self.trend,
                "factor": self.factor, "lowest": self.lowest}


@dataclass(frozen=True)
class LambdaEffect:
    """The sparse certificate against the proximal lambda (standard posterior = 0), at one alpha."""

    alpha: float | None
    values: list[dict[str, Any]]
    trend: str
    factor: float | None
    lowest: dict[str, Any] | None


@dataclass(frozen=True)
class InitVsDataDependent:
    """The init prior against the best data-dependent one (sparse), at comparable fit when possible."""

    init: float | None
    best: float | None
    best_run: str
    fit_limit: float
    comparable_fit: bool
    best_train_error: float | None
    init_train_error: float | None
    factor: float | None


@dataclass(frozen=True)
class McVsSparse:
    """``sparse-mc / sparse`` of the unclipped values on the same networks."""

    ratio_min: float
    ratio_max: float
    n_lower: int
    n_runs: int


@dataclass(frozen=True)
class LeverBlock:
    """One (width, seed) with more than one posterior of a data-dependent prior."""

    width: int
    seed: int
    threshold: float
    runs: list[str]
    n_networks: int
    union: UnionLevel
    best: Pick | None = None
    best_overall: Pick | None = None
    alpha_effect: list[AlphaEffect] = field(default_factory=list)
    lambda_effect: list[LambdaEffect] = field(default_factory=list)
    init_vs_data_dependent: InitVsDataDependent | None = None
    mc_vs_sparse: McVsSparse | None = None

    @property
    def delta_union(self) -> float:
        """The union-bound level of picking any of the block's sparsity-aware certificates."""
        return self.union.level

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d: dict[str, Any] = {"width": self.width, "seed": self.seed, "threshold": self.threshold,
                             "runs": self.runs, "n_networks": self.n_networks, "delta_union": self.union.level,
                             "union": asdict(self.union)}
        if self.best is not None:
            d["best"] = self.best.to_dict()
        if self.best_overall is not None:
            d["best_overall"] = self.best_overall.to_dict()
        d["alpha_effect"] = [e.to_dict() for e in self.alpha_effect]
        d["lambda_effect"] = [asdict(e) for e in self.lambda_effect]
        if self.init_vs_data_dependent is not None:
            d["init_vs_data_dependent"] = asdict(self.init_vs_data_dependent)
        if self.mc_vs_sparse is not None:
            d["mc_vs_sparse"] = asdict(self.mc_vs_sparse)
        return d


def _best_of(r: RunRecord) -> tuple[str, float] | None:
    """The lowest unclipped sparsity-aware certificate of a run (sparse or sparse-mc)."""
    cands = [(m, r.unclipped(m)) for m in BEST_METHODS if r.unclipped(m) is not None]
    if not cands:
        return None
    return min(cands, key=lambda t: t[1])  # type: ignore[arg-type, return-value]


def _pick(r: RunRecord, method: str, **extra: Any) -> Pick:
    res = r.results[method]
    return Pick(run=r.run.id, kind=r.run.kind, prior_kind=r.run.prior_kind, posterior=r.run.posterior,
                alpha=r.run.alpha, lam=r.run.lam, train_error=r.train_error, test_error=r.test_error,
                distance_to_prior_fro=r.distance_to_prior_fro, method=method, certificate=res.certificate,
                unclipped=res.unclipped, vacuous=res.vacuous, **extra)


def _effect(values: list[dict[str, Any]]) -> tuple[str, float | None, dict[str, Any] | None]:
    """Trend, max/min factor and the lowest entry of the sparse values of one lever (ordered)."""
    v = [num(x["unclipped"]) for x in values]
    fin = [x for x in v if x is not None and math.isfinite(x)]
    lo = min(fin) if fin else None
    best = values[v.index(lo)] if lo is not None else None
    return (trend(fin) if len(fin) == len(v) else "non-monotone",
            (max(fin) / lo) if fin and lo and lo > 0 else None, best)


def _lever_block(w: int, s: int, rs: list[RunRecord]) -> LeverBlock:
    # the alpha, lambda and prior levers compare erm posteriors; objective runs (--objectives) enter the
    # picks and the union-bound level only
    ddp = [r for r in rs if r.run.prior_kind == "data-dependent" and r.run.posterior in ("standard", "proximal")]
    blk: dict[str, Any] = {"width": w, "seed": s, "threshold": FIT_THRESHOLD, "runs": [r.run.id for r in rs],
                           "n_networks": len(rs), "union": union_level(rs)}
    scored = [(r, b) for r in rs if (b := _best_of(r)) is not None and r.train_error is not None]
    if scored:
        low = min(r.train_error for r, _ in scored)  # type: ignore[type-var]
        fitted = [(r, b) for r, b in scored if r.train_error <= FIT_THRESHOLD]  # type: ignore[operator]
        rule = "fitted" if fitted else "lowest"
        pool = fitted or [(r, b) for r, b in scored if r.train_error == low]
        r, (m, _v) = min(pool, key=lambda t: t[1][1])
        blk["best"] = _pick(r, m, rule=rule, lowest_train_error=low, n_eligible=len(pool))
        r, (m, _v) = min(scored, key=lambda t: t[1][1])
        blk["best_overall"] = _pick(r, m)
    # prior fraction at fixed posterior (standard, or proximal with one lambda)
    alpha_eff = []
    settings = list(dict.fromkeys((r.run.posterior, str(r.run.lam)) for r in ddp))
    for post, lam in settings:
        vals = [{"alpha": r.run.alpha, "unclipped": r.unclipped("sparse"), "train_error": r.train_error}
                for r in ddp if r.run.posterior == post and str(r.run.lam) == lam and r.unclipped("sparse") is not None]
        if len(vals) > 1:
            lam_v = None if lam == "None" else next(r.run.lam for r in ddp if str(r.run.lam) == lam)
            alpha_eff.append(AlphaEffect(post, lam_v, vals, *_effect(vals)))
    blk["alpha_effect"] = alpha_eff
    # lambda at fixed alpha (the standard posterior is lambda 0)
    lam_eff = []
    for a in dict.fromkeys(r.run.alpha for r in ddp):
        vals = [{"posterior": r.run.posterior, "lambda": r.run.lam if r.run.lam is not None else 0.0,
                 "unclipped": r.unclipped("sparse"), "distance_to_prior_fro": r.distance_to_prior_fro,
                 "train_error": r.train_error}
                for r in ddp if r.run.alpha == a and r.unclipped("sparse") is not None]
        if len(vals) > 1:
            lam_eff.append(LambdaEffect(a, vals, *_effect(vals)))
    blk["lambda_effect"] = lam_eff
    # init prior vs the best data-dependent one (sparse)
    init = next((r for r in rs if r.run.prior_kind == "init" and r.unclipped("sparse") is not None), None)
    dd = [r for r in ddp if r.unclipped("sparse") is not None and r.train_error is not None]
    if init is not None and dd and init.train_error is not None:
        # at comparable fit: data-dependent networks fitting S at least as well as the init one
        limit = max(FIT_THRESHOLD, init.train_error)
        comp = [r for r in dd if r.train_error <= limit]  # type: ignore[operator]
        b = min(comp or dd, key=lambda r: r.unclipped("sparse"))  # type: ignore[arg-type, return-value]
        bu, iu = b.unclipped("sparse"), init.unclipped("sparse")
        blk["init_vs_data_dependent"] = InitVsDataDependent(
            init=iu, best=bu, best_run=b.run.kind, fit_limit=limit, comparable_fit=bool(comp),
            best_train_error=b.train_error, init_train_error=init.train_error,
            factor=(iu / bu) if bu else None)  # type: ignore[operator]
    # sparse-mc vs sparse on the same network
    rat = [r.unclipped("sparse-mc") / r.unclipped("sparse") for r in rs  # type: ignore[operator]
           if r.unclipped("sparse-mc") is not None and r.unclipped("sparse")
           and math.isfinite(r.unclipped("sparse"))]  # type: ignore[arg-type]
    rat = [x for x in rat if math.isfinite(x)]
    if rat:
        blk["mc_vs_sparse"] = McVsSparse(ratio_min=min(rat), ratio_max=max(rat), n_lower=sum(x < 1 for x in rat),
                                         n_runs=len(rat))
    return LeverBlock(**blk)


def _levers(config: StudyConfig, runs: Sequence[RunRecord]) -> list[LeverBlock]:
    """Per (width, seed) with more than one posterior of a data-dependent prior."""
    out = []
    for s in config.seeds:
        for w in config.widths:
            rs = sorted((r for r in runs if r.run.width == w and r.run.seed == s), key=sort_key)
            if len([r for r in rs if r.run.prior_kind == "data-dependent"]) < 2:
                continue
            out.append(_lever_block(w, s, rs))
    return out


# ======================================================================================
# objective runs (issue 12): against their prior and the erm run of the same width
# ======================================================================================


@dataclass(frozen=True)
class ObjectiveRow:
    """One run trained with ``--objectives`` other than erm, next to its prior and to the erm
    posterior (``ddp-standard``) of the same width, seed and alpha.

    ``beats_prior``: the posterior's test error is below its prior's (the prior of the
    certificate: the robust prior when accepted).  ``sigma_star_ratio``: median sigma* of
    ``sparse`` over the erm run's (each at its own profile and rescaling)."""

    run: str
    objective: str | None
    width: int
    seed: int
    noise_layers: list[int]
    prior_test_error: float | None
    test_error: float | None
    train_error: float | None
    beats_prior: bool | None
    sparse: float | None
    sparse_mc: float | None
    pbb: float | None
    pbb_posterior: str | None
    median_sigma_star: float | None
    erm_run: str | None
    erm_sparse: float | None
    erm_median_sigma_star: float | None
    sigma_star_ratio: float | None
    s0: float | None
    sigma_t: float | None
    robust_prior_accepted: bool | None
    erm_prior_test_error: float | None


def _objective_rows(runs: Sequence[RunRecord]) -> list[ObjectiveRow]:
    out = []
    for r in sorted(runs, key=sort_key):
        if r.objective is None:
            continue
        erm = next((x for x in runs if x.run.width == r.run.width and x.run.seed == r.run.seed
                    and x.run.alpha == r.run.alpha and x.run.posterior == "standard"), None)
        rules = r.objective.get("rules") or {}
        rob = r.objective.get("robust_prior") or {}
        pte, te = r.prior_test_error, r.test_error
        ms, ems = r.median_sigma_star, (erm.median_sigma_star if erm is not None else None)
        pbb = r.results.get("pbb")
        out.append(ObjectiveRow(
            run=r.run.id, objective=r.objective.get("objective"), width=r.run.width, seed=r.run.seed,
            noise_layers=list(r.noise_layers), prior_test_error=pte, test_error=te, train_error=r.train_error,
            beats_prior=(te < pte) if te is not None and pte is not None else None,
            sparse=r.unclipped("sparse"), sparse_mc=r.unclipped("sparse-mc"), pbb=r.unclipped("pbb"),
            pbb_posterior=(pbb.details.get("posterior") if pbb is not None else None),
            median_sigma_star=ms, erm_run=erm.run.id if erm is not None else None,
            erm_sparse=erm.unclipped("sparse") if erm is not None else None, erm_median_sigma_star=ems,
            sigma_star_ratio=(ms / ems) if ms is not None and ems else None,
            s0=num(rules.get("s0")), sigma_t=num(rules.get("sigma_t")),
            robust_prior_accepted=rob.get("accepted") if rob else None,
            erm_prior_test_error=num((r.objective.get("erm_prior") or {}).get("test_error"))))
    return out


# ======================================================================================
# the summary
# ======================================================================================


@dataclass(frozen=True)
class Summary:
    """Everything the report's readings quote (``results.json["summary"]``)."""

    groups: dict[str, GroupSummary]
    sparsity: list[SparsityRow]
    levers: list[LeverBlock]
    mc: McSummary | None
    objectives: list[ObjectiveRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d: dict[str, Any] = {"groups": {k: asdict(g) for k, g in self.groups.items()},
                             "sparsity": [asdict(x) for x in self.sparsity],
                             "levers": [b.to_dict() for b in self.levers],
                             "objectives": [asdict(x) for x in self.objectives]}
        if self.mc is not None:
            d["mc"] = asdict(self.mc)
        return d


def summarize(config: StudyConfig, runs: Sequence[RunRecord]) -> Summary:
    """The derived numbers of a study from its runs (in run order)."""
    kinds = list(dict.fromkeys(r.run.kind for r in sorted(runs, key=sort_key)))
    groups = {kind: _group(kind, [r for r in runs if r.run.kind == kind], config.methods) for kind in kinds}
    return Summary(groups=groups, sparsity=_sparsity_rows(runs), levers=_levers(config, runs),
                   mc=_mc_summary(config, runs), objectives=_objective_rows(runs))
