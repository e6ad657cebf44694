"""Per-sample noise certification and the largest certifiable sigma (THEORY.md 4.1).

Given, for every bound sample, its margin M, hidden norms n_k, sparse local
radii rho_k on a grid of sparsity levels, upper bounds omega_bar and beta_bar
of the reduced norms at the witness sets, and the noise constants of section 3,
a sample is *certified* for a noise level sigma (per layer ``sigma_k = sigma c_k``)
iff some sparsity vector s on the grid passes

    forward:  D_k = beta_k D_{k-1} + sigma_k g_k (n_{k-1} + D_{k-1}),
              L_k = omega_k D_{k-1} + sigma_k h_k (n_{k-1} + D_{k-1})
    reverse:  E_k = (beta_k + sigma_k mu_k) E_{k-1} + sigma_k g'_k (n_{k-1} + D_{k-1} + E_{k-1}),
              R_k = (omega_k + sigma_k muinf_k) E_{k-1} + sigma_k h'_k (n_{k-1} + D_{k-1} + E_{k-1})
    rho_k >= L_k + R_k for every hidden k with s_k > 0,  and  M > sqrt(2) (D_K + E_K).

**Greedy choice of s is optimal.**  For a fixed sigma, take at each layer the
largest grid level whose radius condition holds given the levels chosen
before.  Every quantity is monotone in the levels (larger s_k shrinks J_k and
so beta, g, mu, g' and D_k, E_k; it grows omega_k, h_k, muinf_k and lowers
rho_k; all tables are made monotone), so the greedy vector dominates any
feasible vector layer by layer and passes whenever any vector passes
(docs/theory.md, "Greedy sparsity is optimal").  All of D, E, L, R grow with
sigma, hence the certified set of sigma is an interval ``[0, sigma*(x)]``,
found by bisection in log-space, vectorised over samples.

Every table is indexed ``[n, t_k, t_{k-1}]`` by grid positions (t = 0 is the
dense level s = 0); layer 1 has a single column position (all inputs) and the
output layer a single row position (all classes).

Source: THEORY.md sections 4.1 and 4.3; Muthukumar & Sulam, COLT 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .network import torch_threads
from .noise import NoiseConstants

SQRT2 = math.sqrt(2.0)

#: A grid sigma is certified for a sample only if sigma <= (1 - CERT_SLACK) * sigma*(x),
#: sigma*(x) the certified (lower) end of the bisection (THEORY.md 4.1).
CERT_SLACK = 1e-6

#: Reporting convention for vacuous bounds (all methods, baselines too): the
#: chosen hyper-parameter keeps the empirical term within this of its minimum.
INFORMATIVE_WINDOW = 0.1


@dataclass(frozen=True)
class PerSampleInputs:
    """Everything the recursions need, for N samples (float64 CPU tensors).

    Attributes:
        margins_lower: ``(N,)`` lower bounds of the exact margins M(x).
        norms: ``(N, K)`` upper bounds of n_{k-1}, k = 1..K (column k-1).
        radii: K-1 tensors ``(N, T_k)``: lower bounds of rho_k (inf at t = 0).
        omega: K-1 tensors ``(N or 1, T_k, T_{k-1})``: upper bounds of omega_k
            (0 at t_k = 0).
        beta: K tensors ``(N or 1, T_k, T_{k-1})``: upper bounds of beta_k.
        constants: the :class:`NoiseConstants` for the same grid.
    """

    margins_lower: torch.Tensor
    norms: torch.Tensor
    radii: tuple[torch.Tensor, ...]
    omega: tuple[torch.Tensor, ...]
    beta: tuple[torch.Tensor, ...]
    constants: NoiseConstants

    @property
    def n_samples(self) -> int:
        return int(self.margins_lower.shape[0])

    @property
    def depth(self) -> int:
        return len(self.beta)

    def dense(self) -> PerSampleInputs:
        """Restrict every table to the dense level s = 0 (the norm-based certificate)."""
        return replace(
            self,
            radii=tuple(r[:, :1] for r in self.radii),
            omega=tuple(o[:, :1, :1] for o in self.omega),
            beta=tuple(b[:, :1, :1] for b in self.beta),
            constants=_restrict_constants(self.constants),
        )

    def subset(self, idx: torch.Tensor) -> PerSampleInputs:
        """Rows ``idx`` of every per-sample table."""

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[0] == 1 else t[idx]

        return replace(
            self,
            margins_lower=self.margins_lower[idx],
            norms=self.norms[idx],
            radii=tuple(r[idx] for r in self.radii),
            omega=tuple(pick(o) for o in self.omega),
            beta=tuple(pick(b) for b in self.beta),
        )


def _restrict_constants(nc: NoiseConstants) -> NoiseConstants:
    from .noise import LayerConstants

    layers = []
    for lc in nc.layers:
        layers.append(
            LayerConstants(
                k=lc.k, sparsity=lc.sparsity[:1], active=lc.active[:1],
                col_active=lc.col_active[:1], g=lc.g[:1], h=lc.h[:1],
                mu=lc.mu[:1, :1], muinf=lc.muinf[:1, :1], gp=lc.gp[:1], hp=lc.hp,
            )
        )
    return replace(nc, layers=tuple(layers))


@dataclass
class _Tensors:
    """Constants of one layer as torch tensors (built once per call)."""

    g: torch.Tensor
    h: torch.Tensor
    gp: torch.Tensor
    mu: torch.Tensor
    muinf: torch.Tensor
    hp: float


def _layer_tensors(nc: NoiseConstants) -> list[_Tensors]:
    out = []
    for lc in nc.layers:
        out.append(
            _Tensors(
                g=torch.as_tensor(lc.g, dtype=torch.float64),
                h=torch.as_tensor(lc.h, dtype=torch.float64),
                gp=torch.as_tensor(lc.gp, dtype=torch.float64),
                mu=torch.as_tensor(lc.mu, dtype=torch.float64),
                muinf=torch.as_tensor(lc.muinf, dtype=torch.float64),
                hp=float(lc.hp),
            )
        )
    return out


@dataclass
class _Prepared:
    """Tables re-laid-out for fast per-sample gathers (built once per search step).

    ``omega_rows[k]``: ``(T', T)`` shared or ``(N, T', T)`` per sample, contiguous, so
    that the row of every sample's previous level is one contiguous gather;
    ``beta_flat[k]``: ``(T T')`` shared or ``(N, T T')`` per sample.
    """

    consts: list[_Tensors]
    omega_rows: list[torch.Tensor]
    omega_shared: list[bool]
    muinf_rows: list[torch.Tensor]
    beta_flat: list[torch.Tensor]
    beta_shared: list[bool]
    mu_flat: list[torch.Tensor]
    tprev_size: list[int]
    radii: list[torch.Tensor]


def _prepare(inp: PerSampleInputs) -> _Prepared:
    consts = _layer_tensors(inp.constants)
    om_rows, om_sh, mi_rows, b_flat, b_sh, mu_flat, tps = [], [], [], [], [], [], []
    for k in range(1, inp.depth + 1):
        c = consts[k - 1]
        b = inp.beta[k - 1]
        tps.append(int(b.shape[2]))
        b_sh.append(b.shape[0] == 1)
        b_flat.append(b[0].reshape(-1).contiguous() if b.shape[0] == 1 else b.reshape(b.shape[0], -1).contiguous())
        mu_flat.append(c.mu.reshape(-1).contiguous())
        if k < inp.depth:
            o = inp.omega[k - 1]
            om_sh.append(o.shape[0] == 1)
            om_rows.append(o[0].T.contiguous() if o.shape[0] == 1 else o.transpose(1, 2).contiguous())
            mi_rows.append(c.muinf.T.contiguous())
    return _Prepared(consts=consts, omega_rows=om_rows, omega_shared=om_sh, muinf_rows=mi_rows, beta_flat=b_flat,
                     beta_shared=b_sh, mu_flat=mu_flat, tprev_size=tps,
                     radii=[r.contiguous() for r in inp.radii])


def greedy_certify(
    inp: PerSampleInputs,
    sigma: torch.Tensor,
    profile: Sequence[float],
    *,
    fixed_levels: torch.Tensor | None = None,
    _prep: _Prepared | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Run the THEORY.md 4.1 recursions at per-sample noise level ``sigma``.

    Args:
        inp: per-sample tables.
        sigma: ``(N,)`` float64 scalar noise level per sample (layer k uses
            ``sigma * profile[k-1]``).
        profile: K positive multipliers c_k.
        fixed_levels: optional ``(N, K-1)`` int64 grid positions to use instead
            of the greedy choice (e.g. a global sparsity fraction).

    Returns:
        ``(certified, levels, parts)``: ``(N,)`` bool, the ``(N, K-1)`` grid
        positions used (largest feasible level per layer, chosen in layer order;
        Proposition 5.2 of docs/theory.md), and the final ``D_K``, ``E_K`` in ``parts``.
    """
    P = _prep if _prep is not None else _prepare(inp)
    N = inp.n_samples
    K = inp.depth
    ar = torch.arange(N)
    D = torch.zeros(N, dtype=torch.float64)
    E = torch.zeros(N, dtype=torch.float64)
    tprev = torch.zeros(N, dtype=torch.int64)
    levels = torch.zeros(N, max(K - 1, 0), dtype=torch.int64)
    feasible_all = torch.ones(N, dtype=torch.bool)
    for k in range(1, K + 1):
        c = P.consts[k - 1]
        sk = sigma * float(profile[k - 1])
        nD = inp.norms[:, k - 1] + D
        if k < K:
            rows = P.omega_rows[k - 1]
            om = rows[tprev] if P.omega_shared[k - 1] else rows[ar, tprev]  # (N, T_k)
            mi = P.muinf_rows[k - 1][tprev]  # (N, T_k)
            radii = P.radii[k - 1]
            if fixed_levels is None:
                L = om * D[:, None] + (sk * nD)[:, None] * c.h[None, :]
                R = (om + sk[:, None] * mi) * E[:, None] + (sk * c.hp * (nD + E))[:, None]
                feas = radii >= L + R
                feas[:, 0] = True
                T = feas.shape[1]
                t = torch.where(feas, torch.arange(T), 0).amax(dim=1)
            else:
                t = fixed_levels[:, k - 1]
                omt = om.gather(1, t[:, None]).squeeze(1)
                mit = mi.gather(1, t[:, None]).squeeze(1)
                Lt = omt * D + sk * nD * c.h[t]
                Rt = (omt + sk * mit) * E + sk * c.hp * (nD + E)
                ok = (radii.gather(1, t[:, None]).squeeze(1) >= Lt + Rt) | (t == 0)
                feasible_all &= ok
            levels[:, k - 1] = t
        else:
            t = torch.zeros(N, dtype=torch.int64)
        flat = t * P.tprev_size[k - 1] + tprev
        bf = P.beta_flat[k - 1]
        b = bf[flat] if P.beta_shared[k - 1] else bf.gather(1, flat[:, None]).squeeze(1)
        D_new = b * D + sk * c.g[t] * nD
        E_new = (b + sk * P.mu_flat[k - 1][flat]) * E + sk * c.gp[t] * (nD + E)
        D, E, tprev = D_new, E_new, t
    certified = (inp.margins_lower > SQRT2 * (D + E)) & feasible_all
    return certified, levels, {"D": D, "E": E}


