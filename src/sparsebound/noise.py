"""Gaussian noise constants and their failure budgets (THEORY.md section 3).

The posterior perturbs every weight by ``U_k`` with i.i.d. ``N(0, sigma_k^2)``
entries.  The certificate needs, per layer, dimensionless constants that bound
(after multiplying by ``sigma_k``) how far that noise can move the network on
one sample, each outside an event of small, a-priori fixed probability:

training side (budget ``eta2``, 4K events of ``eta2 / (4K)`` each, at the
witness of W at a training sample, so the index sets are fixed):

    g_k      bounds ||(U_k v)[J_k]|| / ||v||                  (chi quantile, a_k dof)
    h_k      bounds max_{i in I_k} |(U_k v)_i| / ||v||        (|N(0,1)| quantile, s_k rows)
    mu_k     bounds ||U_k[J_k, J_{k-1}]||                     (Gordon: sqrt(a)+sqrt(b)+t)
    muinf_k  bounds max_{i in I_k} ||U_k[i, J_{k-1}]||        (chi quantile, b dof, s_k rows)

test side (budget ``eta1``, for any input; the witness of the perturbed network
is random, so a union over every row set of every allowed size):

    g'_k(a)  bounds max_{|J| = a} ||(U_k v)[J]|| / ||v||      (min of a dense and a sparse branch)
    h'_k     bounds max_i |(U_k v)_i| / ||v||                 (all d_k rows)

THEORY.md writes every tail bound in the closed form ``sqrt(q) + sqrt(2 ln(1/p))``
(Gaussian concentration of a 1-Lipschitz norm) and ``sqrt(2 ln(2/p))`` (normal
tail).  Where the exact distribution is known -- the norm of ``q`` i.i.d.
standard normals is chi-distributed with ``q`` degrees of freedom, a single
coordinate is ``N(0, 1)`` -- this module uses the exact quantile instead, which
is never larger; the closed form remains as a cap (and the fallback when the
probability underflows).  docs/theory.md, "Noise constants", proves both.
With ``tight=False`` the THEORY.md closed forms are used verbatim.

Source: THEORY.md section 3; Laurent & Massart (2000) and the Gaussian
concentration inequality for Lipschitz functions; Gordon's inequality for the
spectral norm of a Gaussian block (Davidson & Szarek 2001, Thm II.13).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import gammainccinv, gammaln, ndtri

from .errors import ConfigError

if TYPE_CHECKING:
    from .operators import LinearOperator

# Relative inflation applied to every numerically inverted quantile: the
# inversion routines are accurate to ~1e-14; this covers them with a wide margin.
QUANTILE_SAFETY = 1e-9


def log_binomial(n: int, r: int | np.ndarray) -> np.ndarray:
    """``ln C(n, r)`` via log-gamma (float64), elementwise in ``r``."""
    r = np.asarray(r, dtype=np.float64)
    return gammaln(n + 1.0) - gammaln(r + 1.0) - gammaln(n - r + 1.0)


def chi_tail_bound(q: float | np.ndarray, log_p: float | np.ndarray, tight: bool = True) -> np.ndarray:
    """``t`` with ``P(||g|| >= t) <= p`` for ``g ~ N(0, I_q)``.

    Closed form (THEORY.md 3): ``sqrt(q) + sqrt(2 ln(1/p))``.  Tight: the exact
    upper ``p``-quantile of the chi distribution with ``q`` degrees of freedom,
    ``sqrt(2 * gammainccinv(q/2, p))``, inflated by :data:`QUANTILE_SAFETY`,
    capped by the closed form.  ``q = 0`` gives 0.

    Args:
        q: degrees of freedom (number of coordinates), >= 0.
        log_p: natural log of the failure probability (may be far below -745).
    """
    q = np.asarray(q, dtype=np.float64)
    log_p = np.asarray(log_p, dtype=np.float64)
    q, log_p = np.broadcast_arrays(q, log_p)
    shape = q.shape
    q, log_p = q.reshape(-1), log_p.reshape(-1)
    closed = np.sqrt(q) + np.sqrt(np.maximum(-2.0 * log_p, 0.0))
    out = closed.copy()
    if tight:
        ok = (log_p > -700.0) & (q > 0)
        if np.any(ok):
            p = np.exp(log_p[ok])
            exact = np.sqrt(2.0 * gammainccinv(q[ok] / 2.0, p)) * (1.0 + QUANTILE_SAFETY)
            good = np.isfinite(exact)
            sub = out[ok]
            sub[good] = np.minimum(sub[good], exact[good])
            out[ok] = sub
    return np.where(q > 0, out, 0.0).reshape(shape)


def normal_abs_tail_bound(log_p: float | np.ndarray, tight: bool = True) -> np.ndarray:
    """``t`` with ``P(|N(0,1)| >= t) <= p``.

    Closed form (THEORY.md 3): ``sqrt(2 ln(2/p))``.  Tight: ``Phi^{-1}(1 - p/2)``
    (inflated by :data:`QUANTILE_SAFETY`), capped by the closed form.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    shape = log_p.shape
    log_p = log_p.reshape(-1)
    closed = np.sqrt(np.maximum(2.0 * (math.log(2.0) - log_p), 0.0))
    if not tight:
        return closed.reshape(shape)
    out = closed.copy()
    ok = log_p > -700.0
    if np.any(ok):
        exact = -ndtri(np.exp(log_p[ok]) / 2.0) * (1.0 + QUANTILE_SAFETY)  # = Phi^{-1}(1 - p/2)
        good = np.isfinite(exact)
        sub = out[ok]
        sub[good] = np.minimum(sub[good], exact[good])
        out[ok] = sub
    return out.reshape(shape)


