"""The sparsity-aware risk certificate, end to end (THEORY.md 4.2-4.4, 6).

:func:`certify` takes a trained ReLU network, its prior mean (the recorded
initialisation, or a network trained on a disjoint prior split) and a bound
sample, and returns a :class:`Certificate` with one entry per method:

* ``sparse``: per-sample witnesses, exact omega, reduced norms beta refined by
  exact per-sample SVD/eigenvalue computations (cascade: uniform bounds first);
* ``uniform-sparse``: the same with the uniform reduced-norm bounds of
  THEORY.md 5.2 (reduced babel bound, row bound, spectral norm);
* ``dense``: s = 0 everywhere (the norm-based bound in the same machinery);
* baselines (THEORY.md 6) when asked: ``neyshabur2018``, ``neyshabur2018-init``,
  ``bartlett2017``, and the held-out ``test-set`` reference.

Each method is a separate statement at the same failure probability delta.  The
search over sigma (a-priori grid with weights), over layer rescalings (the
function is unchanged, the theorem holds for every W) and over per-sample
sparsity vectors never changes validity (THEORY.md 4.3).

Source: Muthukumar & Sulam, COLT 2023; THEORY.md sections 4 and 6;
docs/theory.md for the proofs.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .certification import (
    CERT_SLACK,
    INFORMATIVE_WINDOW,
    PerSampleInputs,
    SigmaStar,
    bound_curve,
    max_certifiable_sigma,
)
from .errors import ConfigError
from .network import ReLUNetwork, as_labels
from .noise import DEFAULT_ACTIVE_FRACTIONS, NoiseConstants
from .pacbayes import SigmaGrid, check_delta, error_lower_confidence
from .sparsity import SparsityGrid, SparsityTable

SPARSE_METHODS = ("sparse", "uniform-sparse", "dense", "sparse-mc")
BASELINE_METHODS = ("neyshabur2018", "neyshabur2018-init", "bartlett2017", "test-set")
ALL_METHODS = SPARSE_METHODS + BASELINE_METHODS
MIN_BOUND_SAMPLES = 8


class PriorValidityWarning(UserWarning):
    """A result that only a prior which saw the bound sample can give (see ``Certificate.warnings``)."""


@dataclass(frozen=True)
class MethodCertificate:
    """One sparsity-aware method's risk certificate (THEORY.md 4.2).

    Attributes:
        method: ``sparse``, ``uniform-sparse`` or ``dense``.
        certificate: ``min(1, unclipped)``, an upper bound of the 0-1 risk of the
            certified network with probability >= 1 - delta.
        unclipped: the bound before clipping (kl form where below 1, else the
            Pinsker form ``empirical + sqrt(C/2) + eta1``).
        vacuous: ``unclipped >= 1``.
        augmented_loss: L_aug at the chosen sigma (fraction of bound samples not
            certified).
        empirical_term: ``L_aug + eta2 (1 - L_aug)``.
        kl: ``sum_k ||W_k - W0_k||_F^2 / (2 sigma_k^2)`` (rescaled W).
        complexity_term: ``(KL + ln(2 sqrt(m) / (pi delta))) / m``.
        sigma: chosen scalar grid value; ``sigma_per_layer`` its per-layer values.
        grid_index: j of the chosen sigma; ``profile``: c.
        rescaling: layer factors lambda_k (prod = 1) of the certified parametrisation.
        distance_to_prior: ``||lambda W - W0||_F`` (bias columns included).
        certified_fraction: ``1 - L_aug``.
        sigma_star: ``(m,)`` float64 per-sample largest certifiable sigma (for the
            chosen profile and rescaling).
        levels: ``(m, K-1)`` per-sample sparsity levels (grid positions) at sigma*.
        curve: ``{"sigma", "augmented_loss", "bound"}`` lists over the grid
            points evaluated (for the certified-fraction-vs-sigma figure).
    """

    method: str
    certificate: float
    unclipped: float
    vacuous: bool
    augmented_loss: float
    empirical_term: float
    kl: float
    complexity_term: float
    sigma: float
    sigma_per_layer: tuple[float, ...]
    grid_index: int
    profile: tuple[float, ...]
    rescaling: tuple[float, ...]
    distance_to_prior: float
    certified_fraction: float
    sigma_star: np.ndarray
    levels: np.ndarray
    active_fraction_mean: list[float]
    curve: dict[str, list[float]]
    m: int
    delta: float
    eta1: float
    eta2: float

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        s = self.sigma_star
        pos = s[s > 0]
        d: dict[str, Any] = {
            "method": self.method,
            "certificate": self.certificate,
            "unclipped": self.unclipped,
            "log10_unclipped": math.log10(self.unclipped) if self.unclipped > 0 else None,
            "vacuous": self.vacuous,
            "augmented_loss": self.augmented_loss,
            "empirical_term": self.empirical_term,
            "kl": self.kl,
            "kl_over_m": self.kl / self.m,
            "complexity_term": self.complexity_term,
            "sigma": self.sigma,
            "sigma_per_layer": list(self.sigma_per_layer),
            "grid_index": self.grid_index,
            "profile": list(self.profile),
            "rescaling": list(self.rescaling),
            "distance_to_prior": self.distance_to_prior,
            "certified_fraction": self.certified_fraction,
            "sigma_star_summary": {
                "median": float(np.median(s)),
                "quantiles": {str(q): float(np.quantile(s, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
                "fraction_zero": float((s <= 0).mean()),
                "median_positive": float(np.median(pos)) if pos.size else 0.0,
            },
            "active_fraction_mean": self.active_fraction_mean,
            "curve": self.curve,
            "m": self.m,
            "delta": self.delta,
            "eta1": self.eta1,
            "eta2": self.eta2,
        }
        if per_sample:
            d["sigma_star"] = self.sigma_star.tolist()
            d["levels"] = self.levels.tolist()
        return d


@dataclass
class Certificate:
    """All methods' certificates for one network, prior and bound sample.

    ``results[method]`` is a :class:`MethodCertificate` for the sparsity-aware
    methods and a ``BaselineResult`` for the baselines (both have
    ``certificate``, ``unclipped``, ``vacuous`` and ``to_dict()``).
    """

    network: str
    widths: tuple[int, ...]
    prior_kind: str
    m: int
    delta: float
    eta1: float
    eta2: float
    bound_sample_error: float
    test_error: float | None
    m_test: int | None
    test_error_lower_confidence: float | None
    results: dict[str, Any]
    tradeoff: list[dict[str, Any]]
    grids: dict[str, Any]
    timings: dict[str, float]
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        res = {}
        for k, v in self.results.items():
            res[k] = v.to_dict(per_sample=per_sample) if isinstance(v, MethodCertificate) else v.to_dict()
        return {
            "network": self.network,
            "widths": list(self.widths),
            "prior": self.prior_kind,
            "m": self.m,
            "delta": self.delta,
            "delta_note": "every method is a separate statement at confidence 1 - delta",
            "eta1": self.eta1,
            "eta2": self.eta2,
            "bound_sample_error": self.bound_sample_error,
            "test_error": self.test_error,
            "m_test": self.m_test,
            "test_error_lower_confidence": self.test_error_lower_confidence,
            "results": res,
            "ratios": self.ratios(),
            "tradeoff": self.tradeoff,
            "grids": self.grids,
            "timings_s": self.timings,
            "environment": self.environment,
            "warnings": self.warnings,
            "valid": not any(w["kind"] == "below-held-out-lower-bound" for w in self.warnings),
        }

    def ratios(self) -> dict[str, float]:
        """``sparse / X`` ratios of the unclipped values (values below 1 favour sparse)."""
        out: dict[str, float] = {}
        if "sparse" not in self.results:
            return out
        s = self.results["sparse"].unclipped
        for other in ("dense", "uniform-sparse", "neyshabur2018", "neyshabur2018-init", "bartlett2017"):
            if other in self.results:
                o = self.results[other].unclipped
                out[f"sparse/{other}"] = s / o if (o > 0 and math.isfinite(o)) else 0.0
        return out

    def table(self) -> str:
        """A readable fixed-width table of every method."""
        lines = [
            f"network: {self.network}   prior: {self.prior_kind}   m = {self.m} bound samples   "
            f"delta = {self.delta} (each bound holds with probability >= {1 - self.delta:g})   "
            f"eta1 = {self.eta1}   eta2 = {self.eta2}",
        ]
        if self.test_error is not None:
            lines.append(
                f"bound-sample error {self.bound_sample_error:.4f}   test error {self.test_error:.4f} "
                f"(m_test = {self.m_test}; with probability >= {1 - self.delta:g} the true error is at least "
                f"{self.test_error_lower_confidence:.4f}, so no valid certificate can be below that)"
            )
        hdr = (f"{'method':<20}{'certificate':>12}{'unclipped':>13}{'log10':>8}  {'empirical':>10}"
               f"{'complexity':>12}{'sigma':>11}{'cert.frac':>10}{'||W-W0||':>10}  note")
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for name, r in self.results.items():
            unc = r.unclipped
            lg = f"{math.log10(unc):8.2f}" if unc > 0 and math.isfinite(unc) else f"{'inf':>8}"
            if isinstance(r, MethodCertificate):
                extra = (f"{r.empirical_term:10.4f}{r.complexity_term:12.4g}{r.sigma:11.3g}"
                         f"{r.certified_fraction:10.3f}{r.distance_to_prior:10.3f}")
            elif hasattr(r, "q_hat"):  # sparse-mc
                extra = (f"{r.empirical_term:10.4f}{r.complexity_term:12.4g}{r.sigma:11.3g}"
                         f"{1 - r.q_hat:10.3f}{r.distance_to_prior:10.3f}")
            else:
                extra = f"{r.empirical_term:10.4f}{r.complexity_term:12.4g}{'':>11}{'':>10}{'':>10}"
            note = "VACUOUS" if r.vacuous else ""
            lines.append(f"{name:<20}{r.certificate:12.4f}{unc:13.4g}{lg}  {extra}  {note}")
        rat = self.ratios()
        if rat:
            lines.append("ratios of unclipped values: " + ", ".join(f"{k} = {v:.3g}" for k, v in rat.items()))
        lines.append(
            "columns: certificate = min(1, unclipped); VACUOUS = unclipped >= 1 (it says nothing about the "
            "risk). sparse/uniform-sparse/dense: empirical = L_aug + eta2 (1 - L_aug), L_aug = share "
            "of bound samples NOT certified at the chosen sigma; sparse-mc: empirical = kl upper confidence "
            "bound of q_hat (the Monte-Carlo share not certified, over the N draws) + eps_G (docs/theory.md "
            "section 10); all four: complexity "
            "= (KL + ln(2 sqrt(m)/(pi delta)))/m; unclipped = kl_inv(empirical, complexity) + eta1, or "
            "empirical + sqrt(complexity/2) + eta1 when that is >= 1; ||W-W0|| of the certified network (after "
            "the layer rescaling, which computes the same function). Baselines: empirical = margin (neyshabur) "
            "or ramp (bartlett) loss, unclipped = empirical + complexity. test-set: unclipped = kl_inv(test "
            "error, ln(1/delta)/m_test); its complexity column is unclipped - test error."
        )
        why = self.vacuous_reason()
        if why:
            lines.append(why)
        lines.extend(f"WARNING: {w['message']}" for w in self.warnings)
        return "\n".join(lines)

    def vacuous_reason(self) -> str:
        """One sentence on why the sparse certificate is vacuous (empty when it is not)."""
        r = self.results.get("sparse")
        if not isinstance(r, MethodCertificate) or not r.vacuous:
            return ""
        return (
            f"why vacuous: the bound samples tolerate noise only up to sigma ~ {r.sigma:.3g} (median sigma* "
            f"{float(np.median(r.sigma_star)):.3g}), while the certified network is ||W-W0||_F = "
            f"{r.distance_to_prior:.3g} from the prior, so KL/m = {r.kl / r.m:.3g} >> 1; a closer prior "
            "(data-dependent, proximal posterior) or more bound samples shrink it."
        )


# --------------------------------------------------------------------------------------
# building the per-sample tables
# --------------------------------------------------------------------------------------


def _size_index(sizes: Sequence[int]) -> dict[int, int]:
    return {int(s): i for i, s in enumerate(sizes)}


def _col_sizes(grid: SparsityGrid, k: int, bias: int) -> np.ndarray:
    """Active column counts a^col_{k-1} for layer k, in the grid order of layer k-1."""
    if k == 1:
        return np.array([grid.widths[0] + bias])
    return grid.active[k - 2] + bias


def _row_sizes(grid: SparsityGrid, k: int) -> np.ndarray:
    K = len(grid.widths) - 1
    if k == K:
        return np.array([grid.widths[K]])
    return grid.active[k - 1]


@dataclass
class NormTables:
    """Uniform and spectral bounds per layer, arranged on the grid (shared across samples)."""

    spectral: list[float]
    uniform_beta: list[torch.Tensor]  # (1, T_k, T_{k-1})
    uniform_omega: list[torch.Tensor]  # (1, T_k, T_{k-1}) hidden layers


def uniform_norm_tables(net: ReLUNetwork, grid: SparsityGrid, progress: bool = False) -> NormTables:
    """Uniform sparse-norm bounds (THEORY.md 5.2) for every layer on the grid."""
    from .norms import uniform_sparse_norms

    K = net.depth
    bias = 1 if net.has_bias else 0
    spectral, ub, uo = [], [], []
    for k in range(1, K + 1):
        W = net.augmented_weight(k)
        rows = _row_sizes(grid, k)
        cols = _col_sizes(grid, k, bias)
        tab = uniform_sparse_norms(W, rows.tolist(), cols.tolist(), progress=progress)
        ri = _size_index(tab.row_sizes)
        ci = _size_index(tab.col_sizes)
        r_idx = [ri[int(a)] for a in rows]
        c_idx = [ci[int(b)] for b in cols]
        beta = torch.as_tensor(tab.bound[np.ix_(r_idx, c_idx)], dtype=torch.float64)
        spectral.append(float(tab.spectral))
        ub.append(beta[None])
        if k < K:
            rb = torch.as_tensor(np.asarray(tab.row_bound)[c_idx], dtype=torch.float64)
            om = rb[None, :].expand(len(rows), len(cols)).clone()
            om[0, :] = 0.0  # s_k = 0: no inactive rows
            uo.append(om[None])
    return NormTables(spectral=spectral, uniform_beta=ub, uniform_omega=uo)


def exact_omega_tables(net: ReLUNetwork, table: SparsityTable, device: str | None = None) -> list[torch.Tensor]:
    """Per-sample exact ``omega_k = max_{i in I_k} ||W_k[i, J_{k-1}]||`` on the grid.

    Returns K-1 tensors ``(N, T_k, T_{k-1})`` (upper bounds, safety factor included).
    Source: THEORY.md section 2 (omega) and 5.1.
    """
    from .norms import exact_row_norms_restricted

    grid = table.grid
    K = net.depth
    N = table.n_samples
    out = []
    for k in range(1, K):
        W = net.augmented_weight(k)
        s = torch.as_tensor(grid.sparsity(k), dtype=torch.int64)
        T = s.numel()
        order = table.order[k - 1]
        if k == 1:
            Tp = 1
            masks = [None]
        else:
            Tp = len(grid.active[k - 2])
            masks = list(range(Tp))
        om = torch.zeros(N, T, Tp, dtype=torch.float64)
        for tp, mk in enumerate(masks):
            if mk is None:
                rn = torch.sqrt((W * W).sum(dim=1)) * (1.0 + _norm_safety())
                rn = rn[None, :].expand(N, -1)
            else:
                cm = table.active_mask(k - 1, mk)
                if net.has_bias:
                    cm = torch.cat([cm, torch.ones(N, 1, dtype=torch.bool)], dim=1)
                rn = exact_row_norms_restricted(W, cm)
            srt = rn.gather(1, order)  # row norms in ascending pre-activation order
            cm_max = torch.cummax(srt, dim=1).values
            pos = s > 0
            if bool(pos.any()):
                om[:, pos, tp] = cm_max[:, s[pos] - 1]
        out.append(om)
    del device
    return out


def _norm_safety() -> float:
    from .norms import NORM_SAFETY

    return NORM_SAFETY


class ExactBetaCache:
    """Per-sample beta tables: uniform bounds, refined by exact reduced norms on demand.

    ``beta[k-1]`` is ``(N, T_k, T_{k-1})``; :meth:`refine` computes
    ``||W_k[J_k, J_{k-1}]||`` exactly (THEORY.md 5.1) at the given per-sample
    grid positions, keeps the minimum with the current bound, and restores
    monotonicity (a bound for larger sets covers every subset: running minimum
    toward sparser levels).
    """

    def __init__(self, net: ReLUNetwork, table: SparsityTable, uniform_beta: list[torch.Tensor],
                 device: str | None = None) -> None:
        self.net = net
        self.table = table
        self.device = device
        N = table.n_samples
        self.beta = [b.expand(N, -1, -1).clone() for b in uniform_beta]
        self.done = [torch.zeros(b.shape, dtype=torch.bool) for b in self.beta]
        self.n_exact = 0
        self.seconds = 0.0

    def refined_samples(self) -> int:
        """Number of samples with at least one exact entry."""
        any_done = torch.zeros(self.table.n_samples, dtype=torch.bool)
        for d in self.done:
            any_done |= d.flatten(1).any(dim=1)
        return int(any_done.sum())

    def refine(self, levels: torch.Tensor, samples: torch.Tensor | None = None,
               progress: Callable[[int], None] | None = None, budget_s: float | None = None) -> int:
        """Exact norms at ``levels`` (``(n, K-1)`` grid positions of ``samples``).

        With ``budget_s``, samples are processed in chunks in the given order and
        the work stops once the budget is spent (what was computed is kept)."""
        if samples is not None and budget_s is not None and samples.numel() > 256:
            t_end = time.perf_counter() + budget_s
            total = 0
            for i in range(0, samples.numel(), 256):
                if time.perf_counter() >= t_end:
                    break
                total += self.refine(levels[i : i + 256], samples[i : i + 256], progress)
            return total
        from .norms import exact_reduced_norms

        t0 = time.perf_counter()
        net, table = self.net, self.table
        K = net.depth
        if samples is None:
            samples = torch.arange(table.n_samples)
        bias_col = net.widths  # d_{k-1} is the bias column index of layer k
        count = 0
        for k in range(1, K + 1):
            tk = levels[:, k - 1] if k < K else torch.zeros(samples.numel(), dtype=torch.int64)
            tp = levels[:, k - 2] if k >= 2 else torch.zeros(samples.numel(), dtype=torch.int64)
            need = ~self.done[k - 1][samples, tk, tp]
            if not bool(need.any()):
                continue
            pairs = torch.stack([tk[need], tp[need]], dim=1)
            idx_need = samples[need]
            uniq = torch.unique(pairs, dim=0)
            W = net.augmented_weight(k)
            for pr in uniq:
                a, b = int(pr[0]), int(pr[1])
                sel = (pairs[:, 0] == a) & (pairs[:, 1] == b)
                ids = idx_need[sel]
                rows = table.active_rows(k, a, ids) if k < K else None
                if k >= 2:
                    cols = table.active_rows(k - 1, b, ids)
                    if net.has_bias:
                        cols = torch.cat(
                            [cols, torch.full((ids.numel(), 1), bias_col[k - 1], dtype=torch.int64)],
                            dim=1,
                        )
                else:
                    cols = None
                val = exact_reduced_norms(W, rows, cols, device=self.device)
                cur = self.beta[k - 1][ids, a, b]
                self.beta[k - 1][ids, a, b] = torch.minimum(cur, val)
                self.done[k - 1][ids, a, b] = True
                count += int(ids.numel())
                if progress is not None:
                    progress(int(ids.numel()))
            # monotone: bound at (t, t') may use any entry with u <= t, u' <= t'
            bk = self.beta[k - 1]
            bk = torch.cummin(bk, dim=1).values
            bk = torch.cummin(bk, dim=2).values
            self.beta[k - 1] = bk
        self.n_exact += count
        self.seconds += time.perf_counter() - t0
        return count


# --------------------------------------------------------------------------------------
# the search over sigma and rescalings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Eval:
    lambdas: tuple[float, ...]
    profile_index: int
    star: SigmaStar
    curve: Any
    best: int
    value: float


class _Objective:
    """Certificate value as a function of the rescaling (bias-free networks)."""

    def __init__(self, inp: PerSampleInputs, net: ReLUNetwork, prior: ReLUNetwork,
                 profiles: tuple[tuple[float, ...], ...], *, m: int, delta: float,
                 grid: SigmaGrid, eta1: float, eta2: float) -> None:
        self.inp = inp
        self.profiles = profiles
        self.m, self.delta, self.grid, self.eta1, self.eta2 = m, delta, grid, eta1, eta2
        self.bias = net.has_bias
        K = net.depth
        self.mats = [(net.augmented_weight(k), prior.augmented_weight(k)) for k in range(1, K + 1)]
        self.base_dist = net.frobenius_sq_distances(prior)
        self.grid_sigmas = grid.sigma(grid.js())
        self.cache: dict[tuple, _Eval] = {}

    def dist_sq(self, lam: Sequence[float]) -> list[float]:
        """``||lambda_k W_k - W0_k||_F^2`` per layer (computed directly, bias-free networks)."""
        if all(v == 1.0 for v in lam):
            return list(self.base_dist)
        return [float(((v * a - b) ** 2).sum()) for v, (a, b) in zip(lam, self.mats, strict=True)]

    def __call__(self, lam: tuple[float, ...]) -> _Eval:
        key = tuple(round(math.log2(v) * 64) for v in lam)
        if key in self.cache:
            return self.cache[key]
        best: _Eval | None = None
        for pi, prof in enumerate(self.profiles):
            eff = tuple(c / v for c, v in zip(prof, lam, strict=True))
            star = max_certifiable_sigma(self.inp, eff, grid_sigmas=self.grid_sigmas)
            curve = bound_curve(star.sigma_star, self.dist_sq(lam), prof, m=self.m, delta=self.delta,
                                grid=self.grid, n_profiles=len(self.profiles), eta1=self.eta1,
                                eta2=self.eta2)
            b = curve.best()
            ev = _Eval(lambdas=lam, profile_index=pi,
                       star=SigmaStar(star.sigma_star, star.levels, prof), curve=curve, best=b,
                       value=curve.value())
            if best is None or ev.value < best.value:
                best = ev
        assert best is not None
        self.cache[key] = best
        return best


def _continuous(obj: _Objective, ev: _Eval) -> _Eval:
    """Replace the grid-resolution sigma* by the continuous bisection (for reporting).

    The chosen grid point, rescaling and profile stay; L_aug at the chosen sigma is
    recomputed from the continuous sigma* (never smaller than the grid one's
    certified set, since the continuous value is at least the grid value up to
    bisection precision) and the curve is rebuilt from it.
    """
    prof = obj.profiles[ev.profile_index]
    eff = tuple(c / v for c, v in zip(prof, ev.lambdas, strict=True))
    star = max_certifiable_sigma(obj.inp, eff)
    # keep the larger of the two per sample (both are certified values)
    s = torch.maximum(star.sigma_star, ev.star.sigma_star)
    lv = torch.where((star.sigma_star >= ev.star.sigma_star)[:, None], star.levels, ev.star.levels)
    curve = bound_curve(s, obj.dist_sq(ev.lambdas), prof, m=obj.m, delta=obj.delta, grid=obj.grid,
                        n_profiles=len(obj.profiles), eta1=obj.eta1, eta2=obj.eta2)
    b = curve.best()
    return _Eval(lambdas=ev.lambdas, profile_index=ev.profile_index, star=SigmaStar(s, lv, prof),
                 curve=curve, best=b, value=curve.value())


def _refinement_targets(obj: _Objective, ev: _Eval, window: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples worth exact norms: not certified at the chosen grid sigma, but with
    sigma* within a factor ``window`` below it.  Returns their indices and the
    greedy levels at the chosen sigma (the sets they would need there)."""
    from .certification import greedy_certify

    sig = float(ev.curve.sigma[ev.best])
    star = ev.star.sigma_star
    cand = (~ev.star.certified_at(sig)) & (star * window >= sig)
    idx = torch.nonzero(cand).flatten()
    if idx.numel() == 0:
        return idx, torch.zeros(0, obj.inp.depth - 1, dtype=torch.int64)
    prof = obj.profiles[ev.profile_index]
    eff = tuple(c / v for c, v in zip(prof, ev.lambdas, strict=True))
    sub = obj.inp.subset(idx)
    _, lv, _ = greedy_certify(sub, torch.full((idx.numel(),), sig / (1.0 - CERT_SLACK),
                                             dtype=torch.float64), eff)
    # closest to certified first (matters when a time budget cuts the list)
    order = torch.argsort(star[idx], descending=True)
    return idx[order], lv[order]