def mid_loss_passes(
    margins: torch.Tensor,
    norms: torch.Tensor,
    radii: torch.Tensor,
    beta: torch.Tensor,
    omega: torch.Tensor,
    levels: torch.Tensor,
    sigma: Sequence[float],
    constants: NoiseConstants,
) -> torch.Tensor:
    """The loss ``L_mid(V, x, y) = 0`` test of THEORY.md 4.2 step 2, given V's quantities.

    V's own forward lines with the test-side constants:
    ``D^V_k = beta^V_k D^V_{k-1} + sigma_k g'_k(a_k) (n^V_{k-1} + D^V_{k-1})``,
    ``L^V_k = omega^V_k D^V_{k-1} + sigma_k h'_k (n^V_{k-1} + D^V_{k-1})``; passes iff
    ``rho^V_k >= L^V_k`` for every hidden k with ``s_k > 0`` and ``M_V > sqrt(2) D^V_K``.

    All quantities must be measured AT THE SAME SETS ``I_k`` (``rho^V_k = -max_{i in
    I_k} z^{V,k}_i``): upper bounds for beta, omega, norms; lower bounds for radii
    and margins.

    Args:
        margins: ``(N,)`` (lower bounds of) M_V(x).
        norms: ``(N, K)`` upper bounds of n^V_{k-1}.
        radii: ``(N, K-1)`` lower bounds of rho^V_k at the sets (ignored where s_k = 0).
        beta: ``(N, K)`` upper bounds of ||V_k[J_k, J_{k-1}]||.
        omega: ``(N, K-1)`` upper bounds of max_{i in I_k} ||V_k[i, J_{k-1}]||.
        levels: ``(N, K-1)`` int64 grid positions of the sets' sizes (t = 0: s = 0).
        sigma: K per-layer noise levels.
        constants: noise constants with the same grid.

    Returns:
        ``(N,)`` bool.
    """
    N, K = norms.shape
    D = torch.zeros(N, dtype=torch.float64)
    ok = torch.ones(N, dtype=torch.bool)
    for k in range(1, K + 1):
        lc = constants.layers[k - 1]
        n = norms[:, k - 1]
        sk = float(sigma[k - 1])
        if k < K:
            t = levels[:, k - 1]
            gp = torch.as_tensor(lc.gp, dtype=torch.float64)[t]
            L = omega[:, k - 1] * D + sk * lc.hp * (n + D)
            ok &= (t == 0) | (radii[:, k - 1] >= L)
        else:
            gp = torch.full((N,), float(lc.gp[0]), dtype=torch.float64)
        D = beta[:, k - 1] * D + sk * gp * (n + D)
    return ok & (margins > SQRT2 * D)