def active_size_grid(width: int, fractions: Sequence[float]) -> np.ndarray:
    """A-priori grid of allowed active sizes for a layer of ``width`` units.

    ``round(f * width)`` for each fraction, clipped to ``[1, width]``, with the
    full width always included; duplicates removed; ascending int64.
    (THEORY.md 4.3: "Grids: rounded, duplicates removed, d_k included".)

    Raises:
        ConfigError: a fraction outside (0, 1].
    """
    fr = [float(f) for f in fractions]
    if any(not (0.0 < f <= 1.0) for f in fr):
        raise ConfigError(f"active fractions must lie in (0, 1], got {fr}")
    sizes = {int(min(width, max(1, round(f * width)))) for f in fr}
    sizes.add(int(width))
    return np.array(sorted(sizes), dtype=np.int64)


DEFAULT_ACTIVE_FRACTIONS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20, 0, -1))


@dataclass(frozen=True)
class LayerConstants:
    """Dimensionless noise constants of one layer k, indexed by grid positions.

    Grids are indexed by sparsity level ``t`` in ascending sparsity ``s`` (so
    ``t = 0`` is ``s = 0``, the dense level); ``t_prev`` indexes the previous
    layer's grid (a single entry for k = 1, whose columns are all inputs).

    Attributes:
        k: 1-based layer index.
        sparsity: ``(T_k,)`` int64 sparsity levels s (ascending, starts at 0).
        active: ``(T_k,)`` int64 active sizes a = d_k - s.
        col_active: ``(T_{k-1},)`` int64 active column counts a^col_{k-1}
            (including the bias column when the network has biases).
        g, h, gp: ``(T_k,)`` float64 (h = 0 where s = 0; gp is g').
        mu, muinf: ``(T_k, T_{k-1})`` float64 (muinf = 0 where s = 0).
        hp: float, h'_k (0 for the output layer, which has no inactive rows).
    """

    k: int
    sparsity: np.ndarray
    active: np.ndarray
    col_active: np.ndarray
    g: np.ndarray
    h: np.ndarray
    mu: np.ndarray
    muinf: np.ndarray
    gp: np.ndarray
    hp: float