def _lambdas_from_logs(logs: Sequence[float]) -> tuple[float, ...]:
    lam = [2.0**v for v in logs]
    lam.append(1.0 / math.prod(lam))
    return tuple(lam)


def search_rescaling(obj: _Objective, depth: int, starts: Sequence[tuple[float, ...]],
                     max_octaves: float = 2.0, min_step: float = 1.0 / 32, step: float = 0.5) -> _Eval:
    """Pattern search over ``log2 lambda_1..lambda_{K-1}`` (lambda_K = 1/prod) from the
    best of ``starts``.  Any W is allowed by the theorem, so the search needs no
    union bound (THEORY.md 4.2, Consequences); the objective is the unclipped
    certificate."""
    best = min((obj(tuple(s)) for s in starts), key=lambda e: e.value)
    if obj.bias or depth < 2:
        return best
    logs = [math.log2(v) for v in best.lambdas[:-1]]
    while step >= min_step:
        improved = False
        for i in range(depth - 1):
            for sgn in (1.0, -1.0):
                trial = list(logs)
                trial[i] += sgn * step
                if abs(trial[i]) > max_octaves:
                    continue
                ev = obj(_lambdas_from_logs(trial))
                if ev.value < best.value - 1e-12:
                    best, logs, improved = ev, trial, True
                    break
        if not improved:
            step /= 2
    return best


