"""The analytic sparsity-aware methods: ``dense``, ``uniform-sparse``, ``sparse`` (THEORY.md 4.2-4.4).

All three certify the same network (the certified parametrisation) with the recursions of
THEORY.md 4.1 and differ only in the reduced-norm tables they feed them:

* ``dense``: s = 0 everywhere, spectral norms (the norm-based bound in the same machinery);
* ``uniform-sparse``: per-sample sparsity levels with the uniform tables (THEORY.md 5.2);
* ``sparse``: per-sample exact omega and beta tables refined by exact reduced norms in a
  cascade (THEORY.md 5.1): each round refines the samples not certified at the chosen sigma
  whose sigma* is within ``refine_window`` of it, then searches again.

Each searches sigma on the a-priori grid and the layer rescaling (:class:`AnalyticSearch`);
each later method also starts from the optima of the earlier ones (``dense``, then
``uniform-sparse``), so ``sparse <= uniform-sparse <= dense`` holds for the values reported.
``sparse`` also computes the global-sparsity trade-off curve (:func:`tradeoff_rows`) and leaves
its objective and optimum for ``sparse-mc`` (:class:`SparseRun`).

Source: THEORY.md 4.1-4.4, 5; docs/theory.md sections 8-9.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..certification import INFORMATIVE_WINDOW, PerSampleInputs, SigmaStar, bound_curve, max_certifiable_sigma
from ..network import ReLUNetwork
from ..pacbayes import SigmaGrid
from ..records import MethodCertificate
from ..rounding import sqrt_up, sum_up
from ..search import (
    Evaluation,
    Objective,
    RecursionUnits,
    continuous_sigma_star,
    refinement_targets,
    search_rescaling,
)
from ..sparsity import SparsityGrid
from .context import CertifyContext

__all__ = ["AnalyticSearch", "SparseRun", "certify_dense", "certify_sparse", "certify_uniform_sparse",
           "method_result", "tradeoff_rows"]

#: the shared tables each analytic method reads
DENSE_TABLES = ("parametrisation", "sparsity", "spectral")
UNIFORM_TABLES = (*DENSE_TABLES, "uniform_norms")
SPARSE_TABLES = (*UNIFORM_TABLES, "exact_omega", "exact_beta")


@dataclass
class AnalyticSearch:
    """The rescaling search the analytic methods share (THEORY.md 4.3; docs/theory.md section 8).

    ``starts``: the canonical rescalings (or the identity), then each earlier method's optimum;
    ``center``: the prior-aligned rescaling (the box of the pattern search is around it);
    ``dist_cache``: per-layer distances to the prior by factor; ``seconds``: time spent searching.
    """

    ctx: CertifyContext
    starts: list[tuple[float, ...]]
    center: tuple[float, ...] | None
    canonical: tuple[tuple[float, ...], ...]
    dist_cache: dict[tuple[int, float], float] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def of(cls, ctx: CertifyContext) -> AnalyticSearch:
        """The context's search state (created by the first analytic method)."""
        if "analytic-search" not in ctx.state:
            canon = ctx.table("parametrisation").canonical
            K = ctx.network.depth
            ctx.state["analytic-search"] = cls(ctx=ctx, starts=list(canon) if canon else [(1.0,) * K],
                                               center=canon[0] if canon else None, canonical=canon)
        return ctx.state["analytic-search"]

    def objective(self, inp: PerSampleInputs) -> Objective:
        ctx, opts = self.ctx, self.ctx.options
        return Objective(inp, ctx.certified.network, ctx.inputs.prior, opts.profiles, m=ctx.m, delta=opts.delta,
                         grid=opts.sigma_grid, eta1=opts.eta1, eta2=opts.eta2,
                         units=ctx.table("sparsity").units, dist_cache=self.dist_cache)

    def search(self, obj: Objective, starts: Sequence[tuple[float, ...]], step: float = 1.0,
               multi_start: bool = True) -> Evaluation:
        return search_rescaling(obj, self.ctx.network.depth, starts, center=self.center, step=step,
                                search=self.ctx.options.rescale, multi_start=multi_start)

    def first_search(self, obj: Objective) -> Evaluation:
        """The first method searches from every canonical start with octave steps; later ones
        from the best canonical start and the best earlier optimum, with finer steps."""
        canon, starts = self.canonical, self.starts
        if not canon or len(starts) <= len(canon):
            return self.search(obj, starts, step=1.0, multi_start=True)
        n0 = max(1, len(canon))
        seeds = [min((obj(s) for s in group), key=lambda e: e.value).lambdas
                 for group in (starts[:n0], starts[n0:])]
        return self.search(obj, seeds, step=0.5, multi_start=True)

    def timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    def record(self, method: str, obj: Objective, ev: Evaluation) -> MethodCertificate:
        """The method's record at the optimum ``ev`` (continuous sigma* for the report)."""
        ctx = self.ctx
        dist = sqrt_up(sum_up(obj.dist_sq(ev.lambdas)))
        return method_result(method, continuous_sigma_star(obj, ev), obj, dist, ctx.table("sparsity").grid,
                             ctx.certified.base)

    def run(self, method: str, inp: PerSampleInputs) -> MethodCertificate:
        """Search from the starts, record, and add the optimum to the starts of later methods."""
        obj = self.timed(self.objective, inp)
        ev = self.timed(self.first_search, obj)
        res = self.record(method, obj, ev)
        self.starts.append(ev.lambdas)
        return res


