"""Monte-Carlo training side: the ``sparse-mc`` certificate (THEORY.md 4.5).

The analytic training side (reverse recursions and eta2) bounds how far the
posterior's networks may move, conservatively.  ``sparse-mc`` instead estimates
``E_Q[empirical L_mid]`` directly by drawing N perturbed networks ``V = W + U``
and evaluating the step-2 loss ``L_mid`` of each on the bound sample, while the
deterministic network W is still certified through the test side (Lemma 4.1).

For every evaluated grid sigma, with probability >= 1 - delta' pi(sigma) over the
draws, ``E_Q[hat L_mid] <= kl_inv(q_hat, ln(1/(delta' pi(sigma)))/N)`` (kl-Chernoff,
Hoeffding 1963 Thm 1, for the mean of N i.i.d. [0,1] variables), and then with
probability >= 1 - delta - delta':

    L_0(f_W) <= kl_inv( kl_inv(q_hat, ln(1/(delta' pi))/N),
                        [KL + ln(2 sqrt(m)/(pi delta))] / m ) + eta1.

Per draw ``l_j`` is an upper bound of the empirical ``L_mid(W + U_j)``: a sample
counts 0 only if some grid sparsity vector and sets pass V's test-side forward
lines with upper bounds of beta^V, omega^V, n^V and lower bounds of rho^V and M_V:

* two choices of sets are tried: W's own witness (``||V[J,J']|| <= beta_bar_W + ||U_k||``,
  ``omega^V <= omega_bar_W + max_i ||U_k[i, :]||``) and V's own witness (the
  uniform bounds of W for the same sizes plus the same noise terms); the greedy
  level choice (docs/theory.md Prop. 5.2) applies to each;
* V's forward pass runs in float64 with rigorous rounding bounds (Higham's
  dot-product bound, the rounding of ``W + U``, and the input error carried by
  Cauchy-Schwarz), so radii and margins are lower bounds and norms upper bounds of
  V's exact values.  (A float32 pass with worst-case bounds lost most margins on
  Fashion-MNIST: the bound grows by ``||V||_F`` per layer.)

W (with its rescaling), N, the seed and the profile are fixed before any draw;
draws are standard Gaussians in float64 from a seed recorded beforehand, scaled
by sigma and shared across the evaluated sigma values (allowed: the union bound
over the grid needs no independence across sigma).  Which sigma values are
evaluated may depend on the data and on earlier evaluations: the weights pi(sigma)
cover the whole grid.

Source: THEORY.md 4.5; docs/theory.md section 10.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .certification import INFORMATIVE_WINDOW, PerSampleInputs, greedy_certify
from .errors import ConfigError
from .network import ReLUNetwork, full_precision, margins_from_outputs, resolve_device, torch_threads
from .noise import LayerConstants, NoiseConstants
from .pacbayes import SigmaGrid, check_delta, kl_inv_upper, profile_kl
from .rounding import TINY64, U64, pow2
from .rounding import norm_upper_fast as _norm_up
from .sharding import LocalSharding, Sharding
from .sparsity import SparsityTable

#: per layer, P(||Z_k|| >= gordon_radius) <= MC_GORDON_EPS; K times this is added to the
#: Monte-Carlo upper bound (docs/theory.md section 10).
MC_GORDON_EPS = 1e-7


def mid_loss_constants(consts: NoiseConstants) -> NoiseConstants:
    """Constants that make :func:`greedy_certify` run V's test-side forward lines only.

    ``g := g'``, ``h := h'`` and every reverse-side constant 0, so that ``E = R = 0``,
    ``D_k = beta D + sigma g' (n + D)``, ``L_k = omega D + sigma h' (n + D)``:
    exactly the ``L_mid`` test of THEORY.md 4.2 step 2.
    """
    layers = []
    for lc in consts.layers:
        layers.append(LayerConstants(
            k=lc.k, sparsity=lc.sparsity, active=lc.active, col_active=lc.col_active,
            g=lc.gp.copy(), h=np.full(lc.h.shape, lc.hp), mu=np.zeros_like(lc.mu), muinf=np.zeros_like(lc.muinf),
            gp=np.zeros_like(lc.gp), hp=0.0,
        ))
    return replace(consts, layers=tuple(layers))


@dataclass(frozen=True)
class MCResult:
    """The ``sparse-mc`` certificate (THEORY.md 4.5) and everything needed to audit it.

    ``certificate``/``unclipped``/``vacuous`` as for the other methods;
    ``empirical_term`` is the Monte-Carlo upper bound ``kl_inv(q_hat, ...)`` of
    ``E_Q[hat L_mid]``; ``losses`` are the per-draw ``l_j`` at the chosen sigma.
    """

    method: str
    certificate: float
    unclipped: float
    vacuous: bool
    q_hat: float
    empirical_term: float
    kl: float
    complexity_term: float
    sigma: float
    grid_index: int
    profile: tuple[float, ...]
    rescaling: tuple[float, ...]
    distance_to_prior: float
    n_draws: int
    seed: int
    delta: float
    delta_mc: float
    eta1: float
    m: int
    losses: list[float]
    batch: int = 0
    gordon_eps: float = 0.0
    evaluated: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        del per_sample
        return {
            "method": self.method,
            "certificate": self.certificate,
            "unclipped": self.unclipped,
            "log10_unclipped": math.log10(self.unclipped) if self.unclipped > 0 else None,
            "vacuous": self.vacuous,
            "q_hat": self.q_hat,
            "empirical_term": self.empirical_term,
            "kl": self.kl,
            "kl_over_m": self.kl / self.m,
            "complexity_term": self.complexity_term,
            "sigma": self.sigma,
            "grid_index": self.grid_index,
            "profile": list(self.profile),
            "rescaling": list(self.rescaling),
            "distance_to_prior": self.distance_to_prior,
            "n_draws": self.n_draws,
            "samples_per_draw": self.batch,
            "gordon_eps": self.gordon_eps,
            "seed": self.seed,
            "delta": self.delta,
            "delta_mc": self.delta_mc,
            "delta_total": self.delta + self.delta_mc,
            "eta1": self.eta1,
            "m": self.m,
            "losses": self.losses,
            "losses_summary": {"mean": float(np.mean(self.losses)), "min": float(np.min(self.losses)),
                               "max": float(np.max(self.losses))} if self.losses else None,
            "evaluated": self.evaluated,
            "timings_s": self.timings,
        }


def _forward_f64(
    ws: list[torch.Tensor], bs: list[torch.Tensor] | None, X: torch.Tensor, y: torch.Tensor,
    abs_rows: list[torch.Tensor],
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Batched float64 forward of D perturbed networks, each on its own b inputs, with
    rigorous rounding bounds.

    Args:
        ws: K float64 tensors ``(D, d_k, d_{k-1})``: the computed ``Vhat = fl(W + fl(s_k Z))``.
        bs: K float64 tensors ``(D, d_k)`` (the bias column of ``Vhat``) or None.
        X: ``(D, b, d_0)`` inputs (float32 or float64, used exactly); y: ``(D, b)`` labels.
        abs_rows: K tensors ``(D, d_k)``, upper bounds of ``||W_i|| + ||s_k Z_i||`` per row
            (augmented rows).

    Returns:
        upper bounds of the exact hidden pre-activations ``(D, b, d_k)`` (float64, one per
        hidden layer), norm upper bounds ``(D, b, K)`` of every layer's exact input and
        margin lower bounds ``(D, b)`` (float64).

    Error analysis (docs/theory.md section 10), ``u = 2^-53``, ``n`` terms per dot product
    (the bias is one more, with input 1): ``|Vhat - V| <= 3.01 u (|W| + |s_k Z|)`` entrywise,
    so ``||V_i|| <= ||Vhat_i|| + 3.01 u a_i`` with ``a_i`` from ``abs_rows``.  With ``E`` an
    upper bound of ``||xhat - x||`` for the layer input (0 for the data; relu is 1-Lipschitz),
    Higham's dot-product bound (any summation order) and Cauchy-Schwarz give per unit

        |zhat_i - z_i| <= gamma_n ||Vhat_i|| ||xhat|| + 3.01 u a_i ||xhat|| + (||Vhat_i|| + 3.01 u a_i) E,

    evaluated in float64 with a relative safety ``1 + 1e-9``, plus absolute terms for
    underflow: ``n 2^-1074`` (Higham's bound with gradual underflow), ``2^-1073 sqrt(n) ||xhat||``
    (``fl(s_k Z)`` may underflow) and ``8 * 2^-1074`` for the evaluation; every norm is taken
    with :func:`_norm_up`.  Upper bounds ``zhat + err`` and the margins add room for their own
    float64 rounding.
    """
    K = len(ws)
    n_terms = [w.shape[2] + (1 if bs is not None else 0) for w in ws]
    gam = [(n * U64) / (1 - n * U64) for n in n_terms]
    x = X.to(torch.float64)
    E = torch.zeros(x.shape[:2], dtype=torch.float64, device=x.device)  # (D, b)
    uppers, n_cols = [], []
    margins = None
    for k in range(K):
        n = n_terms[k]
        vrow = torch.cat([ws[k], bs[k][:, :, None]], dim=2) if bs is not None else ws[k]
        vn = _norm_up(vrow, 2)  # (D, d_k) >= ||Vhat_i||
        slack = 3.01 * U64 * abs_rows[k]
        xa = torch.cat([x, torch.ones_like(x[:, :, :1])], dim=2) if bs is not None else x
        nx = _norm_up(xa, 2)  # (D, b) >= ||xhat||
        n_cols.append((nx + E) * (1 + 1e-9))
        z = torch.bmm(x, ws[k].transpose(1, 2))
        if bs is not None:
            z = z + bs[k][:, None, :]
        absolute = (n + 8) * TINY64 + 2.0**-1073 * math.sqrt(n) * nx * (1 + 1e-9)  # (D, b)
        err = ((gam[k] * vn + slack)[:, None, :] * nx[:, :, None]
               + (vn + slack)[:, None, :] * E[:, :, None]) * (1 + 1e-9) + absolute[:, :, None]
        if k < K - 1:
            uppers.append(z + (err + 4 * U64 * (z.abs() + err)) + 1e-300)
            x = torch.relu(z)
            E = _norm_up(err, 2)
        else:
            D, b, C = z.shape
            out = z.reshape(D * b, C)
            room = 2.0 * err.amax(dim=2).reshape(-1) + 8 * U64 * out.abs().amax(dim=1) + 1e-300
            margins = (margins_from_outputs(out, y.reshape(-1)) - room * (1 + 1e-9)).reshape(D, b)
    assert margins is not None
    return uppers, torch.stack(n_cols, 2), margins