def _method_result(method: str, ev: _Eval, obj: _Objective, prior_dist: float,
                   grid: SparsityGrid) -> MethodCertificate:
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
        rescaling=tuple(ev.lambdas),
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


# --------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------


def _as_network(obj: ReLUNetwork | nn.Module, what: str, example_inputs: torch.Tensor | None = None) -> ReLUNetwork:
    """A :class:`ReLUNetwork` from a network or any ``nn.Module`` computing a ReLU MLP
    (read and checked by :func:`sparsebound.models.network_from_module`)."""
    if isinstance(obj, ReLUNetwork):
        return obj
    if isinstance(obj, nn.Module):
        from .models import network_from_module

        return network_from_module(obj, example_inputs=example_inputs)
    raise ConfigError(
        f"{what} must be a ReLUNetwork or a torch.nn.Module computing a ReLU MLP, got {type(obj).__name__}; "
        "files load with sparsebound.models.load_model(path)"
    )


PRIOR_KINDS = ("init", "data-dependent", "zero", "user-given")


def _check_certify_options(*, delta: float, methods: Sequence[str], eta1: float, eta2: float, radius: float | None,
                           sigma_grid: SigmaGrid | None, active_fractions: Sequence[float], exact_rounds: int,
                           refine_window: float, exact_budget_s: float | None, mc_draws: int, mc_batch: int,
                           mc_seed: int | None, mc_delta_fraction: float, mc_max_evals: int, device: str | None,
                           prior_kind: str | None) -> tuple[float, int | None]:
    """Every option of :func:`certify` checked before any work (one-line errors).

    Returns ``(delta, mc_seed)`` normalised.

    Raises:
        ConfigError: the first option out of its range, named with the fix.
    """
    from .errors import check_seed
    from .network import resolve_device

    delta = check_delta(delta)
    for name, v in (("eta1", eta1), ("eta2", eta2), ("mc_delta_fraction", mc_delta_fraction)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not (0.0 < float(v) < 1.0):
            raise ConfigError(f"{name} must lie in (0, 1), got {v!r}")
    if isinstance(methods, str):
        raise ConfigError(f"methods must be a list of method names, e.g. [{methods!r}], not a string")
    unknown = [mth for mth in methods if mth not in ALL_METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_METHODS)}")
    if not methods:
        raise ConfigError("no method selected; choose from " + ", ".join(ALL_METHODS))
    for name, v, lo in (("mc_draws", mc_draws, 1), ("mc_batch", mc_batch, 1), ("mc_max_evals", mc_max_evals, 1),
                        ("exact_rounds", exact_rounds, 0)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")
    if mc_seed is not None:
        mc_seed = check_seed(mc_seed, "mc_seed (--mc-seed)")
    if isinstance(refine_window, bool) or not isinstance(refine_window, int | float) \
            or not (1.0 <= float(refine_window) < math.inf):
        raise ConfigError(f"refine_window must be a finite number >= 1, got {refine_window!r}")
    if exact_budget_s is not None and (isinstance(exact_budget_s, bool) or not isinstance(exact_budget_s, int | float)
                                       or not (0.0 <= float(exact_budget_s) < math.inf)):
        raise ConfigError(f"exact_budget_s must be None or a finite number of seconds >= 0, got {exact_budget_s!r}")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int | float | np.floating)
                               or not (0.0 < float(radius) < math.inf)):
        raise ConfigError(f"radius must be a positive finite bound on ||x|| over the input domain, got {radius!r}")
    if sigma_grid is not None and not isinstance(sigma_grid, SigmaGrid):
        raise ConfigError(f"sigma_grid must be a sparsebound.pacbayes.SigmaGrid, got {type(sigma_grid).__name__}")
    try:
        fr = [float(f) for f in active_fractions]
    except (TypeError, ValueError):
        raise ConfigError(f"active_fractions must be numbers in (0, 1], got {active_fractions!r}") from None
    if not fr or any(not (0.0 < f <= 1.0) for f in fr):
        raise ConfigError(f"active_fractions must be a non-empty list of numbers in (0, 1], got {active_fractions!r}")
    if prior_kind is not None and prior_kind not in PRIOR_KINDS:
        raise ConfigError(f"prior_kind must be one of {', '.join(PRIOR_KINDS)} (or None: derived), got {prior_kind!r}")
    resolve_device(device)
    return delta, mc_seed