@dataclass(frozen=True)
class SparseRun:
    """What ``sparse`` leaves for the methods that require it (``ctx.state["sparse"]``): its
    objective (final tables), its optimum and the recursion inputs (in the units)."""

    objective: Objective
    evaluation: Evaluation
    inputs: PerSampleInputs


def uniform_inputs(ctx: CertifyContext, uniform: bool = True) -> PerSampleInputs:
    """The recursions' inputs before units: margins, norms and radii of the forward pass and the
    sparsity table, with the uniform tables (``uniform``) or the spectral norms and no omega."""
    acts, st = ctx.acts, ctx.table("sparsity")
    assert acts is not None
    K = ctx.network.depth
    if uniform:
        norms = ctx.table("uniform_norms")
        omega, beta = tuple(norms.uniform_omega), tuple(norms.uniform_beta)
    else:
        omega = tuple(torch.zeros(1, 1, 1, dtype=torch.float64) for _ in range(K - 1))
        beta = spectral_beta(ctx)
    return PerSampleInputs(margins_lower=acts.margins_lower, norms=acts.hidden_norms, radii=st.table.radii,
                           omega=omega, beta=beta, constants=st.constants)


def spectral_beta(ctx: CertifyContext) -> tuple[torch.Tensor, ...]:
    """``(1, 1, 1)`` tables of the spectral norms (the dense level)."""
    return tuple(torch.full((1, 1, 1), v, dtype=torch.float64) for v in ctx.table("spectral"))


def certify_dense(ctx: CertifyContext) -> MethodCertificate:
    """``dense``: s = 0 at every layer, spectral norms (THEORY.md 4.2 with the dense grid)."""
    inp = ctx.table("sparsity").units.apply(replace(uniform_inputs(ctx, uniform=False).dense(),
                                                    beta=spectral_beta(ctx)))
    return AnalyticSearch.of(ctx).run("dense", inp)


def certify_uniform_sparse(ctx: CertifyContext) -> MethodCertificate:
    """``uniform-sparse``: per-sample sparsity levels with the uniform reduced-norm tables (THEORY.md 5.2)."""
    return AnalyticSearch.of(ctx).run("uniform-sparse", ctx.table("sparsity").units.apply(uniform_inputs(ctx)))