@dataclass(frozen=True)
class NoiseConstants:
    """All per-layer constants for one network shape, grids and budgets (THEORY.md 3).

    Build with :meth:`build`.  ``layers[k-1]`` holds layer k (k = 1..K).

    Budgets: the training side spends ``eta2 / (4K)`` on each of its (at most)
    4K events; the test side spends ``eta1 / (4K)`` on each branch of g'_k and
    ``eta1 / (2K)`` on h'_k for hidden layers, and ``eta1 / (4K)`` on g'_K
    (total < eta1).  ``budget_table()`` lists every event with its probability.
    """

    widths: tuple[int, ...]
    has_bias: bool
    eta1: float
    eta2: float
    tight: bool
    layers: tuple[LayerConstants, ...]

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @classmethod
    def build(
        cls,
        widths: Sequence[int],
        active_grids: Sequence[np.ndarray] | None = None,
        *,
        has_bias: bool = False,
        eta1: float = 1e-4,
        eta2: float = 1e-3,
        tight: bool = True,
        columns: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
    ) -> NoiseConstants:
        """Compute every constant.

        Args:
            widths: ``(d_0, ..., d_K)``.
            active_grids: K-1 arrays of allowed active sizes A_k for the hidden
                layers (each must contain d_k); ``None`` gives the dense grid
                ``{d_k}`` (s = 0 only).
            has_bias: add the bias column to every column count.
            eta1, eta2: test-side and training-side failure levels in (0, 1).
            tight: exact chi / normal quantiles (default) or THEORY.md's closed forms.
            columns: per layer, the column count of the weight noise for given numbers of
                active inputs (:meth:`sparsebound.operators.LinearOperator.columns`); default
                active inputs plus ``has_bias``.  :meth:`for_operators` passes the operators'.

        Raises:
            ConfigError: eta outside (0, 1), a grid without d_k or with sizes
                outside [1, d_k].
        """
        for name, v in (("eta1", eta1), ("eta2", eta2)):
            if not (0.0 < v < 1.0):
                raise ConfigError(f"{name} must lie in (0, 1), got {v}")
        widths = tuple(int(d) for d in widths)
        K = len(widths) - 1
        if K < 2:
            raise ConfigError("a certificate needs K >= 2 weight layers")
        if active_grids is None:
            active_grids = [np.array([widths[k]]) for k in range(1, K)]
        if len(active_grids) != K - 1:
            raise ConfigError(f"need {K - 1} active-size grids (one per hidden layer)")
        grids: list[np.ndarray] = []
        for k in range(1, K):
            a = np.unique(np.asarray(active_grids[k - 1], dtype=np.int64))
            d = widths[k]
            if a.size == 0 or a.max() != d or a.min() < 1:
                raise ConfigError(
                    f"active-size grid of layer {k} must contain d_{k}={d} and lie in [1, {d}]"
                )
            grids.append(a[::-1].copy())  # descending active = ascending sparsity
        bias = 1 if has_bias else 0
        cols = columns if columns is not None else [lambda a: np.asarray(a, dtype=np.int64) + bias] * K
        ln4K = math.log(4 * K)
        log_eta1, log_eta2 = math.log(eta1), math.log(eta2)
        layers: list[LayerConstants] = []
        for k in range(1, K + 1):
            d = widths[k]
            if k < K:
                active = grids[k - 1]
            else:
                active = np.array([d], dtype=np.int64)
            s = d - active
            # column counts of the weight noise: active inputs plus the bias column
            col = cols[k - 1](np.array([widths[0]], dtype=np.int64) if k == 1 else grids[k - 2])
            # ---- training side (fixed sets; eta2 / (4K) per event) ----
            lp_tr = log_eta2 - ln4K
            g = chi_tail_bound(active, lp_tr, tight)
            h = np.zeros(active.shape, dtype=np.float64)
            muinf = np.zeros((active.size, col.size), dtype=np.float64)
            pos = s > 0
            if np.any(pos):
                # union over the s_k inactive rows: eta2/(4K s) per row
                lp_row = lp_tr - np.log(s[pos].astype(np.float64))
                h[pos] = normal_abs_tail_bound(lp_row, tight)
                muinf[pos, :] = chi_tail_bound(col[None, :], lp_row[:, None], tight)
            tau = math.sqrt(-2.0 * lp_tr)  # Gordon + Lipschitz concentration
            mu = np.sqrt(active)[:, None] + np.sqrt(col)[None, :] + tau
            # ---- test side (any input; union over all sets of each size) ----
            lp_te = log_eta1 - ln4K
            dense = float(chi_tail_bound(d, lp_te, tight))
            if k < K:
                n_sizes = active.size
                lp_sparse = lp_te - math.log(n_sizes) - log_binomial(d, active)
                sparse = chi_tail_bound(active, lp_sparse, tight)
                raw = np.minimum(dense, sparse)
                # A bound for row sets of size a' >= a also bounds every set of
                # size a (a subvector has a smaller norm): running min over
                # larger sizes in the grid (docs/theory.md, Noise constants).
                gp = np.minimum.accumulate(raw)  # active is descending
                hp = float(normal_abs_tail_bound(log_eta1 - math.log(2 * K * d), tight))
            else:
                gp = np.array([dense])
                hp = 0.0
            layers.append(
                LayerConstants(
                    k=k, sparsity=s.astype(np.int64), active=active, col_active=col,
                    g=g, h=h, mu=mu, muinf=muinf, gp=gp, hp=hp,
                )
            )
        return cls(widths=widths, has_bias=has_bias, eta1=eta1, eta2=eta2, tight=tight,
                   layers=tuple(layers))

    @classmethod
    def for_operators(
        cls,
        operators: Sequence[LinearOperator],
        active_grids: Sequence[np.ndarray] | None = None,
        *,
        eta1: float = 1e-4,
        eta2: float = 1e-3,
        tight: bool = True,
    ) -> NoiseConstants:
        """:meth:`build` for a network given by its layers' operators: the widths are their
        row counts (and the first one's input count), the column counts of each layer's noise
        come from :meth:`~sparsebound.operators.LinearOperator.columns` (THEORY.md 3)."""
        ops = list(operators)
        widths = (ops[0].in_features, *(op.out_features for op in ops))
        return cls.build(widths, active_grids, has_bias=any(op.has_bias for op in ops), eta1=eta1, eta2=eta2,
                         tight=tight, columns=[op.columns for op in ops])

    def budget_table(self) -> list[dict]:
        """Every noise event with its failure probability (sums: <= eta2, < eta1)."""
        K = self.depth
        rows = []
        for lc in self.layers:
            k = lc.k
            rows.append({"side": "train", "layer": k, "event": "g", "prob": self.eta2 / (4 * K)})
            rows.append({"side": "train", "layer": k, "event": "mu", "prob": self.eta2 / (4 * K)})
            if k < K:
                rows.append({"side": "train", "layer": k, "event": "h", "prob": self.eta2 / (4 * K)})
                rows.append({"side": "train", "layer": k, "event": "muinf", "prob": self.eta2 / (4 * K)})
                rows.append({"side": "test", "layer": k, "event": "g' dense", "prob": self.eta1 / (4 * K)})
                rows.append({"side": "test", "layer": k, "event": "g' sparse", "prob": self.eta1 / (4 * K)})
                rows.append({"side": "test", "layer": k, "event": "h'", "prob": self.eta1 / (2 * K)})
            else:
                rows.append({"side": "test", "layer": k, "event": "g' dense", "prob": self.eta1 / (4 * K)})
        return rows

    def to_dict(self) -> dict:
        return {
            "eta1": self.eta1,
            "eta2": self.eta2,
            "tight_quantiles": self.tight,
            "active_grids": [lc.active.tolist() for lc in self.layers[:-1]],
            "per_layer": [
                {
                    "k": lc.k,
                    "g_dense": float(lc.g[0]),
                    "gp_dense": float(lc.gp[0]),
                    "hp": lc.hp,
                    "mu_dense": float(lc.mu[0, 0]),
                }
                for lc in self.layers
            ],
        }