def _derive_prior_kind(given: str | None, net: ReLUNetwork, prior: ReLUNetwork, init: ReLUNetwork | None) -> str:
    """``prior_kind`` from what the prior is (never "init" for a prior that is not the initialisation).

    ``zero``: every weight 0; ``init``: equal to the given initialisation;
    ``data-dependent``: only when the caller says so; otherwise ``user-given``.

    Raises:
        ConfigError: a stated kind the prior contradicts (``init`` but not equal to
            ``init``, ``zero`` but not zero).
    """
    is_zero = all(not bool(w.any()) for w in prior.weights) and (
        prior.biases is None or all(not bool(b.any()) for b in prior.biases))
    is_init = init is not None and prior.widths == init.widths and prior.distance_to(init) == 0.0
    if given == "zero" and not is_zero:
        raise ConfigError("prior_kind='zero' but the prior has non-zero weights; pass the zero network or another kind")
    if given == "init":
        if init is not None and not is_init:
            raise ConfigError(
                "prior_kind='init' but the prior differs from init=; a prior that is not the saved initialisation "
                "is 'data-dependent' (trained on data disjoint from the bound sample) or 'user-given'"
            )
        return "init"
    if given is not None:
        return given
    if is_zero:
        return "zero"
    if is_init:
        return "init"
    return "user-given"