def _radii_at_sets(zup: torch.Tensor, order: torch.Tensor | None, s: torch.Tensor) -> torch.Tensor:
    """Lower bounds of ``rho^V = -max_{i in I} z^V_i`` for every grid level, rows ``(n, d)``.

    ``zup`` are upper bounds of the exact pre-activations; ``order`` is W's witness order
    (``I = order[:, :s]``), or None for V's own witness (the ``s`` smallest upper bounds).
    """
    if order is None:
        top = torch.sort(zup, dim=1).values  # s-th smallest
    else:
        top = torch.cummax(zup.gather(1, order.to(zup.device)), dim=1).values
    N = zup.shape[0]
    rho = torch.full((N, s.numel()), math.inf, dtype=torch.float64)
    pos = s > 0
    if bool(pos.any()):
        rho[:, pos] = -top[:, s[pos] - 1].double().cpu()
    return rho


def gordon_radius(rows: int, cols: int, eps: float) -> float:
    """``s`` with ``P(||Z|| >= s) <= eps`` for a ``rows x cols`` standard Gaussian matrix:
    ``sqrt(rows) + sqrt(cols) + sqrt(2 ln(1/eps))`` (Gordon + Gaussian concentration)."""
    return math.sqrt(rows) + math.sqrt(cols) + math.sqrt(2.0 * math.log(1.0 / eps))