def certify_sparse(ctx: CertifyContext) -> MethodCertificate:
    """``sparse``: exact omega, beta refined by exact reduced norms in rounds (THEORY.md 5.1).

    Records ``exact_norms`` in ``ctx.grids`` and ``ctx.timings``, the trade-off curve when
    ``sparse`` was asked for (and ``tradeoff``), and leaves a :class:`SparseRun`."""
    from tqdm.auto import tqdm

    opts = ctx.options
    srch = AnalyticSearch.of(ctx)
    units = ctx.table("sparsity").units
    cache = ctx.table("exact_beta")
    raw_sp = replace(uniform_inputs(ctx), omega=tuple(ctx.table("exact_omega")), beta=tuple(cache.beta))
    sp_inp = units.apply(raw_sp)
    obj = srch.timed(srch.objective, sp_inp)
    ev = srch.timed(srch.first_search, obj)
    budget = opts.exact_budget_s
    quiet = None if opts.progress else True  # None: tqdm switches itself off when not on a terminal
    with tqdm(desc="exact reduced norms", disable=quiet, leave=False, unit="sample") as bar:
        for _ in range(max(0, opts.exact_rounds)):
            sel, lv = refinement_targets(obj, ev, window=opts.refine_window)
            if sel.numel() == 0:
                break
            bar.total = (bar.total or 0) + int(sel.numel())
            bar.refresh()
            n_new = cache.refine(lv, samples=sel, progress=None,
                                 budget_s=None if budget is None else max(0.0, budget - cache.seconds))
            bar.update(int(sel.numel()))
            if n_new == 0:
                break
            sp_inp = units.apply(replace(raw_sp, beta=tuple(cache.beta)))
            obj = srch.timed(srch.objective, sp_inp)
            # tables only got tighter: search again from the current optimum (and the others)
            ev = srch.timed(srch.search, obj, [ev.lambdas, *srch.starts], step=0.25, multi_start=False)
            if budget is not None and cache.seconds >= budget:
                break
    ctx.timings["exact_norms"] = cache.seconds
    ctx.grids["exact_norms"] = {"samples_refined": int(cache.refined_samples()), "norms_computed": cache.n_exact,
                                "window": opts.refine_window, "budget_s": budget}
    res = method_result("sparse", continuous_sigma_star(obj, ev), obj, sqrt_up(sum_up(obj.dist_sq(ev.lambdas))),
                        ctx.table("sparsity").grid, ctx.certified.base)
    ctx.state["sparse"] = SparseRun(objective=obj, evaluation=ev, inputs=sp_inp)
    if opts.tradeoff and ctx.asked("sparse"):
        ctx.tradeoff = tradeoff_rows(sp_inp, ctx.table("sparsity").grid, res, ev.lambdas, ctx.certified.network,
                                     ctx.inputs.prior, units, m=ctx.m, delta=opts.delta, grid_s=opts.sigma_grid,
                                     n_profiles=len(opts.profiles), eta1=opts.eta1, eta2=opts.eta2)
    return res


def method_result(method: str, ev: Evaluation, obj: Objective, prior_dist: float,
                   grid: SparsityGrid, base: Sequence[float] | None = None) -> MethodCertificate:
    """The record of one method; ``base``: the exact power-of-two rescaling that turned the
    given network into the one the tables were built from (reported rescalings are
    relative to the given network)."""
    curve, b = ev.curve, ev.best
    prof = obj.profiles[ev.profile_index]
    sig = float(curve.sigma[b])
    unclipped = float(curve.unclipped[b])
    levels = ev.star.levels.numpy()
    act = []
    for k in range(1, len(grid.widths) - 1):
        a = grid.active[k - 1][levels[:, k - 1]] / grid.widths[k]
        act.append(float(a.mean()) if a.size else 1.0)
    # thin the curve for the record: every grid point where something changes
    keep = np.unique(np.concatenate([[0, len(curve.sigma) - 1],
                                     np.flatnonzero(np.diff(curve.augmented_loss)) ,
                                     np.flatnonzero(np.diff(curve.augmented_loss)) + 1,
                                     np.arange(0, len(curve.sigma), 8)]))
    return MethodCertificate(
        method=method,
        certificate=min(1.0, unclipped),
        unclipped=unclipped,
        vacuous=bool(unclipped >= 1.0),
        augmented_loss=float(curve.augmented_loss[b]),
        empirical_term=float(curve.empirical_term[b]),
        kl=float(curve.kl[b]),
        complexity_term=float(curve.complexity[b]),
        sigma=sig,
        sigma_per_layer=tuple(sig * c for c in prof),
        grid_index=int(curve.j[b]),
        profile=tuple(prof),
        rescaling=tuple(v * b for v, b in zip(ev.lambdas, base or (1.0,) * len(ev.lambdas), strict=True)),
        distance_to_prior=prior_dist,
        certified_fraction=float(1.0 - curve.augmented_loss[b]),
        sigma_star=ev.star.sigma_star.numpy().copy(),
        levels=levels,
        active_fraction_mean=act,
        curve={
            "sigma": curve.sigma[keep].tolist(),
            "augmented_loss": curve.augmented_loss[keep].tolist(),
            "bound": np.minimum(1.0, curve.unclipped[keep]).tolist(),
        },
        m=obj.m,
        delta=obj.delta,
        eta1=obj.eta1,
        eta2=obj.eta2,
    )