PRIOR_RULE = (
    "the prior must be fixed before the bound sample is seen (the initialisation saved before training, or a "
    "network trained on data disjoint from the bound sample)"
)


def _validity_warnings(cert: Certificate, net: ReLUNetwork, prior: ReLUNetwork) -> list[dict[str, Any]]:
    """Checks of the result that only a prior which saw the bound sample can fail.

    * a certificate below the lower confidence bound of the held-out error (at the
      same delta): impossible for a valid certificate except with probability about
      delta (THEORY.md 7.4); the value is then not a certificate;
    * a prior equal to the network: valid only if the network never saw the bound
      sample (e.g. a prior trained on S_prior kept as the posterior).
    """
    out: list[dict[str, Any]] = []
    lcb = cert.test_error_lower_confidence
    if lcb is not None:
        below = [name for name, r in cert.results.items()
                 if name != "test-set" and math.isfinite(r.certificate) and r.certificate < lcb]
        if below:
            vals = ", ".join(f"{name} {cert.results[name].certificate:.4g}" for name in below)
            out.append({
                "kind": "below-held-out-lower-bound", "methods": below,
                "message": (f"NOT A CERTIFICATE: {vals} lie(s) below {lcb:.4g}, the lower confidence bound of the "
                            "held-out error (with a valid prior that happens with probability below about "
                            f"2 delta): {PRIOR_RULE}, and the bound sample and the held-out data must come from "
                            "the same distribution. Do not report these values."),
            })
    if net.distance_to(prior) == 0.0:
        out.append({
            "kind": "prior-equals-network", "methods": [],
            "message": (f"the prior equals the certified network: the value is a certificate only if that network "
                        f"never saw the bound sample; {PRIOR_RULE}."),
        })
    return out