@dataclass
class MCTables:
    """W's side of the ``L_mid`` bounds, for every bound sample (see :func:`draw_passes`)."""

    table: SparsityTable
    beta_w: Sequence[torch.Tensor]
    omega_w: Sequence[torch.Tensor]
    uniform_beta: Sequence[torch.Tensor]
    uniform_omega: Sequence[torch.Tensor]
    consts: NoiseConstants


def _rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.expand(idx.numel(), *t.shape[1:]) if t.shape[0] == 1 else t[idx]


def draw_passes(
    net: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    Z: list[torch.Tensor],
    rows: torch.Tensor,
    sigma: float,
    noise_profile: Sequence[float],
    tabs: MCTables,
    noise_norm_bounds: Sequence[float],
    device: str | None = None,
) -> torch.Tensor:
    """Which samples pass ``L_mid(W + U_d)`` (with valid bounds), for D draws at once.

    Args:
        net: W.
        X, y: the whole bound sample.
        Z: K standard-normal float64 tensors ``(D, d_k, d_{k-1} (+1))``.
        rows: ``(D, b)`` int64 indices of the samples evaluated for each draw.
        sigma, noise_profile: ``U_k = sigma * noise_profile[k-1] * Z_k``.
        tabs: W's tables.
        noise_norm_bounds: per layer an upper bound of ``||Z_k||`` assumed to hold (the
            caller accounts for the probability that it does not).

    Returns:
        ``(D, b)`` bool: True where the sample passes for some grid sparsity vector and
        one of the two set choices (W's witness, V's own witness).
    """
    dev = resolve_device(device)
    tc = mid_loss_constants(tabs.consts)
    K = net.depth
    D, b = rows.shape
    flat = rows.reshape(-1)
    ws, bs = [], [] if net.has_bias else None
    add_o, abs_rows = [], []
    for k in range(K):
        sk = sigma * float(noise_profile[k])
        Wk = net.augmented_weight(k + 1).to(device=dev, dtype=torch.float64)
        Zk = Z[k].to(dev)
        V = Wk[None] + sk * Zk
        if net.has_bias:
            ws.append(V[:, :, :-1])
            bs.append(V[:, :, -1])
        else:
            ws.append(V)
        zrow = sk * _norm_up(Zk, 2) * (1 + 1e-9) + TINY64  # (D, d_k) >= ||U_k[i, :]||
        abs_rows.append(_norm_up(Wk, 1)[None] + zrow)
        # max_i ||U_k[i, :]|| per draw, for omega^V
        add_o.append(zrow.amax(1).cpu())
    with full_precision():
        uppers, norms, margins = _forward_f64(ws, bs, X[rows].to(dev), y[rows].to(dev), abs_rows)
    norms = norms.reshape(D * b, K).cpu()
    margins = margins.reshape(-1).cpu()
    add_b = [sigma * float(noise_profile[k]) * noise_norm_bounds[k] * (1 + 1e-6) for k in range(K)]
    per_row_o = [a.repeat_interleave(b) for a in add_o]
    lev_s = [torch.as_tensor(tabs.table.grid.sparsity(k), dtype=torch.int64) for k in range(1, K)]
    passed = torch.zeros(D * b, dtype=torch.bool)
    for own in (False, True):
        radii = tuple(
            _radii_at_sets(uppers[k].reshape(D * b, -1), None if own else tabs.table.order[k][flat], lev_s[k])
            for k in range(K - 1)
        )
        bsrc = tabs.uniform_beta if own else tabs.beta_w
        osrc = tabs.uniform_omega if own else tabs.omega_w
        beta = tuple(_rows(bb, flat) + add_b[k] for k, bb in enumerate(bsrc))
        omega = []
        for k, o in enumerate(osrc):
            oo = _rows(o, flat) + per_row_o[k][:, None, None]
            oo[:, 0] = 0.0  # s = 0: no inactive rows
            omega.append(oo)
        inp = PerSampleInputs(margins_lower=margins, norms=norms, radii=radii, omega=tuple(omega), beta=beta,
                              constants=tc)
        with torch_threads(1):
            ok, _, _ = greedy_certify(inp, torch.full((D * b,), sigma, dtype=torch.float64), noise_profile)
        passed |= ok
    return passed.reshape(D, b)