@dataclass(frozen=True)
class SigmaStar:
    """Largest certifiable noise level per sample.

    Attributes:
        sigma_star: ``(N,)`` float64, the certified end of the bisection (0 if the
            sample is not certified even at ``sigma_min``; ``sigma_max`` if it is
            certified at the top of the search range).
        levels: ``(N, K-1)`` int64 grid positions used at ``sigma_star``.
        profile: the per-layer multipliers used.
    """

    sigma_star: torch.Tensor
    levels: torch.Tensor
    profile: tuple[float, ...]

    def certified_at(self, sigma: float) -> torch.Tensor:
        """``(N,)`` bool: certified for the grid value ``sigma`` (with the 1e-6 slack)."""
        return sigma <= (1.0 - CERT_SLACK) * self.sigma_star


def max_certifiable_sigma(
    inp: PerSampleInputs,
    profile: Sequence[float],
    *,
    sigma_min: float = 1e-12,
    sigma_max: float = 10.0,
    iters: int = 40,
    fixed_levels: torch.Tensor | None = None,
    grid_sigmas: np.ndarray | None = None,
) -> SigmaStar:
    """Per-sample ``sigma*(x)`` (THEORY.md 4.1, last paragraph).

    Continuous mode (``grid_sigmas=None``): bisection in ``log sigma`` over
    ``[sigma_min, sigma_max]``; after ``iters`` halvings the bracket is
    ``ln(sigma_max/sigma_min) / 2^iters`` wide (about 3e-11 relative with the
    defaults).  ``sigma_star`` is the certified (lower) end.

    Grid mode (``grid_sigmas`` ascending): binary search for the largest grid
    value ``s_j`` such that the recursions pass at ``v_j = s_j / (1 - 1e-6)``;
    ``sigma_star = v_j``, so that :meth:`SigmaStar.certified_at` holds exactly
    for the grid values up to ``s_j`` (certification is monotone in sigma).
    Only a logarithmic number of checks; this is what the searches use.

    Samples that fail at the smallest value get ``sigma* = 0``.
    """
    with torch_threads(1):  # many small tensor operations: one thread is fastest
        return _max_certifiable_sigma(inp, profile, sigma_min, sigma_max, iters, fixed_levels, grid_sigmas)