def tradeoff_rows(inp: PerSampleInputs, grid: SparsityGrid, sparse: MethodCertificate, lam: Sequence[float],
              net: ReLUNetwork, w0: ReLUNetwork, units: RecursionUnits, *, m: int, delta: float,
              grid_s: SigmaGrid, n_profiles: int, eta1: float, eta2: float) -> list[dict[str, Any]]:
    """Global-sparsity trade-off: every sample uses the same active fraction f at every
    hidden layer (THEORY.md 4.2, Consequences).  Same rescaling and profile as ``sparse``.

    Each row is the bound at that f, chosen at one common informative level for all f:
    grid points whose empirical term is within ``INFORMATIVE_WINDOW`` of the smallest over
    every f and sigma (or the smallest kl bound where it is non-vacuous).  A level where no
    grid point reaches it reports ``unclipped = None`` (no comparable bound) and
    ``certifiable = False``."""
    obj = Objective(inp, net, w0, (sparse.profile,), m=m, delta=delta, grid=grid_s, eta1=eta1, eta2=eta2,
                     units=units)
    dist = obj.dist_sq(lam)
    eff = obj.eff(sparse.profile, lam)
    N = inp.n_samples
    curves = []
    for f in grid.fractions:
        lv = []
        for k in range(1, len(grid.widths) - 1):
            a = int(min(grid.widths[k], max(1, round(f * grid.widths[k]))))
            pos = np.flatnonzero(grid.active[k - 1] == a)
            lv.append(int(pos[0]) if pos.size else 0)
        fixed = torch.tensor(lv, dtype=torch.int64)[None, :].expand(N, -1).contiguous()
        # grid mode: exactly the grid points certified, like the searches
        gs = grid_s.sigma(grid_s.js())
        gs = gs[gs >= obj.sigma_floor(sparse.profile, lam)]  # docs/theory.md Lemma 7.4
        if gs.size:
            star = max_certifiable_sigma(inp, eff, fixed_levels=fixed, grid_sigmas=gs)
        else:
            star = SigmaStar(torch.zeros(N, dtype=torch.float64), fixed.clone(), tuple(sparse.profile))
        curve = bound_curve(star.sigma_star, dist, sparse.profile, m=m, delta=delta, grid=grid_s,
                            n_profiles=n_profiles, eta1=eta1, eta2=eta2)
        curves.append((f, star, curve))
    # One informative level for every f (docs/theory.md section 9): at sparsity levels
    # where (almost) no sample is certified, the per-f minimum would sit at a sigma where
    # nothing is certified and read about 1 + small, which compares nothing.
    level = min(float(np.min(c.empirical_term)) for _, _, c in curves) + INFORMATIVE_WINDOW
    rows = []
    for f, star, curve in curves:
        b = curve.best(level)
        if b < 0:  # nothing certified at the common level: no comparable bound at this f
            rows.append({"active_fraction": float(f), "bound": 1.0, "unclipped": None,
                         "augmented_loss": float(np.min(curve.augmented_loss)),
                         "empirical_term": float(np.min(curve.empirical_term)), "complexity_term": None,
                         "kl": None, "sigma": None, "median_sigma_star": float(star.sigma_star.median()),
                         "informative_level": level, "certifiable": False})
            continue
        rows.append({
            "active_fraction": float(f),
            "bound": float(min(1.0, curve.unclipped[b])),
            "unclipped": float(curve.unclipped[b]),
            "augmented_loss": float(curve.augmented_loss[b]),
            "empirical_term": float(curve.empirical_term[b]),
            "complexity_term": float(curve.complexity[b]),
            "kl": float(curve.kl[b]),
            "sigma": float(curve.sigma[b]),
            "median_sigma_star": float(star.sigma_star.median()),
            "informative_level": level,
            "certifiable": True,
        })
    return rows
