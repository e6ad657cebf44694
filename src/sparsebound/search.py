"""The search over sigma and layer rescalings behind the analytic methods (THEORY.md 4.2-4.3).

* :class:`RecursionUnits`: exact power-of-two units in which the recursions of THEORY.md 4.1
  run far from underflow and overflow (docs/theory.md section 7, "Recursions");
* :class:`Objective`: the certificate's value as a function of the layer rescaling
  ``lambda`` (``prod lambda_k = 1``, the same function; docs/theory.md Lemma 8.1), the best
  grid sigma and profile at each ``lambda`` (:class:`Evaluation`);
* :func:`search_rescaling` (pattern search in ``log2 lambda``) from the
  :func:`canonical_rescalings` of the function's rescaling class; :func:`pow2_rescaled`
  (exact power-of-two rescalings, used with biases and by ``sparse-mc``);
* :func:`continuous_sigma_star` (the reported per-sample sigma*) and
  :func:`refinement_targets` (which samples the exact reduced norms of ``sparse`` refine).

Any W computing the function is allowed by the theorem, so the search needs no union
bound; sigma is chosen on the a-priori grid with its weights (THEORY.md 4.3).

Source: THEORY.md 4.1-4.3; docs/theory.md sections 7 and 8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .certification import CERT_SLACK, PerSampleInputs, SigmaStar, bound_curve, max_certifiable_sigma
from .network import ReLUNetwork, torch_threads
from .noise import NoiseConstants
from .pacbayes import SigmaGrid
from .rounding import norm_upper, pow2, scale_pow2, shift_for

__all__ = ["RESCALING_BOX_OCTAVES", "Evaluation", "Objective", "RecursionUnits", "canonical_rescalings",
           "continuous_sigma_star", "pow2_rescaled", "refinement_targets", "search_rescaling"]


# --------------------------------------------------------------------------------------
# units of the recursions (docs/theory.md section 7, "Recursions")
# --------------------------------------------------------------------------------------

#: Every D, E, L, R the recursions evaluate must exceed 2^_CHAIN_FLOOR_LOG2 in the
#: normalised units, so that underflow cannot disturb them beyond the 1e-6 slack.
_CHAIN_FLOOR_LOG2 = -900.0
#: The smallest sigma any evaluation uses (the continuous bisection starts at 1e-12).
_SIGMA_FLOOR = 1e-12
#: Largest exponent step between the units of consecutive layers.
_MAX_UNIT_STEP = 1000


@dataclass(frozen=True)
class RecursionUnits:
    """Exact power-of-two units for the certification recursions (docs/theory.md section 7).

    Sample n's layer-k quantities (``n_k``, ``rho_k``, ``D_k``, ``E_k``, ``L_k``, ``R_k``; the
    margin at k = K) are expressed in units of ``2^(layer[k] - sample[n])``, and ``beta_k``,
    ``omega_k`` and the noise ``sigma_k`` in units of ``2^(layer[k] - layer[k-1])``.  The
    recursions of THEORY.md 4.1 are homogeneous in these units (every term of D_k, E_k, L_k,
    R_k is a layer-(k-1) quantity times beta_k, omega_k or sigma_k), so a sample is certified
    in the new units iff it is in the old ones; the conversion multiplies by powers of two,
    which is exact (rounded outward where a result leaves the normal range).  The sample
    exponent puts ``n_0`` in [0.5, 1); the layer exponents put the median sample's activation
    norm (and the median largest logit) near 1.  Any choice of exponents is valid; this one
    keeps the recursions far from underflow and overflow for any scale of inputs and weights.

    Attributes:
        sample: ``(N,)`` int64 exponents.
        layer: K+1 exponents, ``layer[0] = 0``.
    """

    sample: torch.Tensor
    layer: tuple[int, ...]

    @classmethod
    def identity(cls, n: int, depth: int) -> RecursionUnits:
        return cls(sample=torch.zeros(n, dtype=torch.int64), layer=(0,) * (depth + 1))

    @classmethod
    def from_activations(cls, hidden_norms: torch.Tensor, outputs: torch.Tensor) -> RecursionUnits:
        """Units from a forward pass (``Activations.hidden_norms`` ``(N, K)``, ``outputs``)."""
        n0 = hidden_norms[:, 0]
        _, e = torch.frexp(n0)
        r = torch.where(n0 > 0, -e.to(torch.int64), torch.zeros_like(e, dtype=torch.int64))
        layer = [0]
        cols = [hidden_norms[:, k] for k in range(1, hidden_norms.shape[1])]
        cols.append(outputs.abs().amax(dim=1))
        for v in cols:
            pos = (v > 0) & torch.isfinite(v)
            if bool(pos.any()):
                lv = torch.log2(v[pos]) + r[pos].to(torch.float64)
                L = round(float(lv.median()))
            else:
                L = layer[-1]
            layer.append(max(layer[-1] - _MAX_UNIT_STEP, min(layer[-1] + _MAX_UNIT_STEP, L)))
        return cls(sample=r, layer=tuple(layer))

    def profile_factors(self) -> tuple[float, ...]:
        """``p_k = 2^(layer[k-1] - layer[k])``: the noise of layer k in the new units is ``sigma_k p_k``."""
        return tuple(math.ldexp(1.0, self.layer[k - 1] - self.layer[k]) for k in range(1, len(self.layer)))

    def apply(self, inp: PerSampleInputs) -> PerSampleInputs:
        """``inp`` in these units (radii and margins rounded down, norms up, where inexact)."""
        with torch_threads(1):  # element-wise passes: one thread is fastest on shared cores
            return self._apply(inp)

    def _apply(self, inp: PerSampleInputs) -> PerSampleInputs:
        K = inp.depth
        r, L = self.sample, self.layer
        margins = scale_pow2(inp.margins_lower, r - L[K], "down")
        norms = torch.stack([scale_pow2(inp.norms[:, c], r - L[c], "up") for c in range(K)], dim=1)
        radii = tuple(scale_pow2(inp.radii[k - 1], (r - L[k])[:, None], "down") for k in range(1, K))
        beta = tuple(scale_pow2(inp.beta[k - 1], L[k - 1] - L[k], "up") for k in range(1, K + 1))
        omega = tuple(scale_pow2(inp.omega[k - 1], L[k - 1] - L[k], "up") for k in range(1, K))
        return replace(inp, margins_lower=margins, norms=norms, radii=radii, beta=beta, omega=omega)


def _min_constants(consts: NoiseConstants) -> list[float]:
    """Per layer the smallest positive noise constant the recursions multiply a previous
    D (or n_0) by: g, g' and, for hidden layers, h' and h at the sparse levels."""
    out = []
    for lc in consts.layers:
        vals = [float(np.min(lc.g)), float(np.min(lc.gp))]
        h = np.asarray(lc.h, dtype=np.float64)
        if h.size > 1:
            vals.append(float(np.min(h[1:])))
        if lc.hp > 0:
            vals.append(float(lc.hp))
        out.append(min(v for v in vals if v > 0) if any(v > 0 for v in vals) else 0.0)
    return out


# --------------------------------------------------------------------------------------
# the search over sigma and rescalings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """The objective at one rescaling: the best sigma profile (``profile_index``), its per-sample
    sigma* and levels (``star``), the bound over the sigma grid (``curve``, a
    :class:`~sparsebound.certification.BoundCurve`), the chosen grid point (``best``) and the
    unclipped certificate there (``value``)."""

    lambdas: tuple[float, ...]
    profile_index: int
    star: SigmaStar
    curve: Any
    best: int
    value: float


class Objective:
    """Certificate value as a function of the rescaling (bias-free networks).

    ``inp`` is in the units ``units`` (:class:`RecursionUnits`); layer k of the rescaled
    network ``lambda W`` at noise ``sigma c_k`` runs the recursions of W's tables with the
    per-layer multiplier ``c_k p_k / lambda_k`` (Lemma 8.1 and the units' factors ``p``).
    """

    def __init__(self, inp: PerSampleInputs, net: ReLUNetwork, prior: ReLUNetwork,
                 profiles: tuple[tuple[float, ...], ...], *, m: int, delta: float,
                 grid: SigmaGrid, eta1: float, eta2: float, units: RecursionUnits | None = None,
                 dist_cache: dict[tuple[int, float], float] | None = None) -> None:
        self.inp = inp
        self.profiles = profiles
        self.m, self.delta, self.grid, self.eta1, self.eta2 = m, delta, grid, eta1, eta2
        self.bias = net.has_bias
        K = net.depth
        self.p = units.profile_factors() if units is not None else (1.0,) * K
        net.check_compatible(prior)
        # (the network's, the prior's) operator per layer: distances go through them
        self.ops = list(zip(net.operators, prior.operators, strict=True))
        self.grid_sigmas = grid.sigma(grid.js())
        self.cache: dict[tuple, Evaluation] = {}
        self._norms_a: list[float] | None = None
        # per-layer distance bounds by factor, shareable between objectives of one network and prior
        self._dist_cache: dict[tuple[int, float], float] = dist_cache if dist_cache is not None else {}

    def eff(self, prof: Sequence[float], lam: Sequence[float]) -> tuple[float, ...]:
        """Per-layer multipliers of sigma in the recursions: ``c_k p_k / lambda_k``."""
        return tuple(c * p / v for c, p, v in zip(prof, self.p, lam, strict=True))

    def dist_sq(self, lam: Sequence[float]) -> list[float]:
        """Upper bounds of ``||lambda_k W_k - W0_k||_F^2`` per layer (outward rounding,
        ``rounding.frobenius_sq_distance_upper`` through each layer's operator; docs/theory.md
        section 7)."""
        out = []
        with torch_threads(1):  # element-wise passes: one thread is fastest on shared cores
            if self._norms_a is None:
                self._norms_a = [a.frobenius_norm_upper() for a, _ in self.ops]
            for k, (v, (a, b), na) in enumerate(zip(lam, self.ops, self._norms_a, strict=True)):
                key = (k, float(v))  # a layer's distance depends on its own factor only
                if key not in self._dist_cache:
                    self._dist_cache[key] = a.frobenius_sq_distance_upper(b, v, norm=na)
                out.append(self._dist_cache[key])
        return out

    def sigma_floor(self, prof: Sequence[float], lam: Sequence[float]) -> float:
        """The smallest sigma at which the recursions are evaluated for this profile and
        rescaling: below it some exact ``D_k, E_k, L_k, R_k`` could fall under ``2^-900`` in the
        normalised units (docs/theory.md Lemma 7.4).  With ``gmin_k`` the smallest noise
        constant of layer k, ``D_k >= 0.5 prod_{j<=k} sigma c_j p_j gmin_j / lambda_j``; the floor
        is the smallest sigma making that at least ``2^-900`` for every k (0 when the grid's
        smallest value is far above it, ``inf`` for a non-positive or non-finite multiplier).

        A profile whose first layers carry no noise (``c_1 = .. = c_{k0-1} = 0``, docs/theory.md
        12.2) has ``D, E, L, R`` exactly 0 up to layer ``k0 - 1``; the chain then starts at layer
        ``k0`` from ``n_{k0-1}``, bounded below by half the smallest positive computed norm of that
        layer (samples with ``n_{k0-1} = 0`` compute exact zeros).  A zero entry after a noisy
        layer gives ``inf`` (not supported: nothing is evaluated)."""
        gmin = _min_constants(self.inp.constants)
        eff = self.eff(prof, lam)
        k0 = next((k for k, c in enumerate(prof) if c != 0), None)
        if k0 is None:
            return math.inf
        start = -1.0  # log2 of the chain's starting norm: n_0 >= 0.5 in the units
        if k0 > 0:
            col = self.inp.norms[:, k0]
            pos = col[col > 0]
            if pos.numel() == 0:
                return 0.0  # every sample has n_{k0-1} = 0: exact zeros, nothing certified
            nmin = float(pos.min())
            if not (nmin >= 2.0 ** -1000):
                return math.inf
            start = math.log2(nmin) - 1.0
        need = -math.inf
        acc = start
        for i, k in enumerate(range(k0, len(eff)), start=1):
            c, g = eff[k], gmin[k]
            if not (c > 0 and g > 0 and math.isfinite(c)):
                return math.inf
            acc += math.log2(c) + math.log2(g)
            need = max(need, (_CHAIN_FLOOR_LOG2 - acc) / i)
        return 2.0 ** min(need, 1000.0) if need > -1000.0 else 0.0

    def __call__(self, lam: tuple[float, ...]) -> Evaluation:
        # points that differ only by the rounding of their logarithms share an entry (two
        # searches from different starts do not: their lattices are not 2^-24 octave apart)
        key = tuple(round(math.log2(v) * 2.0**24) for v in lam)
        if key in self.cache:
            return self.cache[key]
        best: Evaluation | None = None
        for pi, prof in enumerate(self.profiles):
            # evaluate only grid values where the recursions cannot underflow; a sample
            # certified at such a value is certified at every smaller one (Proposition 5.3)
            floor = self.sigma_floor(prof, lam)
            gs = self.grid_sigmas[self.grid_sigmas >= floor]
            if gs.size:
                star = max_certifiable_sigma(self.inp, self.eff(prof, lam), grid_sigmas=gs)
            else:  # nothing can be evaluated: nothing is certified
                star = SigmaStar(torch.zeros(self.inp.n_samples, dtype=torch.float64),
                                 torch.zeros(self.inp.n_samples, max(self.inp.depth - 1, 0), dtype=torch.int64),
                                 tuple(prof))
            curve = bound_curve(star.sigma_star, self.dist_sq(lam), prof, m=self.m, delta=self.delta,
                                grid=self.grid, n_profiles=len(self.profiles), eta1=self.eta1,
                                eta2=self.eta2)
            b = curve.best()
            ev = Evaluation(lambdas=lam, profile_index=pi,
                       star=SigmaStar(star.sigma_star, star.levels, prof), curve=curve, best=b,
                       value=curve.value())
            if best is None or ev.value < best.value:
                best = ev
        assert best is not None
        self.cache[key] = best
        return best


def continuous_sigma_star(obj: Objective, ev: Evaluation) -> Evaluation:
    """Replace the grid-resolution sigma* by the continuous bisection (for reporting).

    The chosen grid point, rescaling and profile stay; L_aug at the chosen sigma is
    recomputed from the continuous sigma* (never smaller than the grid one's
    certified set, since the continuous value is at least the grid value up to
    bisection precision) and the curve is rebuilt from it.
    """
    prof = obj.profiles[ev.profile_index]
    floor = obj.sigma_floor(prof, ev.lambdas)
    lo = max(_SIGMA_FLOOR, floor * (1.0 + 1e-9))
    if lo >= 10.0:
        return ev
    star = max_certifiable_sigma(obj.inp, obj.eff(prof, ev.lambdas), sigma_min=lo)
    # keep the larger of the two per sample (both are certified values)
    s = torch.maximum(star.sigma_star, ev.star.sigma_star)
    lv = torch.where((star.sigma_star >= ev.star.sigma_star)[:, None], star.levels, ev.star.levels)
    curve = bound_curve(s, obj.dist_sq(ev.lambdas), prof, m=obj.m, delta=obj.delta, grid=obj.grid,
                        n_profiles=len(obj.profiles), eta1=obj.eta1, eta2=obj.eta2)
    b = curve.best()
    return Evaluation(lambdas=ev.lambdas, profile_index=ev.profile_index, star=SigmaStar(s, lv, prof),
                 curve=curve, best=b, value=curve.value())


def refinement_targets(obj: Objective, ev: Evaluation, window: float) -> tuple[torch.Tensor, torch.Tensor]:
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
    sub = obj.inp.subset(idx)
    _, lv, _ = greedy_certify(sub, torch.full((idx.numel(),), sig / (1.0 - CERT_SLACK),
                                             dtype=torch.float64), obj.eff(prof, ev.lambdas))
    # closest to certified first (matters when a time budget cuts the list)
    order = torch.argsort(star[idx], descending=True)
    return idx[order], lv[order]


def _lambdas_from_logs(logs: Sequence[float]) -> tuple[float, ...]:
    lam = [2.0**v for v in logs]
    lam.append(1.0 / math.prod(lam))
    return tuple(lam)


#: Half-width, in octaves per layer, of the box of rescalings searched around the
#: canonical (prior-aligned) rescaling.
RESCALING_BOX_OCTAVES = 8.0


def _pattern_search(obj: Objective, start: Evaluation, center: Sequence[float], step: float, min_step: float,
                    max_octaves: float) -> Evaluation:
    """Pattern search in ``log2 lambda`` (K coordinates summing to 0) from ``start``: the moves
    are ``+-step`` octaves traded between two layers (``e_i - e_j``, every ordered pair),
    first improvement taken, the step halved when none improves, down to ``min_step``;
    every coordinate stays within ``max_octaves`` of ``log2 center``."""
    K = len(start.lambdas)
    logs = [math.log2(v) for v in start.lambdas]
    ctr = [math.log2(v) for v in center]
    best = start
    moves = [(i, j) for i in range(K) for j in range(K) if i != j]
    while step >= min_step:
        improved = False
        for i, j in moves:
            trial = list(logs)
            trial[i] += step
            trial[j] -= step
            if max(abs(t - c) for t, c in zip(trial, ctr, strict=True)) > max_octaves + 1e-9:
                continue
            ev = obj(_lambdas_from_logs(trial[:-1]))
            if ev.value < best.value - 1e-12:
                best, logs, improved = ev, [math.log2(v) for v in ev.lambdas], True
                break
        if not improved:
            step /= 2
    return best


def search_rescaling(obj: Objective, depth: int, starts: Sequence[tuple[float, ...]], *,
                     center: Sequence[float] | None = None, max_octaves: float = RESCALING_BOX_OCTAVES,
                     min_step: float = 1.0 / 32, step: float = 1.0, search: bool = True,
                     multi_start: bool = True) -> Evaluation:
    """Search over layer rescalings ``lambda`` (``prod lambda_k = 1``) for the smallest certificate.

    Every start is evaluated; then a pattern search (:func:`_pattern_search`: moves of
    ``step`` octaves between two layers, halved down to ``min_step``, within ``max_octaves``
    of ``center`` in every layer, default the best start) runs from each start
    (``multi_start``) or from the best one, and the best result is returned.  Any W is
    allowed by the theorem, so the search needs no union bound (THEORY.md 4.2,
    Consequences); the objective is the unclipped certificate.  With starts and center that
    depend on the function's rescaling class only (:func:`canonical_rescalings`), every
    rescaled representative of a bias-free network runs the same search (docs/theory.md
    section 8).  ``search=False``, biases, K < 2, or no finite value at any start (a distance
    to the prior beyond the float64 range): the best start only.
    """
    evals = [obj(tuple(s)) for s in starts]
    best = min(evals, key=lambda e: e.value)
    if obj.bias or depth < 2 or not search or not math.isfinite(best.value):
        return best
    ctr = center if center is not None else best.lambdas
    seeds: list[Evaluation] = []
    for ev in (evals if multi_start else [best]):
        if math.isfinite(ev.value) and all(ev is not s for s in seeds):
            seeds.append(ev)
    found = [_pattern_search(obj, ev, ctr, step, min_step, max_octaves) for ev in seeds]
    return min(found, key=lambda e: e.value)


def canonical_rescalings(net: ReLUNetwork, prior: ReLUNetwork) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Two layer rescalings of ``net`` that depend only on the function's rescaling class.

    * balanced: every rescaled weight matrix ``lambda_k W_k`` has the same Frobenius norm
      (the geometric mean of the ``||W_k||_F``);
    * prior-aligned: the minimiser of ``sum_k ||lambda_k W_k - W0_k||_F^2`` over
      ``prod lambda_k = 1`` (the KL at a common sigma), found from the balanced point.

    For a representative ``mu W`` (``prod mu_k = 1``) both are ``lambda / mu`` (the inputs of
    the computation, ``||mu_k W_k||_F`` up to their geometric mean, the cosines between
    ``W_k`` and ``W0_k`` and ``||W0_k||_F``, do not change), so ``lambda mu W`` is the same
    network (docs/theory.md section 8).  A prior-aligned point within ``1e-6`` octave of a
    power-of-two rescaling (the identity included) is taken to be exactly that one, so that
    a posterior equal to its prior keeps ``KL = 0``.  Weights only (biases do not enter).
    Returns the identity twice for a network with an all-zero layer.

    Returns:
        ``(prior_aligned, balanced)``, each K positive floats.
    """
    from scipy.optimize import minimize

    K = net.depth
    ident = (1.0,) * K
    log_f: list[float] = []
    log_g: list[float] = []
    cos: list[float] = []
    for w, w0 in zip(net.weights, prior.weights, strict=True):
        f = float(norm_upper(w.reshape(-1), 0))
        g = float(norm_upper(w0.reshape(-1), 0))
        if not (f > 0 and math.isfinite(f) and math.isfinite(g)):
            return ident, ident
        log_f.append(math.log2(f))
        log_g.append(math.log2(g) if g > 0 else -math.inf)
        if g > 0:  # cosine from copies scaled by powers of two (no overflow or underflow)
            a = w * pow2(shift_for(w.abs().amax()))
            b = w0 * pow2(shift_for(w0.abs().amax()))
            c = float((a * b).sum()) / (float(a.norm()) * float(b.norm()))
            cos.append(max(-1.0, min(1.0, c)) if math.isfinite(c) else 0.0)
        else:
            cos.append(0.0)
    mbar = sum(log_f) / K

    balanced = _lambdas_from_logs([mbar - log_f[k] for k in range(K - 1)])
    # relative to the balanced point every layer has norm 2^mbar: minimise
    # sum_k 4^t_k - 2 rho_k 2^t_k, rho_k = ||W0_k|| cos_k / 2^mbar, subject to sum t_k = 0
    rho = np.array([c * 2.0 ** max(-500.0, min(500.0, lg - mbar)) if math.isfinite(lg) else 0.0
                    for c, lg in zip(cos, log_g, strict=True)])

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        t = np.append(u, -u.sum())
        e = np.exp2(t)
        val = float(np.sum(e * e - 2.0 * rho * e))
        gt = (2.0 * e * e - 2.0 * rho * e) * math.log(2.0)
        return val, gt[:-1] - gt[-1]

    res = minimize(fun, np.zeros(K - 1), jac=True, method="L-BFGS-B", bounds=[(-40.0, 40.0)] * (K - 1),
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000})
    u = res.x if np.all(np.isfinite(res.x)) else np.zeros(K - 1)
    ln2 = math.log(2.0)
    for _ in range(8):  # Newton steps polish the optimum to rounding level
        t = np.append(u, -u.sum())
        e = np.exp2(t)
        h = (4.0 * e * e - 2.0 * rho * e) * ln2 * ln2
        H = np.diag(h[:-1]) + h[-1]
        _, grad = fun(u)
        if not (np.all(np.isfinite(H)) and np.all(np.linalg.eigvalsh(H) > 0)):
            break
        step = np.linalg.solve(H, grad)
        if not np.all(np.isfinite(step)):
            break
        u = np.clip(u - step, -40.0, 40.0)
        if float(np.abs(step).max()) < 1e-15:
            break
    t = np.append(u, -u.sum())
    logs = [mbar + float(t[k]) - log_f[k] for k in range(K)]
    near = [round(v) for v in logs]
    if sum(near) == 0 and all(abs(v - n) <= 1e-6 for v, n in zip(logs, near, strict=True)):
        # the prior-aligned point is a power-of-two rescaling up to the optimiser's precision:
        # take it exactly (a posterior equal to its prior, given with any power-of-two layer
        # scales, then keeps KL = 0)
        return tuple(math.ldexp(1.0, n) for n in near), balanced
    return _lambdas_from_logs(logs[:-1]), balanced