def environment_record() -> dict[str, Any]:
    """Library versions and platform, for results files."""
    import scipy

    return {
        "sparsebound": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def certify(
    network: ReLUNetwork | nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    prior: ReLUNetwork | nn.Module,
    delta: float = 0.05,
    methods: Sequence[str] = ("sparse", "uniform-sparse", "dense"),
    prior_kind: str | None = None,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    radius: float | None = None,
    init: ReLUNetwork | nn.Module | None = None,
    eta1: float = 1e-4,
    eta2: float = 1e-3,
    sigma_grid: SigmaGrid | None = None,
    active_fractions: Sequence[float] = DEFAULT_ACTIVE_FRACTIONS,
    tight_constants: bool = True,
    rescale: bool = True,
    exact_rounds: int = 3,
    refine_window: float = 4.0,
    exact_budget_s: float | None = None,
    mc_draws: int = 2000,
    mc_batch: int = 256,
    mc_seed: int | None = None,
    mc_delta_fraction: float = 0.5,
    mc_max_evals: int = 4,
    tradeoff: bool = True,
    device: str | None = None,
    progress: bool = True,
) -> Certificate:
    """Risk certificates for ``network`` on the bound sample ``(X, y)``.

    Args:
        network: the trained network W: a ``ReLUNetwork`` or any ``nn.Module`` computing a
            feed-forward ReLU MLP (``nn.Sequential``, a subclass calling its layers in
            ``forward``, TorchScript, ...; read by :func:`sparsebound.models.network_from_module`
            and checked against the model on ``X``).
        X: ``(m, d_0)`` float inputs of the bound sample (as the network sees them).
        y: ``(m,)`` int64 labels.
        prior: prior mean W0, fixed before the bound sample was seen: the recorded
            initialisation or a network trained on a disjoint prior split.
        delta: failure probability in (0, 1); every method holds with probability
            >= 1 - delta.
        methods: any of ``sparse``, ``uniform-sparse``, ``dense``, ``neyshabur2018``,
            ``neyshabur2018-init``, ``bartlett2017``, ``test-set``.
        prior_kind: what the prior is: ``init`` (the initialisation saved before
            training), ``data-dependent`` (trained on data disjoint from the bound
            sample), ``zero`` or ``user-given``; ``None`` (default) derives it: ``zero``
            for the zero network, ``init`` when the prior equals ``init``, else
            ``user-given`` (never ``init`` for a prior that is not the initialisation).
        X_test, y_test: held-out data for the test error and the ``test-set`` bound.
        radius: input-domain radius B (needed by ``neyshabur2018``).
        init: the initialisation (reference matrices of the baselines; defaults to ``prior``).
        eta1, eta2: test-side and training-side noise failure levels (THEORY.md 3).
        sigma_grid: the a-priori sigma grid (default ``SigmaGrid()``).
        active_fractions: the a-priori sparsity grid (active fractions of each width).
        tight_constants: exact chi/normal quantiles in the noise constants
            (docs/theory.md) instead of THEORY.md's closed forms.
        rescale: search layer rescalings (bias-free networks only). The search of each
            sparsity-aware method starts from the optima of the methods computed before it
            (dense, then uniform-sparse), which guarantees sparse <= uniform-sparse <= dense;
            the result of ``sparse`` can therefore depend on which other methods are asked for.
        exact_rounds: rounds of exact per-sample reduced norms for ``sparse`` (cascade:
            each round refines the samples not certified at the chosen sigma whose
            sigma* is within a factor ``refine_window`` of it).
        refine_window: see ``exact_rounds``.
        exact_budget_s: stop refining after this many seconds of exact norms (None:
            no limit).  Any subset of refinements gives a valid certificate.
        mc_batch: bound samples evaluated per draw of ``sparse-mc`` (a fresh uniform subset per
            draw; all of them when larger than the bound sample; docs/theory.md section 10).
        mc_draws, mc_seed: number of posterior draws and their seed for ``sparse-mc``
            (THEORY.md 4.5); ``mc_seed=None`` draws a fresh seed from the operating
            system (recorded in the result).
        mc_delta_fraction: ``sparse-mc`` holds at the same overall level delta, split as
            ``delta' = mc_delta_fraction * delta`` for the draws and ``delta - delta'`` for
            the PAC-Bayes step.
        mc_max_evals: number of grid sigma values ``sparse-mc`` evaluates.
        tradeoff: compute the global-sparsity trade-off curve.
        device: ``cpu`` or ``cuda`` for the forward pass and exact norms.
        progress: show progress bars.

    Returns:
        :class:`Certificate`.

    Returns also, in ``Certificate.warnings`` (and as a :class:`PriorValidityWarning`),
    any sign that the prior saw the bound sample: a certificate below the held-out
    error's lower confidence bound (then the value is not a certificate; ``to_dict()``
    records ``"valid": False``), or a prior equal to the network.

    Raises:
        ConfigError: any option out of range, checked before any work (delta, eta1,
            eta2, mc_delta_fraction outside (0, 1); mc_seed not an integer in
            [0, 2^63 - 1]; mc_draws, mc_batch, mc_max_evals < 1; exact_rounds < 0;
            refine_window < 1; a negative exact_budget_s or radius; active fractions
            outside (0, 1]; unknown device, method or prior_kind), fewer than 8 bound
            samples, ``test-set`` without test data, ``neyshabur2018`` without radius, a
            ``prior_kind`` the prior contradicts.
        NetworkError / ShapeMismatchError / DataError: bad network, prior of a
            different architecture, data that does not fit, labels out of range.

    Source: THEORY.md 4.2 (theorem), 4.3 (search), 6 (baselines).
    """
    from tqdm.auto import tqdm

    delta, mc_seed = _check_certify_options(
        delta=delta, methods=methods, eta1=eta1, eta2=eta2, radius=radius, sigma_grid=sigma_grid,
        active_fractions=active_fractions, exact_rounds=exact_rounds, refine_window=refine_window,
        exact_budget_s=exact_budget_s, mc_draws=mc_draws, mc_batch=mc_batch, mc_seed=mc_seed,
        mc_delta_fraction=mc_delta_fraction, mc_max_evals=mc_max_evals, device=device, prior_kind=prior_kind)
    X = torch.as_tensor(X)
    net = _as_network(network, "network", example_inputs=X)
    w0 = _as_network(prior, "prior", example_inputs=X)
    net.check_compatible(w0, "prior")
    ref = _as_network(init, "init", example_inputs=X) if init is not None else w0
    net.check_compatible(ref, "initialisation")
    prior_kind = _derive_prior_kind(prior_kind, net, w0, ref if init is not None else None)
    y = as_labels(y)
    X = X.reshape(X.shape[0], -1) if X.ndim > 2 else X
    net.check_data(X, y)
    m = int(X.shape[0])
    if m < MIN_BOUND_SAMPLES:
        raise ConfigError(
            f"the bound sample has {m} points; the PAC-Bayes-kl bound needs m >= {MIN_BOUND_SAMPLES} "
            "(use more bound samples or a smaller prior fraction)"
        )
    if "test-set" in methods and (X_test is None or y_test is None):
        raise ConfigError("method 'test-set' needs held-out data: pass X_test and y_test")
    if ("neyshabur2018" in methods or "neyshabur2018-init" in methods) and radius is None:
        raise ConfigError("neyshabur2018 needs the input-domain radius B: pass radius= (e.g. 28 for MNIST)")
    grid_s = sigma_grid or SigmaGrid()
    profiles = grid_s.resolved_profiles(net.depth)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    acts = net.forward(X, y, device=device)
    timings["forward"] = time.perf_counter() - t0
    bound_err = acts.error_rate(y)
    test_err = test_err_upper = m_test = test_lcb = None
    if X_test is not None and y_test is not None:
        Xt = torch.as_tensor(X_test)
        yt = as_labels(y_test)
        Xt = Xt.reshape(Xt.shape[0], -1) if Xt.ndim > 2 else Xt
        test_acts = net.forward(Xt, yt, device=device, keep_pre_activations=False)
        test_err = test_acts.error_rate(yt)
        m_test = int(Xt.shape[0])
        # rounding on the safe side: the upper bound counts possible errors, the lower
        # confidence bound only sure ones (docs/theory.md section 7)
        test_err_upper = test_acts.error_rate_upper(yt)
        test_lcb = error_lower_confidence(test_acts.error_rate_lower(yt), m_test, delta)

    results: dict[str, Any] = {}
    tradeoff_rows: list[dict[str, Any]] = []
    sparse_methods = [mth for mth in SPARSE_METHODS if mth in methods]
    grids_rec: dict[str, Any] = {"sigma": grid_s.to_dict()}
    if sparse_methods:
        grid = SparsityGrid.from_fractions(net.widths, active_fractions)
        grids_rec["sparsity"] = grid.to_dict()
        t0 = time.perf_counter()
        table = SparsityTable.build(acts, grid)
        consts = NoiseConstants.build(net.widths, grid.active, has_bias=net.has_bias, eta1=eta1,
                                      eta2=eta2, tight=tight_constants)
        grids_rec["noise"] = consts.to_dict()
        timings["sparsity"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        norms = uniform_norm_tables(net, grid, progress=progress)
        timings["uniform_norms"] = time.perf_counter() - t0
        uni_inp = PerSampleInputs(
            margins_lower=acts.margins_lower, norms=acts.hidden_norms, radii=table.radii,
            omega=tuple(norms.uniform_omega), beta=tuple(norms.uniform_beta), constants=consts,
        )
        t_search = 0.0
        starts: list[tuple[float, ...]] = [(1.0,) * net.depth]

        def run(method: str, inp: PerSampleInputs) -> _Eval:
            nonlocal t_search
            ts = time.perf_counter()
            obj = _Objective(inp, net, w0, profiles, m=m, delta=delta, grid=grid_s, eta1=eta1, eta2=eta2)
            ev = search_rescaling(obj, net.depth, starts) if rescale else obj(starts[0])
            t_search += time.perf_counter() - ts
            dist = math.sqrt(sum(obj.dist_sq(ev.lambdas)))
            results[method] = _method_result(method, _continuous(obj, ev), obj, dist, grid)
            starts.append(ev.lambdas)
            return ev

        if "dense" in methods or "sparse" in methods or "uniform-sparse" in methods:
            spec_beta = []
            for k in range(1, net.depth + 1):
                spec_beta.append(torch.full((1, 1, 1), norms.spectral[k - 1], dtype=torch.float64))
            dense_inp = replace(uni_inp.dense(), beta=tuple(spec_beta))
            if "dense" in methods:
                run("dense", dense_inp)
        if "uniform-sparse" in methods or "sparse" in methods:
            run("uniform-sparse", uni_inp)
            if "uniform-sparse" not in methods:
                results.pop("uniform-sparse")
        if "sparse" in methods or "sparse-mc" in methods:
            t0 = time.perf_counter()
            omega = exact_omega_tables(net, table, device=device)
            timings["exact_omega"] = time.perf_counter() - t0
            cache = ExactBetaCache(net, table, norms.uniform_beta, device=device)
            sp_inp = replace(uni_inp, omega=tuple(omega), beta=tuple(cache.beta))
            ts = time.perf_counter()
            obj = _Objective(sp_inp, net, w0, profiles, m=m, delta=delta, grid=grid_s, eta1=eta1, eta2=eta2)
            ev = search_rescaling(obj, net.depth, starts) if rescale else obj(starts[0])
            t_search += time.perf_counter() - ts
            quiet = None if progress else True  # None: tqdm switches itself off when not on a terminal
            with tqdm(desc="exact reduced norms", disable=quiet, leave=False, unit="sample") as bar:
                for _ in range(max(0, exact_rounds)):
                    sel, lv = _refinement_targets(obj, ev, window=refine_window)
                    if sel.numel() == 0:
                        break
                    bar.total = (bar.total or 0) + int(sel.numel())
                    bar.refresh()
                    n_new = cache.refine(lv, samples=sel, progress=None,
                                         budget_s=None if exact_budget_s is None
                                         else max(0.0, exact_budget_s - cache.seconds))
                    bar.update(int(sel.numel()))
                    if n_new == 0:
                        break
                    sp_inp = replace(sp_inp, beta=tuple(cache.beta))
                    ts = time.perf_counter()
                    obj = _Objective(sp_inp, net, w0, profiles, m=m, delta=delta, grid=grid_s,
                                     eta1=eta1, eta2=eta2)
                    # tables only got tighter: search again from the current optimum (and the others)
                    ev = search_rescaling(obj, net.depth, [ev.lambdas, *starts]) if rescale else obj(starts[0])
                    t_search += time.perf_counter() - ts
                    if exact_budget_s is not None and cache.seconds >= exact_budget_s:
                        break
            timings["exact_norms"] = cache.seconds
            grids_rec["exact_norms"] = {"samples_refined": int(cache.refined_samples()),
                                        "norms_computed": cache.n_exact, "window": refine_window,
                                        "budget_s": exact_budget_s}
            results["sparse"] = _method_result("sparse", _continuous(obj, ev), obj,
                                               math.sqrt(sum(obj.dist_sq(ev.lambdas))), grid)
            if "sparse-mc" in methods:
                t0 = time.perf_counter()
                results["sparse-mc"] = _sparse_mc(net, X, y, obj, results["sparse"], table, cache.beta, omega,
                                                  norms, consts, grid_s, len(profiles), delta, mc_delta_fraction,
                                                  mc_draws, mc_batch, mc_seed, mc_max_evals, device, progress)
                timings["sparse_mc"] = time.perf_counter() - t0
            if tradeoff and "sparse" in methods:
                tradeoff_rows = _tradeoff(sp_inp, grid, results["sparse"], net, w0, m=m, delta=delta,
                                          grid_s=grid_s, n_profiles=len(profiles), eta1=eta1, eta2=eta2)
        timings["search"] = t_search
        if "sparse" not in methods:
            results.pop("sparse", None)

    baseline_methods = [mth for mth in BASELINE_METHODS if mth in methods]
    if baseline_methods:
        t0 = time.perf_counter()
        from . import baselines as bl

        if "neyshabur2018" in methods:
            results["neyshabur2018"] = bl.neyshabur2018_bound(net, X, y, radius=float(radius), delta=delta,
                                                              prior=None, device=device)
        if "neyshabur2018-init" in methods:
            results["neyshabur2018-init"] = bl.neyshabur2018_bound(net, X, y, radius=float(radius),
                                                                   delta=delta, prior=ref, device=device)
        if "bartlett2017" in methods:
            results["bartlett2017"] = bl.bartlett2017_bound(net, X, y, delta=delta, reference=ref,
                                                            device=device)
        if "test-set" in methods:
            results["test-set"] = bl.test_set_result(test_err_upper, m_test, delta)
        timings["baselines"] = time.perf_counter() - t0

    cert = Certificate(
        network=net.describe(), widths=net.widths, prior_kind=prior_kind, m=m, delta=delta, eta1=eta1,
        eta2=eta2, bound_sample_error=bound_err, test_error=test_err, m_test=m_test,
        test_error_lower_confidence=test_lcb, results=results, tradeoff=tradeoff_rows,
        grids=grids_rec, timings=timings, environment=environment_record(),
    )
    cert.warnings = _validity_warnings(cert, net, w0)
    for w in cert.warnings:
        warnings.warn(w["message"], PriorValidityWarning, stacklevel=2)
    return cert


def _sparse_mc(net: ReLUNetwork, X: torch.Tensor, y: torch.Tensor, obj: _Objective, sparse: MethodCertificate,
               table: SparsityTable, beta_w: Sequence[torch.Tensor], omega_w: Sequence[torch.Tensor],
               norms: NormTables, consts: NoiseConstants, grid_s: SigmaGrid, n_profiles: int, delta: float,
               fraction: float, n_draws: int, batch: int, seed: int | None, max_evals: int, device: str | None,
               progress: bool):
    """``sparse-mc`` for the network certified by ``sparse`` (same rescaling lambda and
    profile c, fixed before the draws), at overall level delta split into delta'
    (draws) and delta - delta' (PAC-Bayes)."""
    from .montecarlo import sparse_mc

    if not (0.0 < fraction < 1.0):
        raise ConfigError(f"mc_delta_fraction must lie in (0, 1), got {fraction}")
    lam = sparse.rescaling
    dist = obj.dist_sq(lam)
    return sparse_mc(
        net, X, y, kl_dist_sq=dist, kl_profile=sparse.profile,
        noise_profile=tuple(c / v for c, v in zip(sparse.profile, lam, strict=True)),
        distance_to_prior=math.sqrt(sum(dist)), table=table, beta_w=beta_w, omega_w=omega_w,
        uniform_beta=norms.uniform_beta, uniform_omega=norms.uniform_omega, consts=consts,
        start_j=sparse.grid_index, grid_s=grid_s, n_profiles=n_profiles, delta=delta * (1.0 - fraction),
        delta_mc=delta * fraction, n_draws=n_draws, batch=batch, seed=seed, max_evals=max_evals, device=device,
        progress=progress,
    )


def _tradeoff(inp: PerSampleInputs, grid: SparsityGrid, sparse: MethodCertificate, net: ReLUNetwork,
              w0: ReLUNetwork, *, m: int, delta: float, grid_s: SigmaGrid, n_profiles: int,
              eta1: float, eta2: float) -> list[dict[str, Any]]:
    """Global-sparsity trade-off: every sample uses the same active fraction f at every
    hidden layer (THEORY.md 4.2, Consequences).  Same rescaling and profile as ``sparse``.

    Each row is the bound at that f, chosen at one common informative level for all f:
    grid points whose empirical term is within ``INFORMATIVE_WINDOW`` of the smallest over
    every f and sigma (or the smallest kl bound where it is non-vacuous).  A level where no
    grid point reaches it reports ``unclipped = None`` (no comparable bound) and
    ``certifiable = False``."""
    obj = _Objective(inp, net, w0, (sparse.profile,), m=m, delta=delta, grid=grid_s, eta1=eta1, eta2=eta2)
    dist = obj.dist_sq(sparse.rescaling)
    eff = tuple(c / v for c, v in zip(sparse.profile, sparse.rescaling, strict=True))
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
        star = max_certifiable_sigma(inp, eff, fixed_levels=fixed, grid_sigmas=grid_s.sigma(grid_s.js()))
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


__all__ = [
    "ALL_METHODS",
    "CERT_SLACK",
    "Certificate",
    "MethodCertificate",
    "certify",
]