#: torch's CPU generator keys its Mersenne twister with the low 32 bits of the seed only
_TORCH_SEED_BITS = 0xFFFFFFFF
_DRAW_SEEDS: dict[int, tuple[list[int], set[int]]] = {}
_DRAW_SEEDS_LOCK = threading.Lock()


def _draw_seed(seed: int, j: int) -> int:
    """The torch seed of draw ``j`` of the stream ``seed``: ``SeedSequence([seed, j])``'s first word
    shifted right by one, re-derived with a salt where its low 32 bits (all that torch uses) repeat
    those of an earlier draw, so draws ``0..j`` are pairwise distinct streams (docs/theory.md 14.2)."""
    with _DRAW_SEEDS_LOCK:
        seeds, seen = _DRAW_SEEDS.setdefault(int(seed), ([], set()))
        while len(seeds) <= j:
            i, salt = len(seeds), 0
            while True:
                keys = [int(seed), i] + ([salt] if salt else [])
                st = int(np.random.SeedSequence(keys).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))
                if st & _TORCH_SEED_BITS not in seen:
                    break
                salt += 1
            seen.add(st & _TORCH_SEED_BITS)
            seeds.append(st)
        return seeds[j]


def _draw_generator(seed: int, j: int) -> torch.Generator:
    return torch.Generator().manual_seed(_draw_seed(seed, j))