def pow2_rescaled(net: ReLUNetwork, exponents: Sequence[int]) -> ReLUNetwork | None:
    """``net`` with layer k scaled by ``2^n_k`` (``sum n_k = 0``; biases by ``2^(n_1+..+n_k)``),
    or None if some product is not exact (a result left the normal float64 range).  The
    result is exactly the same real network as ``lambda W`` with ``lambda_k = 2^n_k``, so it
    computes exactly ``f_W`` (positive homogeneity of relu)."""
    ns = [int(v) for v in exponents]
    if sum(ns) != 0 or len(ns) != net.depth:
        raise ValueError("need one integer exponent per layer, summing to 0")
    if all(v == 0 for v in ns):
        return net
    cum = np.cumsum(ns)
    ws, bs = [], [] if net.biases is not None else None
    for k, w in enumerate(net.weights):
        f = math.ldexp(1.0, ns[k]) if abs(ns[k]) <= 1000 else None
        if f is None:
            return None
        v = w * f
        if not (bool(torch.isfinite(v).all()) and torch.equal(v * math.ldexp(1.0, -ns[k]), w)):
            return None
        ws.append(v)
        if bs is not None:
            fb = math.ldexp(1.0, int(cum[k])) if abs(int(cum[k])) <= 1000 else None
            if fb is None:
                return None
            b = net.biases[k] * fb
            if not (bool(torch.isfinite(b).all()) and torch.equal(b * math.ldexp(1.0, -int(cum[k])), net.biases[k])):
                return None
            bs.append(b)
    return ReLUNetwork(ws, bs)