def _max_certifiable_sigma(
    inp: PerSampleInputs,
    profile: Sequence[float],
    sigma_min: float,
    sigma_max: float,
    iters: int,
    fixed_levels: torch.Tensor | None,
    grid_sigmas: np.ndarray | None,
) -> SigmaStar:
    prep = _prepare(inp)
    N = inp.n_samples
    prof = tuple(float(v) for v in profile)

    def check(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ok, lv, _ = greedy_certify(inp, s, prof, fixed_levels=fixed_levels, _prep=prep)
        return ok, lv

    if grid_sigmas is not None:
        vals = torch.as_tensor(np.asarray(grid_sigmas, dtype=np.float64) / (1.0 - CERT_SLACK))
        G = vals.numel()
        lo = torch.full((N,), -1, dtype=torch.int64)  # largest index known certified
        hi = torch.full((N,), G, dtype=torch.int64)  # smallest index known not certified
        levels = torch.zeros(N, max(inp.depth - 1, 0), dtype=torch.int64)
        while bool((hi - lo > 1).any()):
            active = hi - lo > 1
            mid = torch.where(active, (lo + hi) // 2, lo.clamp(min=0))
            ok, lv = check(vals[mid])
            upd = active & ok
            lo = torch.where(upd, mid, lo)
            hi = torch.where(active & ~ok, mid, hi)
            levels[upd] = lv[upd]
        star = torch.where(lo >= 0, vals[lo.clamp(min=0)], torch.zeros(N, dtype=torch.float64))
        return SigmaStar(sigma_star=star, levels=levels, profile=prof)

    lo = torch.full((N,), math.log(sigma_min), dtype=torch.float64)
    hi = torch.full((N,), math.log(sigma_max), dtype=torch.float64)
    ok_lo, lv_lo = check(torch.exp(lo))
    ok_hi, lv_hi = check(torch.exp(hi))
    levels = lv_lo.clone()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok, lv = check(torch.exp(mid))
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
        levels[ok] = lv[ok]
    star = torch.where(ok_lo, torch.exp(lo), torch.zeros_like(lo))
    star = torch.where(ok_hi, torch.full_like(lo, sigma_max), star)
    levels[ok_hi] = lv_hi[ok_hi]
    return SigmaStar(sigma_star=star, levels=levels, profile=prof)


@dataclass(frozen=True)
class BoundCurve:
    """The PAC-Bayes bound over the a-priori sigma grid for one network/profile.

    Arrays are indexed by the grid positions ``j`` evaluated.
    """

    j: np.ndarray
    sigma: np.ndarray
    augmented_loss: np.ndarray
    empirical_term: np.ndarray
    kl: np.ndarray
    complexity: np.ndarray
    kl_bound: np.ndarray
    unclipped: np.ndarray

    def best(self, level: float | None = None) -> int:
        """Index of the chosen grid point.

        Where some grid point gives a non-vacuous certificate: the smallest bound.
        Where every grid point is vacuous: the smallest unclipped bound among the
        grid points whose empirical term is at most ``level``, by default the smallest
        empirical term on the grid plus :data:`INFORMATIVE_WINDOW` (otherwise the
        minimum would sit at a sigma where no sample is certified, and every method
        would report about 1 + sqrt(ln(...)/m), comparing nothing).  A ``level``
        shared by several curves (the trade-off curve, docs/theory.md section 9) may
        be below every grid point: then -1.  Every grid point is a valid bound, so
        this choice never affects validity.
        """
        if float(np.min(self.kl_bound)) < 1.0:
            return int(np.argmin(self.kl_bound))
        if level is None:
            level = float(np.min(self.empirical_term)) + INFORMATIVE_WINDOW
        ok = np.flatnonzero(self.empirical_term <= level)
        return int(ok[np.argmin(self.unclipped[ok])]) if ok.size else -1

    def value(self) -> float:
        """Unclipped bound at :meth:`best` (the search objective; < 1 iff non-vacuous)."""
        return float(self.unclipped[self.best()])


def bound_curve(
    sigma_star: torch.Tensor,
    dist_sq: Sequence[float],
    profile: Sequence[float],
    *,
    m: int,
    delta: float,
    grid,  # pacbayes.SigmaGrid
    n_profiles: int,
    eta1: float,
    eta2: float,
) -> BoundCurve:
    """THEORY.md 4.2 at every grid sigma_j (vectorised).

    ``L_aug(sigma_j)`` = fraction of the m samples with
    ``sigma_j > (1 - 1e-6) sigma*(x)``; empirical term ``L_aug + eta2 (1 - L_aug)``;
    ``KL = sum_k dist_sq_k / (2 sigma_j^2 c_k^2)``; complexity
    ``C = (KL + ln(2 sqrt(m) / (pi(j, c) delta))) / m``; bound
    ``kl_inv(empirical, C) + eta1``.  ``unclipped`` is the kl bound where it is
    below 1 and the Pinsker relaxation ``empirical + sqrt(C/2) + eta1`` (an upper
    bound of the kl bound, hence also valid; evaluated with a relative slack of
    ``1e-12`` for its own rounding) where it is not, so vacuous values stay
    comparable.
    """
    from .pacbayes import kl_inv_upper, profile_kl_grid

    js = grid.js()
    sig = grid.sigma(js)
    s_sorted = np.sort(((1.0 - CERT_SLACK) * sigma_star).numpy())
    n = s_sorted.size
    # certified iff sig <= (1-slack) sigma*  ->  count of entries >= sig
    n_cert = n - np.searchsorted(s_sorted, sig, side="left")
    laug = 1.0 - n_cert / n
    emp = laug + eta2 * (1.0 - laug)
    kl = profile_kl_grid(dist_sq, sig, profile)  # rounded up at any scale (docs/theory.md 7.6)
    logw = grid.log_weight(js, n_profiles)
    comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - logw) / m
    klb = kl_inv_upper(np.clip(emp, 0.0, 1.0), comp) + eta1
    # (1 + 1e-12): covers the float64 rounding of this sum and of comp (a few units of 2^-53)
    pinsker = (emp + np.sqrt(comp / 2.0) + eta1) * (1.0 + 1e-12)
    unclipped = np.where(klb < 1.0, np.minimum(klb, pinsker), pinsker)
    return BoundCurve(j=js, sigma=sig, augmented_loss=laug, empirical_term=emp, kl=kl,
                      complexity=comp, kl_bound=klb, unclipped=unclipped)


# --------------------------------------------------------------------------------------
# decomposition: which condition sets sigma*(x), and the parts of a certificate
# --------------------------------------------------------------------------------------

#: codes of :attr:`BindingAnalysis.kind`
BINDING_KINDS: tuple[str, ...] = ("margin", "radius", "misclassified", "uncertified", "top")


@dataclass(frozen=True)
class BindingAnalysis:
    """Per sample, which certification condition (THEORY.md 4.1) sets ``sigma*(x)``.

    At ``sigma*(x)`` the greedy sparsity vector passes; just above it
    (``sigma*(x) (1 + rel_step)``) it fails.  The sample's binding condition is

    * ``margin``: the greedy levels are the same on both sides, so the output condition
      ``M > sqrt(2) (D_K + E_K)`` is what fails: the output margin against the noise the
      recursions carry to the output;
    * ``radius``: some hidden layer k had to drop to a lower (denser) grid level just
      above sigma*, because its witness radius condition ``rho_k >= L_k + R_k`` failed at
      the level it used at sigma*; ``layer`` is the first such k (the greedy chooses in
      layer order) and ``binding_fraction`` the active fraction of the level it lost;
    * ``misclassified``: ``sigma* = 0`` and the margin lower bound is ``<= 0``;
    * ``uncertified``: ``sigma* = 0`` although the margin is positive (not certified even
      at the smallest sigma of the search);
    * ``top``: certified at the top of the search range.

    Attributes:
        kind: ``(N,)`` int64 codes into :data:`BINDING_KINDS`.
        layer: ``(N,)`` int64 hidden layer whose radius binds (0 where ``kind != radius``).
        binding_fraction: ``(N,)`` float64 active fraction ``a_k / d_k`` of the level
            layer k lost (nan where ``kind != radius``).
        levels: ``(N, K-1)`` int64 greedy grid positions at ``sigma*``.
        active_fraction: ``(N, K-1)`` float64 ``a_k / d_k`` at those levels.
        noise_share: ``(N, K)`` float64, share of ``D_K + E_K`` at ``sigma*`` due to the
            noise injected at layer k (the unrolled recursions, see
            :func:`noise_contributions`; rows sum to 1; nan where ``sigma* = 0``).
        margin_ratio: ``(N,)`` float64 ``M / (sqrt(2) (D_K + E_K))`` at ``sigma*`` (about 1
            where the margin binds, larger where a radius binds).
        sigma_star: ``(N,)`` the analysed ``sigma*(x)``.
        profile: the per-layer multipliers used (``sigma_k = sigma c_k``).
    """

    kind: np.ndarray
    layer: np.ndarray
    binding_fraction: np.ndarray
    levels: np.ndarray
    active_fraction: np.ndarray
    noise_share: np.ndarray
    margin_ratio: np.ndarray
    sigma_star: np.ndarray
    profile: tuple[float, ...]

    def summary(self) -> dict[str, Any]:
        """Shares per kind, per binding layer, the median noise share of every layer,
        and the median active fraction at sigma* (certified samples), as a JSON-able dict."""
        N = int(self.kind.size)
        K = int(self.noise_share.shape[1]) if self.noise_share.ndim == 2 else 0
        kinds = {name: float((self.kind == i).sum()) / max(N, 1) for i, name in enumerate(BINDING_KINDS)}
        rad = self.kind == BINDING_KINDS.index("radius")
        per_layer = {}
        for k in range(1, K):
            sel = rad & (self.layer == k)
            per_layer[f"radius_layer_{k}"] = {
                "share": float(sel.sum()) / max(N, 1),
                "median_lost_active_fraction": float(np.median(self.binding_fraction[sel])) if sel.any() else None,
            }
        pos = self.sigma_star > 0
        shares = {}
        for k in range(K):
            v = self.noise_share[pos, k]
            shares[f"layer_{k + 1}"] = float(np.median(v)) if v.size else None
        act = {}
        for k in range(self.active_fraction.shape[1]):
            v = self.active_fraction[pos, k]
            act[f"layer_{k + 1}"] = float(np.median(v)) if v.size else None
        return {
            "n": N,
            "kinds": kinds,
            "radius_by_layer": per_layer,
            "median_noise_share": shares,
            "median_active_fraction_at_sigma_star": act,
            "median_margin_ratio": float(np.median(self.margin_ratio[pos])) if pos.any() else None,
            "profile": list(self.profile),
        }


def _tables_at_levels(inp: PerSampleInputs, levels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Every per-layer quantity of the recursions at fixed grid positions ``levels``
    (``(N, K-1)``): n_{k-1}, beta, omega, g, h, mu, muinf, g', h', rho (per sample)."""
    N, K = inp.n_samples, inp.depth
    ar = torch.arange(N)
    out = []
    tprev = torch.zeros(N, dtype=torch.int64)
    for k in range(1, K + 1):
        lc = inp.constants.layers[k - 1]
        t = levels[:, k - 1] if k < K else torch.zeros(N, dtype=torch.int64)
        b = inp.beta[k - 1]
        beta = b[0, t, tprev] if b.shape[0] == 1 else b[ar, t, tprev]
        row: dict[str, torch.Tensor] = {
            "n": inp.norms[:, k - 1],
            "beta": beta,
            "g": torch.as_tensor(lc.g, dtype=torch.float64)[t],
            "gp": torch.as_tensor(lc.gp, dtype=torch.float64)[t],
            "mu": torch.as_tensor(lc.mu, dtype=torch.float64)[t, tprev],
        }
        if k < K:
            o = inp.omega[k - 1]
            row["omega"] = o[0, t, tprev] if o.shape[0] == 1 else o[ar, t, tprev]
            row["h"] = torch.as_tensor(lc.h, dtype=torch.float64)[t]
            row["muinf"] = torch.as_tensor(lc.muinf, dtype=torch.float64)[t, tprev]
            row["hp"] = torch.full((N,), float(lc.hp), dtype=torch.float64)
            row["rho"] = inp.radii[k - 1][ar, t]
            row["t"] = t
        out.append(row)
        tprev = t
    return out


def noise_contributions(inp: PerSampleInputs, sigma: torch.Tensor, profile: Sequence[float],
                        levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer contributions to ``D_K + E_K`` at fixed levels (THEORY.md 4.1 unrolled).

    The recursions are affine in ``D_{k-1}``, ``E_{k-1}``:
    ``D_k = (beta_k + sigma_k g_k) D_{k-1} + sigma_k g_k n_{k-1}`` and
    ``E_k = (beta_k + sigma_k mu_k + sigma_k g'_k) E_{k-1} + sigma_k g'_k (n_{k-1} + D_{k-1})``,
    so ``D_K + E_K = sum_k c_k`` exactly, with ``c_k`` = the noise injected at layer k,
    ``sigma_k g_k n_{k-1}`` and ``sigma_k g'_k (n_{k-1} + D_{k-1})``, each carried to the output by
    the product of the later layers' factors.

    Args:
        inp: per-sample tables; sigma: ``(N,)`` scalar noise levels; profile: K multipliers;
        levels: ``(N, K-1)`` grid positions.

    Returns:
        ``(contrib, total)``: ``(N, K)`` float64 contributions and ``(N,)`` ``D_K + E_K``
        computed by the forward recursion (equal to ``contrib.sum(1)`` up to rounding).
    """
    tabs = _tables_at_levels(inp, levels)
    N, K = inp.n_samples, inp.depth
    D = torch.zeros(N, dtype=torch.float64)
    E = torch.zeros(N, dtype=torch.float64)
    inj_d, inj_e, fac_d, fac_e = [], [], [], []
    for k in range(1, K + 1):
        r = tabs[k - 1]
        sk = sigma * float(profile[k - 1])
        inj_d.append(sk * r["g"] * r["n"])
        inj_e.append(sk * r["gp"] * (r["n"] + D))
        fac_d.append(r["beta"] + sk * r["g"])
        fac_e.append(r["beta"] + sk * r["mu"] + sk * r["gp"])
        D, E = r["beta"] * D + sk * r["g"] * (r["n"] + D), (r["beta"] + sk * r["mu"]) * E + sk * r["gp"] * (
            r["n"] + D + E)
    contrib = torch.zeros(N, K, dtype=torch.float64)
    for k in range(K):
        cd, ce = inj_d[k].clone(), inj_e[k].clone()
        for j in range(k + 1, K):
            cd = cd * fac_d[j]
            ce = ce * fac_e[j]
        contrib[:, k] = cd + ce
    return contrib, D + E


def binding_analysis(inp: PerSampleInputs, star: SigmaStar, *, rel_step: float = 1e-6,
                     sigma_max: float = 10.0) -> BindingAnalysis:
    """Which condition sets each sample's ``sigma*(x)`` (see :class:`BindingAnalysis`).

    Args:
        inp: the per-sample tables the certificate used.
        star: ``sigma*(x)`` from :func:`max_certifiable_sigma` in continuous mode (its
            bisection bracket, about 3e-11 relative, is far below ``rel_step``), with the
            same tables and its ``profile`` (the effective per-layer multipliers).
        rel_step: how far above sigma* the failing side is probed.
        sigma_max: the top of the search range of ``star``.

    Returns:
        :class:`BindingAnalysis`.  A diagnostic: it changes no bound.

    Raises:
        ConfigError: ``star`` does not match ``inp`` in the number of samples.
    """
    from .errors import ConfigError

    N, K = inp.n_samples, inp.depth
    s = star.sigma_star.to(torch.float64)
    if s.numel() != N:
        raise ConfigError(f"sigma* has {s.numel()} entries but the tables have {N} samples")
    prof = star.profile
    with torch_threads(1):
        pos = s > 0
        top = s >= sigma_max
        lo_sig = torch.where(pos, s, torch.full_like(s, 1e-12))
        ok_lo, lv_lo, _ = greedy_certify(inp, lo_sig, prof)
        ok_hi, lv_hi, _ = greedy_certify(inp, lo_sig * (1.0 + rel_step), prof)
        contrib, total = noise_contributions(inp, lo_sig, prof, lv_lo)
    dropped = lv_hi < lv_lo  # (N, K-1)
    any_drop = dropped.any(dim=1) if K > 1 else torch.zeros(N, dtype=torch.bool)
    first = torch.where(any_drop, dropped.double().argmax(dim=1) + 1, torch.zeros(N, dtype=torch.int64))
    kind = torch.full((N,), BINDING_KINDS.index("margin"), dtype=torch.int64)
    kind[any_drop] = BINDING_KINDS.index("radius")
    kind[top] = BINDING_KINDS.index("top")
    mis = (~pos) & (inp.margins_lower <= 0)
    kind[mis] = BINDING_KINDS.index("misclassified")
    kind[(~pos) & ~mis] = BINDING_KINDS.index("uncertified")
    layer = torch.where(kind == BINDING_KINDS.index("radius"), first, torch.zeros_like(first))
    widths = inp.constants.widths
    act = np.zeros((N, max(K - 1, 0)), dtype=np.float64)
    for k in range(1, K):
        a = torch.as_tensor(inp.constants.layers[k - 1].active, dtype=torch.float64)
        act[:, k - 1] = (a[lv_lo[:, k - 1]] / widths[k]).numpy()
    bf = np.full(N, np.nan)
    rad = (kind == BINDING_KINDS.index("radius")).numpy()
    if rad.any():
        lyr = layer.numpy()
        bf[rad] = act[np.flatnonzero(rad), lyr[rad] - 1]
    share = (contrib / total.clamp_min(1e-300)[:, None]).numpy()
    share[~pos.numpy()] = np.nan
    ratio = (inp.margins_lower / (SQRT2 * total).clamp_min(1e-300)).numpy()
    del ok_lo, ok_hi
    return BindingAnalysis(kind=kind.numpy(), layer=layer.numpy(), binding_fraction=bf, levels=lv_lo.numpy(),
                           active_fraction=act, noise_share=share, margin_ratio=ratio, sigma_star=s.numpy(),
                           profile=tuple(float(c) for c in prof))


def cheap_inputs(net: Any, X: torch.Tensor, y: torch.Tensor) -> PerSampleInputs:
    """The per-sample inputs of the recursions with the cheap tables of ``sparse``: the float64
    forward pass, the default sparsity grid, exact omega and uniform reduced-norm bounds of beta
    (no exact beta refinements, no rescaling), so a ``sigma*(x)`` computed from them is at most
    the certificate's.  Shared by the diagnostics and the choices made on the prior split
    (:func:`binding_summary`, :func:`sparsebound.objectives.prior_split_sigma_star`).

    Args:
        net: the ``ReLUNetwork``; X ``(N, d_0)`` float inputs; y ``(N,)`` int64 labels.

    Raises:
        ConfigError / ShapeMismatchError / DataError: data that does not fit the network.

    Source: THEORY.md 4.1 (recursions), 5.2 (uniform bounds); docs/theory.md sections 12, 15.
    """
    from .noise import DEFAULT_ACTIVE_FRACTIONS, NoiseConstants
    from .sparsity import SparsityGrid, SparsityTable
    from .tables import exact_omega_tables, uniform_norm_tables

    net.check_data(X, y)
    acts = net.forward(X, y)
    grid = SparsityGrid.from_fractions(net.widths, DEFAULT_ACTIVE_FRACTIONS)
    table = SparsityTable.build(acts, grid)
    consts = NoiseConstants.build(net.widths, grid.active, has_bias=net.has_bias)
    norms = uniform_norm_tables(net, grid)
    omega = exact_omega_tables(net, table)
    return PerSampleInputs(margins_lower=acts.margins_lower, norms=acts.hidden_norms, radii=table.radii,
                           omega=tuple(omega), beta=tuple(norms.uniform_beta), constants=consts)


def binding_summary(net: Any, X: torch.Tensor, y: torch.Tensor, profile: Sequence[float] | None = None,
                    rescaling: Sequence[float] | None = None) -> dict[str, Any]:
    """:meth:`BindingAnalysis.summary` of ``net`` on ``(X, y)`` at a profile and rescaling
    (docs/theory.md 15), with the cheap tables of ``sparse`` (exact omega, uniform reduced-norm
    bounds of beta), so ``sigma*(x)`` here is at most the certificate's (which refines beta
    exactly for some samples).  The rescaling ``lambda`` enters as the per-layer multipliers
    ``c_k / lambda_k`` of the network as given.  A diagnostic: it changes no bound.

    Args:
        net: the ``ReLUNetwork``; X ``(N, d_0)`` float inputs; y ``(N,)`` int64 labels.
        profile: per-layer noise multipliers (default all ones; 0 = no noise on that layer).
        rescaling: the certificate's rescaling (default all ones).

    Raises:
        ConfigError: data that does not fit the network.
    """
    K = net.depth
    prof = tuple(float(c) for c in profile) if profile is not None else (1.0,) * K
    lam = tuple(float(v) for v in rescaling) if rescaling is not None else (1.0,) * K
    inp = cheap_inputs(net, X, y)
    eff = tuple(c / v for c, v in zip(prof, lam, strict=True))
    star = max_certifiable_sigma(inp, eff)
    out = binding_analysis(inp, star).summary()
    out["tables"] = "cheap (exact omega, uniform beta)"
    out["profile"] = list(prof)
    return out


def certificate_parts(result: Any) -> dict[str, float]:
    """The parts of a PAC-Bayes-kl certificate, for reports (THEORY.md 4.2, 4.5, 4.7).

    Works on any result with ``empirical_term``, ``kl``, ``complexity_term``, ``m``,
    ``unclipped`` and (optionally) ``eta1`` attributes: ``sparse`` / ``uniform-sparse`` /
    ``dense`` (:class:`~sparsebound.certificate.MethodCertificate`), ``sparse-mc`` and ``pbb``.

    Returns a dict with ``empirical`` (the first argument of kl_inv), ``kl_over_m``,
    ``confidence`` (``complexity - KL/m = ln(2 sqrt(m)/(pi delta))/m``), ``eta1`` (0 for
    ``pbb``), ``inversion_gap`` (``unclipped - empirical - eta1``: what the kl inversion adds
    for the complexity), and ``unclipped``.  A part that an infinite KL leaves undefined
    (``inf - inf``: the confidence term of a vacuous result with ``KL = +inf``) is ``None``, never NaN.
    """
    m = float(result.m)
    kl_m = float(result.kl) / m
    comp = float(result.complexity_term)
    emp = float(result.empirical_term)
    eta1 = float(getattr(result, "eta1", 0.0) or 0.0)
    unc = float(result.unclipped)
    return {"empirical": emp, "kl_over_m": kl_m, "confidence": _diff(comp, kl_m), "eta1": eta1,
            "inversion_gap": _diff(unc, emp + eta1), "unclipped": unc}


def _diff(a: float, b: float) -> float | None:
    """``a - b``, or ``None`` where both are infinite (undefined)."""
    return None if (math.isinf(a) and math.isinf(b)) else a - b


def derandomisation_cost(deterministic: Any, stochastic: Any) -> dict[str, Any]:
    """``sparse`` (or ``sparse-mc``) against ``pbb`` for the same posterior mean (docs/theory.md 15).

    The two bound different predictors (the network ``f_W``, and the Gibbs predictor that draws
    ``V ~ Q`` for every input), so their difference is what certifying the deterministic network
    costs on top of the randomised one.  ``same_posterior`` says whether ``pbb`` used the ``tied``
    family with the same rescaling and profile (only then is it the same posterior family).

    Returns:
        dict with ``deterministic``, ``stochastic`` (unclipped values), ``difference``, ``ratio``
        (``None`` where both are infinite: undefined), the chosen sigma of each, and ``same_posterior``.
    """
    d, s = float(deterministic.unclipped), float(stochastic.unclipped)
    if math.isinf(d) and math.isinf(s):
        diff: float | None = None
        ratio: float | None = None
    else:
        diff = d - s
        ratio = d / s if s > 0 else math.inf
    same = (getattr(stochastic, "posterior", None) == "tied"
            and tuple(getattr(stochastic, "rescaling", ())) == tuple(getattr(deterministic, "rescaling", ()))
            and tuple(getattr(stochastic, "profile", ())) == tuple(getattr(deterministic, "profile", ())))
    return {"deterministic": d, "stochastic": s, "difference": diff, "ratio": ratio,
            "sigma_deterministic": float(deterministic.sigma), "sigma_stochastic": float(stochastic.sigma),
            "same_posterior": bool(same)}