def draw(net: ReLUNetwork, seed: int, j: int, m: int, b: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Draw number ``j`` of the stream ``seed``: K standard-normal float64 matrices of W's
    augmented shapes and ``b`` sample indices drawn uniformly without replacement from
    ``range(m)`` (all of them, in order, when ``b >= m``).  Regenerated identically for
    every sigma evaluated."""
    g = _draw_generator(seed, j)
    Z = [torch.randn(*op.noise_shape, generator=g, dtype=torch.float64) for op in net.operators]
    rows = torch.arange(m) if b >= m else torch.randperm(m, generator=g)[:b]
    return Z, rows


@dataclass(frozen=True)
class MCShared:
    """What every batch of draws reads (handed to the workers once): W, the bound sample,
    W's tables, the assumed bounds of ``||Z_k||`` and the device."""

    net: ReLUNetwork
    X: torch.Tensor
    y: torch.Tensor
    tabs: MCTables
    noise_norm_bounds: tuple[float, ...]
    device: str | None


def _draw_batch(shared: MCShared, chunk: tuple[float, tuple[float, ...], int, int, int, int]) -> list[float]:
    """``l_j`` of the draws ``j0 <= j < j1`` (a sharding task): ``chunk = (sigma, noise_profile,
    seed, b, j0, j1)``; each draw regenerated from ``(seed, j)``."""
    sigma, noise_profile, seed, b, j0, j1 = chunk
    net = shared.net
    m = int(shared.X.shape[0])
    dr = [draw(net, seed, j, m, b) for j in range(j0, j1)]
    Z = [torch.stack([d[0][k] for d in dr]) for k in range(net.depth)]
    rows = torch.stack([d[1] for d in dr])
    ok = draw_passes(net, shared.X, shared.y, Z, rows, sigma, noise_profile, shared.tabs, shared.noise_norm_bounds,
                     shared.device)
    return (1.0 - ok.double().mean(dim=1)).tolist()


def mc_losses(
    net: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    noise_profile: Sequence[float],
    tabs: MCTables,
    *,
    n_draws: int,
    seed: int,
    batch: int,
    noise_norm_bounds: Sequence[float],
    device: str | None = None,
    chunk_rows: int = 4096,
    sharding: Sharding | None = None,
    shared: Any = None,
) -> list[float]:
    """``l_j`` for ``j < n_draws``: the share of the draw's ``batch`` samples that fail the
    bounded ``L_mid`` test of :func:`draw_passes`.

    Draws are processed in batches of ``chunk_rows // batch`` (fixed by the sizes alone), each
    batch regenerating its draws from ``(seed, j)``; ``sharding`` (:mod:`sparsebound.sharding`)
    runs the batches here (default) or as Ray tasks, with the same numbers.  ``shared``: the
    handle of ``sharding.put(MCShared(...))`` when the caller evaluates several sigma values
    (the network and tables are then handed over once)."""
    sh = sharding if sharding is not None else LocalSharding()
    m = int(X.shape[0])
    b = min(batch, m)
    per_chunk = max(1, chunk_rows // b)
    if shared is None:
        shared = sh.put(MCShared(net, X, y, tabs, tuple(float(v) for v in noise_norm_bounds), device))
    prof = tuple(float(c) for c in noise_profile)
    chunks = [(float(sigma), prof, int(seed), b, j0, min(n_draws, j0 + per_chunk))
              for j0 in range(0, n_draws, per_chunk)]
    out: list[float] = []
    for part in sh.map(_draw_batch, shared, chunks):
        out.extend(part)
    return out


def sample_units(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bound sample in per-sample power-of-two units (bias-free networks).

    Row n is multiplied by ``2^r_n`` with ``r_n`` the exponent that puts its largest
    entry in [0.5, 1) (``torch.frexp``; rows of zeros keep ``r_n = 0``), in float64,
    keeping only factors under which the row is exact (scaling back gives it bit for
    bit; else ``r_n = 0``).  A bias-free network is positively homogeneous, so every
    quantity of sample n in the ``L_mid`` test (pre-activations, radii, norms, margin)
    is multiplied by ``2^r_n`` and every term of the recursions with it (the sample
    units of :class:`sparsebound.search.RecursionUnits`, docs/theory.md section 7):
    the test passes for the scaled row iff it passes for the row.  The largest entry
    of a row is exactly scale-equivariant, so a sample given as ``2^a x`` gets the
    same scaled row, bit for bit, as ``x``: the draws see the same numbers whatever
    power-of-two scale the data has, and the absolute underflow terms of the
    float64 forward (``2^-1074`` per term) stay negligible.

    Returns:
        ``(X_scaled, r)``: float64 ``(N, d)`` and int64 ``(N,)``.
    """
    x = X.reshape(X.shape[0], -1).to(torch.float64)
    amax = x.abs().amax(dim=1) if x.shape[1] else torch.zeros(x.shape[0], dtype=torch.float64)
    _, e = torch.frexp(amax)
    r = torch.where((amax > 0) & torch.isfinite(amax), -e.to(torch.int64), torch.zeros_like(e, dtype=torch.int64))
    def times_pow2(t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # three exact power-of-two factors
        k = k.clamp(-2100, 2100)
        k1 = torch.div(k, 3, rounding_mode="floor")
        k2 = torch.div(k - k1, 2, rounding_mode="floor")
        return t * pow2(k1)[:, None] * pow2(k2)[:, None] * pow2(k - k1 - k2)[:, None]

    xs = times_pow2(x, r)
    exact = (times_pow2(xs, -r) == x).all(dim=1) & torch.isfinite(xs).all(dim=1)
    r = torch.where(exact, r, torch.zeros_like(r))
    xs = torch.where(exact[:, None], xs, x)
    return xs, r


def sparse_mc(
    net: ReLUNetwork,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    kl_dist_sq: Sequence[float],
    kl_profile: Sequence[float],
    noise_profile: Sequence[float],
    distance_to_prior: float,
    table: SparsityTable,
    beta_w: Sequence[torch.Tensor],
    omega_w: Sequence[torch.Tensor],
    uniform_beta: Sequence[torch.Tensor],
    uniform_omega: Sequence[torch.Tensor],
    consts: NoiseConstants,
    start_j: int,
    grid_s: SigmaGrid,
    n_profiles: int,
    delta: float,
    delta_mc: float,
    n_draws: int = 2000,
    batch: int = 256,
    seed: int | None = None,
    max_evals: int = 4,
    device: str | None = None,
    progress: bool = True,
    sharding: Sharding | None = None,
) -> MCResult:
    """The ``sparse-mc`` certificate (THEORY.md 4.5) of the posterior mean ``lambda W``.

    The posterior is ``N(lambda W, diag (sigma c)^2)``.  Bias-free networks are
    positively homogeneous, so ``L_mid(lambda W + U; sigma c)`` equals
    ``L_mid(W + U / lambda; sigma c / lambda)`` exactly (docs/theory.md Lemma 8.1):
    the draws are evaluated on ``W + (sigma c_k / lambda_k) Z_k`` with the tables of
    W itself (``noise_profile = c / lambda``), so W is never rescaled numerically;
    the KL uses ``kl_dist_sq`` (``||lambda_k W_k - W0_k||_F^2``) and ``kl_profile`` (c).

    Each draw j is a pair (standard Gaussian matrices Z_j, a uniformly random subset
    B_j of ``batch`` bound samples, all of them when ``batch >= m``); ``l_j`` is the
    share of B_j failing the bounded ``L_mid`` test, computed with
    ``||Z_{j,k}|| <= gordon_radius(...)`` assumed; the probability that this fails,
    ``eps_G = K * MC_GORDON_EPS``, is added to the Monte-Carlo upper bound
    (docs/theory.md section 10).

    ``sharding`` (:mod:`sparsebound.sharding`) runs the batches of draws here (default) or as
    Ray tasks, with the same numbers; W and its tables are handed over once for every sigma.

    Without biases the bound sample is first put in per-sample power-of-two units
    (:func:`sample_units`, exact), so that the certificate of a sample does not depend on
    the power-of-two scale it is given at.

    Evaluates a few grid sigma values, starting at ``start_j`` and climbing while the
    bound improves (at most ``max_evals`` values), all with the same ``n_draws``
    draws from ``seed`` (``None``: a fresh seed from the operating system, recorded in
    the result, so that draws are never reused across networks chosen after seeing
    earlier draws); returns the best.

    Raises:
        ConfigError: delta or delta_mc outside (0, 1), fewer than one draw.
    """
    from tqdm.auto import tqdm

    check_delta(delta)
    check_delta(delta_mc, "delta_mc")
    if n_draws < 1:
        raise ConfigError("sparse-mc needs at least one draw (--mc-draws)")
    if batch < 1:
        raise ConfigError("sparse-mc needs at least one sample per draw (--mc-batch)")
    if seed is None:
        import secrets

        seed = secrets.randbits(31)
    t0 = time.perf_counter()
    m = int(X.shape[0])
    if not net.has_bias:  # per-sample power-of-two units: the same numbers at any scale of the data
        X = sample_units(X)[0]
    tabs = MCTables(table=table, beta_w=beta_w, omega_w=omega_w, uniform_beta=uniform_beta,
                    uniform_omega=uniform_omega, consts=consts)
    shapes = [op.noise_shape for op in net.operators]
    znorm = [gordon_radius(r, c, MC_GORDON_EPS) for r, c in shapes]
    eps_g = net.depth * MC_GORDON_EPS
    dist = [float(d) for d in kl_dist_sq]
    evaluated: dict[int, dict[str, Any]] = {}
    sh = sharding if sharding is not None else LocalSharding()
    shared = sh.put(MCShared(net, X, y, tabs, tuple(znorm), device))  # once for every sigma evaluated

    def evaluate(j: int) -> dict[str, Any]:
        if j in evaluated:
            return evaluated[j]
        sig = float(grid_s.sigma(j))
        logw = float(grid_s.log_weight(j, n_profiles))
        losses = mc_losses(net, X, y, sig, noise_profile, tabs, n_draws=n_draws, seed=seed, batch=batch,
                           noise_norm_bounds=znorm, device=device, sharding=sh, shared=shared)
        q = float(np.mean(losses))
        mc_up = min(1.0, float(kl_inv_upper(q, (math.log(1.0 / delta_mc) - logw) / n_draws)) + eps_g)
        kl = profile_kl(dist, sig, kl_profile)  # rounded up at any scale (docs/theory.md 7.6)
        comp = (kl + math.log(2.0 * math.sqrt(m) / delta) - logw) / m
        klb = float(kl_inv_upper(mc_up, comp)) + consts.eta1
        pins = mc_up + math.sqrt(comp / 2.0) + consts.eta1
        unc = klb if klb < 1.0 else pins
        rec = {"grid_index": j, "sigma": sig, "q_hat": q, "mc_upper": mc_up, "kl": kl, "complexity": comp,
               "unclipped": unc, "losses": losses}
        evaluated[j] = rec
        bar.update(1)
        return rec

    with tqdm(total=max_evals, desc="sparse-mc sigmas", disable=None if progress else True, leave=False) as bar:
        best = evaluate(start_j)
        step = 2
        j = start_j
        while len(evaluated) < max_evals:
            cand = evaluate(j + step)
            lo = min(r["mc_upper"] for r in evaluated.values())
            in_window = cand["unclipped"] < 1.0 or cand["mc_upper"] <= lo + INFORMATIVE_WINDOW
            if in_window and cand["unclipped"] < best["unclipped"]:
                best, j = cand, j + step
                continue
            if step == 2 and (j + 1) not in evaluated:
                step = 1
                continue
            if (j - 1) not in evaluated and j == start_j:
                cand = evaluate(j - 1)
                if cand["unclipped"] < best["unclipped"]:
                    best = cand
            break
    if best["unclipped"] >= 1.0:
        # all vacuous: same reporting rule as the other methods (docs/theory.md 9)
        lo = min(r["mc_upper"] for r in evaluated.values())
        window = [r for r in evaluated.values() if r["mc_upper"] <= lo + INFORMATIVE_WINDOW]
        best = min(window, key=lambda r: r["unclipped"])
    unc = float(best["unclipped"])
    return MCResult(
        method="sparse-mc", certificate=min(1.0, unc), unclipped=unc, vacuous=unc >= 1.0, q_hat=best["q_hat"],
        empirical_term=best["mc_upper"], kl=best["kl"], complexity_term=best["complexity"], sigma=best["sigma"],
        grid_index=best["grid_index"], profile=tuple(float(c) for c in kl_profile),
        rescaling=tuple(float(c) / float(e) if e != 0 else 1.0  # zero-noise layers are never rescaled
                        for c, e in zip(kl_profile, noise_profile, strict=True)),
        distance_to_prior=float(distance_to_prior), n_draws=n_draws, seed=int(seed), delta=delta, delta_mc=delta_mc,
        eta1=consts.eta1, m=m, losses=list(best["losses"]), batch=min(batch, m), gordon_eps=eps_g,
        evaluated=[{k: v for k, v in r.items() if k != "losses"} for r in evaluated.values()],
        timings={"total": time.perf_counter() - t0},
    )

