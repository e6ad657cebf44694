"""Upper bounds on reduced matrix norms (THEORY.md sections 2 and 5).

The certificate needs, for every layer k, upper bounds of

    beta_k  = ||W_k[J_k, J_{k-1}]||              (spectral norm of a submatrix)
    omega_k = max_{i in I_k} ||W_k[i, J_{k-1}]||  (norm of one row on a column set)

either per sample at the witness sets (section 5.1, :func:`exact_reduced_norms`,
:func:`exact_row_norms_restricted`) or uniformly over every row set of size
<= a and column set of size <= b (section 5.2, :func:`uniform_sparse_norms`).
``W`` is always the matrix the caller certifies: with biases the caller passes
the augmented ``[W_k | b_k]``, so "columns" already include the bias column.

Every function here returns an UPPER bound of the exact real-arithmetic value.
Power iteration, or any other lower estimate, is never used as a bound.

Rounding (why ``NORM_SAFETY = 1e-6`` suffices)
-----------------------------------------------
All arithmetic is float64 (unit roundoff u = 2^-53 ~ 1.1e-16); every result is
multiplied by ``1 + NORM_SAFETY``.  For matrices with both dimensions <= 10^4:

* Power-of-two scaling.  Each matrix (per sample, per row, or globally,
  depending on the function) is first multiplied by an exact power of two so
  that its largest entry lies in [0.5, 1) (the exponent is clamped to
  [-1020, 1020], so the factor itself is exact).  This removes overflow and
  makes underflow harmless: an entry or product that underflows loses at most
  2^-1075 in absolute value, while the quantity being bounded is at least the
  largest entry (>= 0.5, or >= 2^-54 for a subnormal input), so the total effect
  is below 10^-300 relatively.  (:func:`exact_row_norms_restricted`, where a
  row restricted to a column set need not contain the row's largest entry,
  adds an explicit absolute slack instead whenever an underflow is possible.)
  Results are scaled back by the inverse power of two, which is exact unless
  the result is subnormal; subnormal results are rounded one ulp upwards.
* Spectral norm (SVD).  LAPACK's SVD is backward stable: the computed largest
  singular value is that of W + E with ||E|| <= c max(rows, cols) u ||W||, c a
  modest constant, i.e. a relative error of order 1e-12 for widths <= 10^4.
* Gram matrix + symmetric eigensolver (:func:`exact_reduced_norms`).  For an
  (p, q) block S with m = min(p, q), the computed Gram matrix satisfies
  |G^ - G| <= gamma_q |S| |S|^T entrywise (gamma_n = n u / (1 - n u)), hence
  ||G^ - G|| <= gamma_q || |S| ||^2 <= gamma_q ||S||_F^2 <= gamma_q m ||S||^2:
  a relative error of at most 1e4 * 1e4 * 1.1e-16 ~ 1.1e-8 on lambda_max in the
  worst case (typically ~1e-13).  The eigensolver adds a backward error
  c m u ||G^|| (~1e-12).  The square root halves relative errors.
* Sums of non-negative terms (babel, row and Frobenius bounds).  Each product or
  square has relative error <= u; a sum of n non-negative terms, in any order,
  has relative error <= gamma_{n-1}.  The babel bound sums at most rows + cols
  terms: <= 2e4 * 1.1e-16 ~ 2e-12 relatively.  Sorting is exact (a permutation),
  and since every computed product is >= (1 - u) times the exact one, the sum of
  the a largest exact products is <= (1 - u)^-1 times the sum of the a largest
  computed ones.

The worst case above (~1e-8, the Gram rounding at width 10^4) is 100 times
smaller than ``NORM_SAFETY``; typical errors (~1e-12) are a million times smaller.

Source: THEORY.md sections 2 and 5; reduced babel function after Muthukumar &
Sulam, COLT 2023, section 4.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import torch

from .network import resolve_device, torch_threads
from .rounding import MAX_SHIFT, MIN_NORMAL64, pow2, shift_for

NORM_SAFETY = 1e-6
"""Relative safety factor applied to every norm bound (see the module docstring)."""

_SAFE = 1.0 + NORM_SAFETY
_MIN_NORMAL = MIN_NORMAL64
_MAX_SHIFT = MAX_SHIFT
# Memory budget for one block of pairwise products in uniform_sparse_norms.
_PAIR_BLOCK_BYTES = 256 * 2**20
#: With ``prune=True``, the exact reduced babel tables T(a) (about rows * cols^2 products)
#: are computed only for matrices with at most this many pairwise products; wider layers
#: use the cheaper valid upper bound U of ``uniform_sparse_norms``.
EXACT_BABEL_MAX_PRODUCTS = 2_000_000_000
# Memory budget for one chunk of gathered submatrices in exact_reduced_norms.
_EXACT_CHUNK_BYTES = 512 * 2**20
# Samples per chunk in exact_row_norms_restricted.
_ROW_CHUNK = 4096
# Largest number of (row set, column set) pairs the brute-force oracle accepts.
BRUTE_FORCE_MAX_PAIRS = 200_000


# ----- helpers ----------------------------------------------------------------


def _as_matrix(W: Any) -> torch.Tensor:
    """``W`` as a 2-D finite float64 tensor (exact widening of lower precisions)."""
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(W)
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"W must be a 2-D torch tensor, got {type(W).__name__}")
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D matrix, got shape {tuple(W.shape)}")
    if W.is_complex():
        raise ValueError("W must be real")
    W = W.detach().to(torch.float64)
    if W.numel() and not bool(torch.isfinite(W).all()):
        raise ValueError("W contains NaN or Inf entries; no finite norm bound exists")
    return W


def _shift_for(maxabs: float) -> int:
    """Exponent s, |s| <= 1020, with ``maxabs * 2**s`` in [0.5, 1) when possible."""
    if maxabs == 0.0:
        return 0
    _, e = math.frexp(maxabs)
    return max(-_MAX_SHIFT, min(_MAX_SHIFT, -e))


# the tensor versions live in ``rounding`` (shared with the forward pass and the baselines)
_shift_tensor = shift_for
_pow2 = pow2


def _unscale_np(v: np.ndarray, exp: int) -> np.ndarray:
    """``v * 2**exp`` rounded upwards where the result is subnormal (v >= 0)."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(over="ignore"):  # overflow gives inf: still an upper bound
        out = np.ldexp(v, exp)
    tiny = (v > 0) & (out < _MIN_NORMAL)
    if tiny.any():
        out = np.where(tiny, np.nextafter(out, np.inf), out)
    return out


def _check_sizes(sizes: int | Iterable[int], dim: int, what: str) -> tuple[int, ...]:
    """Sorted unique sizes, each an integer in [1, dim]."""
    if isinstance(sizes, int | np.integer):
        sizes = (int(sizes),)
    vals = []
    for s in sizes:
        try:
            v = operator.index(s)
        except TypeError:
            raise ValueError(f"{what} sizes must be integers, got {s!r}") from None
        if v < 1 or v > dim:
            raise ValueError(
                f"{what} size {v} is outside [1, {dim}] (the matrix has {dim} {what}s)"
            )
        vals.append(v)
    if not vals:
        raise ValueError(f"give at least one {what} size")
    return tuple(sorted(set(vals)))


def _top_sums_sorted(x: np.ndarray, ks: tuple[int, ...], axis: int = -1) -> np.ndarray:
    """Sums of the k largest entries along ``axis`` of an ascending-sorted array.

    ``ks`` ascending, each in [1, n]; the result has ``len(ks)`` entries on ``axis``
    (moved to the last position), entry m being the sum of the ks[m] largest.
    """
    n = x.shape[axis]
    starts = [n - k for k in reversed(ks)]  # ascending, >= 0, <= n - 1
    blocks = np.add.reduceat(x, starts, axis=axis)
    blocks = np.moveaxis(blocks, axis, -1)
    return np.cumsum(blocks[..., ::-1], axis=-1)


def _suffix_min(x: np.ndarray) -> np.ndarray:
    """Entry [i, j, ...] = min over entries with every index >= (i, j, ...)."""
    out = x
    for ax in range(x.ndim):
        rev = np.flip(out, axis=ax)
        out = np.flip(np.minimum.accumulate(rev, axis=ax), axis=ax)
    return np.ascontiguousarray(out)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


# ----- full spectral norm -------------------------------------------------------
def spectral_norm(W: torch.Tensor) -> float:
    """Upper bound of ``||W||_2``: float64 SVD largest singular value times (1 + NORM_SAFETY).

    Args:
        W: ``(rows, cols)`` real tensor (any float dtype; widened exactly to float64).

    Runs on W's device; on the CPU the SVD is single-threaded (MKL's threaded
    SVD is at most ~2x faster on 2 idle cores but ~50x slower on shared cores:
    measured 0.5 s vs 28 s for 1000 x 1000).

    Raises:
        ValueError: ``W`` is not 2-D or has NaN/Inf entries.
    """
    W = _as_matrix(W)
    if W.numel() == 0:
        return 0.0
    shift = _shift_for(float(W.abs().max()))
    Ws = W * math.ldexp(1.0, shift)
    if Ws.device.type == "cpu":
        with torch_threads(1):
            sv = float(torch.linalg.svdvals(Ws)[0])
    else:
        sv = float(torch.linalg.svdvals(Ws)[0])
    return float(_unscale_np(np.float64(max(sv, 0.0) * _SAFE), -shift))


# ----- uniform bounds (THEORY 5.2) ----------------------------------------------
@dataclass(frozen=True)
class UniformNormTable:
    """Sparse-norm bounds valid for every row set |J| <= a and column set |J'| <= b.

    All sizes are returned sorted ascending and de-duplicated; every array is
    indexed by these sorted sizes (``[ia, ib]`` <-> ``(row_sizes[ia], col_sizes[ib])``).
    Every bound is safety-multiplied by ``1 + NORM_SAFETY`` (module docstring).

    Attributes:
        row_sizes: sorted unique row-set sizes a.
        col_sizes: sorted unique column-set sizes b (bias column counted by the caller).
        spectral: upper bound of ``||W||`` (valid for every a, b).
        babel_bound: ``(len(row_sizes), len(col_sizes))`` reduced babel bound
            ``sqrt(max_j [T_jj(a) + sum of the (b-1) largest T_ij(a), i != j])``
            (``inf`` at the row sizes a pruned by ``uniform_sparse_norms(..., prune=True)``).
        babel_function: same shape, the reduced babel function
            ``mu_{a,b}(W) = max_j sum of the (b-1) largest T_ij(a), i != j``
            (a diagnostic in units of W^2; an upper bound of the exact value; ``inf`` where pruned).
        frobenius_bound: same shape, sparse Frobenius bound
            ``sqrt(sum of the a largest r_i(b))`` with ``r_i(b)`` the sum of the b
            largest ``W_ij^2`` of row i (valid since ``||A|| <= ||A||_F``).
        row_bound: ``(len(col_sizes),)`` bound of ``max_i max_{|J'|<=b} ||W[i, J']||``
            (exact up to the safety factor), made monotone.
        bound: ``(len(row_sizes), len(col_sizes))`` the entrywise minimum of
            ``spectral``, ``babel_bound`` and ``frobenius_bound``, then made
            monotone: ``bound[ia, ib]`` = min over entries with row size >= a and
            column size >= b (a bound for larger sets covers smaller ones).
    """

    row_sizes: tuple[int, ...]
    col_sizes: tuple[int, ...]
    spectral: float
    babel_bound: np.ndarray
    babel_function: np.ndarray
    frobenius_bound: np.ndarray
    row_bound: np.ndarray
    bound: np.ndarray

    def _row_index(self, a: int) -> int:
        i = int(np.searchsorted(self.row_sizes, a, side="left"))
        if a < 0 or i >= len(self.row_sizes):
            raise ValueError(
                f"row-set size {a} exceeds the largest tabulated size {self.row_sizes[-1]}"
            )
        return i

    def _col_index(self, b: int) -> int:
        i = int(np.searchsorted(self.col_sizes, b, side="left"))
        if b < 0 or i >= len(self.col_sizes):
            raise ValueError(
                f"column-set size {b} exceeds the largest tabulated size {self.col_sizes[-1]}"
            )
        return i

    def bound_at(self, a: int, b: int) -> float:
        """Bound valid for every |J| <= a, |J'| <= b: the entry at the smallest
        tabulated sizes >= (a, b) (0 if a or b is 0).

        Raises:
            ValueError: a or b exceeds the largest tabulated size.
        """
        if a == 0 or b == 0:
            return 0.0
        return float(self.bound[self._row_index(a), self._col_index(b)])

    def row_bound_at(self, b: int) -> float:
        """Bound of ``max_i ||W[i, J']||`` for every |J'| <= b (0 if b is 0)."""
        if b == 0:
            return 0.0
        return float(self.row_bound[self._col_index(b)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly plain dict (lists of floats)."""
        return {
            "row_sizes": list(self.row_sizes),
            "col_sizes": list(self.col_sizes),
            "spectral": float(self.spectral),
            "babel_bound": self.babel_bound.tolist(),
            "babel_function": self.babel_function.tolist(),
            "frobenius_bound": self.frobenius_bound.tolist(),
            "row_bound": self.row_bound.tolist(),
            "bound": self.bound.tolist(),
            "norm_safety": NORM_SAFETY,
        }


def _pair_top_sums(
    absT: np.ndarray, rs: tuple[int, ...], progress: bool
) -> np.ndarray:
    """T[m, j, i] = sum of the rs[m] largest |W_ri W_rj| over rows r, for sizes rs < rows.

    ``absT`` is ``|W|^T`` of shape (cols, rows), C-contiguous.  Only blocks with
    i-block >= j-block are computed (T is symmetric); the rest is mirrored.  The
    products of a pair are partitioned at the largest size needed and only that top
    part is sorted when that size is at most half the rows (O(rows + a_max log a_max) per
    pair instead of O(rows log rows)).
    """
    C, R = absT.shape
    n_a = len(rs)
    T = np.zeros((n_a, C, C), dtype=np.float64)
    a_max = max(rs)
    blk = max(1, math.isqrt(max(1, _PAIR_BLOCK_BYTES // (8 * R))))
    starts = list(range(0, C, blk))
    pairs = [(j0, i0) for jn, j0 in enumerate(starts) for i0 in starts[jn:]]
    it: Iterable[tuple[int, int]] = pairs
    if progress:
        from tqdm import tqdm

        it = tqdm(pairs, desc="babel pairs", unit="block", leave=False, disable=None)
    for j0, i0 in it:
        j1, i1 = min(j0 + blk, C), min(i0 + blk, C)
        P = absT[j0:j1, None, :] * absT[None, i0:i1, :]  # (cj, ci, R)
        if 2 * a_max <= R:  # (for larger a_max a full sort is faster)
            P.partition(R - a_max, axis=-1)  # the a_max largest last (a permutation: exact)
            P = P[..., R - a_max:]
        P.sort(axis=-1)
        tops = _top_sums_sorted(P, rs, axis=-1)  # (cj, ci, n_a)
        T[:, j0:j1, i0:i1] = np.moveaxis(tops, -1, 0)
        del P, tops
    for m in range(n_a):
        up = np.triu(T[m])
        up += np.triu(up, 1).T
        T[m] = up
    return T


def _babel_rows(M: np.ndarray, diag: np.ndarray, cs: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For a symmetric non-negative (C, C) table M (its diagonal ignored) and the diagonal
    ``diag``: ``mu[b] = max_j`` sum of the (b-1) largest off-diagonal entries of row j, and
    ``babel_sq[b] = max_j [diag_j + that sum]``, for every b in ``cs`` (ascending)."""
    C = M.shape[0]
    n_b = len(cs)
    bm1 = tuple(b - 1 for b in cs if b >= 2)
    off = n_b - len(bm1)  # 1 if b = 1 is in the grid, else 0
    M = M.copy()
    np.fill_diagonal(M, 0.0)  # all other entries are >= 0: the (b-1) largest
    S = np.zeros((C, n_b))
    if bm1:
        if bm1 == (C - 1,):
            S[:, off] = M.sum(axis=1)  # every off-diagonal entry: no sort needed
        else:
            M.sort(axis=1)  # off-diagonal sums are unchanged (b - 1 <= cols - 1)
            S[:, off:] = _top_sums_sorted(M, bm1, axis=1)
    return S.max(axis=0), (diag[:, None] + S).max(axis=0)


def uniform_sparse_norms(
    W: torch.Tensor,
    row_sizes: int | Iterable[int],
    col_sizes: int | Iterable[int],
    *,
    progress: bool = False,
    spectral: float | None = None,
    prune: bool = False,
) -> UniformNormTable:
    """Bounds of ``max_{|J|<=a, |J'|<=b} ||W[J, J']||`` for a grid of (a, b) (THEORY 5.2).

    Reduced babel bound (proof).  Let A = W[J, J'] with |J| <= a, |J'| <= b and
    G = A^T A.  (1) |G_ij| = |sum_{r in J} W_ri W_rj| <= sum_{r in J} |W_ri W_rj|
    <= T_ij(a), the sum of the a largest |W_ri W_rj| over all rows (|J| <= a terms,
    all non-negative).  (2) Gershgorin: ||A||^2 = lambda_max(G) <= max_{j in J'}
    sum_{i in J'} |G_ij| <= max_j [T_jj(a) + sum_{i in J', i != j} T_ij(a)] <=
    max_j [T_jj(a) + sum of the (b-1) largest T_ij(a), i != j], as |J' \\ {j}| <= b-1.
    For a = rows, T(a) = |W|^T |W| (one matrix product).

    Sparse Frobenius bound (proof).  ||A||^2 <= ||A||_F^2 = sum_{r in J} sum_{j in J'}
    W_rj^2 <= sum_{r in J} r_r(b) <= sum of the a largest r_r(b), where r_r(b) is
    the sum of the b largest W_rj^2 of row r.  For a = 1 it is exact.

    Row bound: ``max_i sqrt(sum of the b largest W_ij^2 over j)`` equals
    ``max_{i, |J'|<=b} ||W[i, J']||`` exactly (before rounding).

    Pruning (``prune=True``, what the certificate uses).  The exact T(a) costs about
    rows * cols^2 products; it is computed only where the babel bound can beat the cheaper
    bounds, in tiers (b = 1 never needs T: its bound is ``max_j T_jj(a)``, and ``T_jj(a)``,
    the a largest squares of column j, is cheap for every a):

    1. Since the a largest of the rows' products average at least their overall mean,
       ``T_ij(a) >= (a / rows) (|W|^T |W|)_ij``; so
       ``max_j [T_jj(a) + (a/rows) (sum of the (b-1) largest (|W|^T|W|)_ij, i != j)]`` is a
       lower bound of the babel bound's square.  Where it is at least the square of
       ``min(spectral, sparse Frobenius)`` for every b >= 2, nothing more is done at that a.
    2. Otherwise one matrix product: with ``S_j`` the a rows of largest ``|W_rj|``,
       ``L_ij = sum_{r in S_j} |W_ri W_rj| <= T_ij(a) <= L_ij + w_j(a) s_i(a) = U_ij``, where
       ``w_j(a)`` is the a-th largest ``|W_rj|`` and ``s_i(a)`` the sum of the a largest
       ``|W_ri|`` (any a rows: those in ``S_j`` contribute at most ``L_ij``, the others have
       ``|W_rj| <= w_j(a)`` and are at most a).  ``min(U_ij, U_ji, (|W|^T|W|)_ij,
       sqrt(T_ii(a) T_jj(a)))`` (Cauchy-Schwarz) bounds ``T_ij(a)``: its babel bound is valid
       and kept.  ``L`` (symmetrised by the maximum) gives a lower bound of the exact babel
       bound; where that is at least the minimum found so far for every b >= 2, T(a) cannot help.
    3. Otherwise the exact T(a), if ``rows * cols^2 <= EXACT_BABEL_MAX_PRODUCTS`` (else the
       bound from U stays).

    ``babel_bound`` and ``babel_function`` are ``inf`` where no tier computed them.  Below the
    product limit, ``bound`` and ``row_bound`` equal those without pruning (up to the float
    rounding of the comparisons, ``1e-9``, which only decides what is computed); above it,
    every entry is still a proven upper bound.

    Args:
        W: ``(rows, cols)`` real matrix (``[W_k | b_k]`` when the layer has a bias).
        row_sizes: row-set sizes a, integers in [1, rows], any order, duplicates allowed.
        col_sizes: column-set sizes b, integers in [1, cols] (the caller counts the
            bias column).
        progress: show a tqdm progress bar over the blocks of column pairs.
        spectral: an upper bound of ``||W||`` already computed (``spectral_norm(W)``);
            computed here when None.
        prune: skip the babel bound where it cannot help (see above).

    Returns:
        :class:`UniformNormTable` indexed by the sorted unique sizes.

    Raises:
        ValueError: a size outside [1, dimension], no sizes, or a non-finite W.

    Cost: the exact T(a) tables take about rows * cols^2 products, partitioned and
    partly sorted (numpy, ~2-5 s for 1000 x 1000), memory about
    ``8 * len(row_sizes) * cols^2`` bytes plus one 256 MiB block of products; with
    ``prune`` only the surviving sizes are computed (often none), and the rest costs a
    few ``cols^2`` passes, one product ``|W|^T |W|`` and one product per size that passes
    the first tier.
    """
    W = _as_matrix(W)
    R, C = W.shape
    rs = _check_sizes(row_sizes, R, "row")
    cs = _check_sizes(col_sizes, C, "column")

    W = W.cpu()
    shift = _shift_for(float(W.abs().max()))
    A = (W * math.ldexp(1.0, shift)).numpy()  # exact power-of-two scaling
    if spectral is None:
        spectral = spectral_norm(W)
    spectral = float(spectral)
    n_a, n_b = len(rs), len(cs)

    # row bound and sparse Frobenius bound
    Q = A * A
    Qr = np.sort(Q, axis=1)
    rtop = _top_sums_sorted(Qr, cs, axis=1)  # (R, n_b)
    del Qr
    row_sq = rtop.max(axis=0)
    rtop.sort(axis=0)
    frob_sq = _top_sums_sorted(rtop, rs, axis=0)  # (n_b, n_a)
    frob_sq = frob_sq.T
    del rtop

    # exact diagonal T_jj(a): the a largest squares of column j
    Qc = np.sort(Q, axis=0)
    diag_all = _top_sums_sorted(Qc, rs, axis=0)  # (C, n_a)
    del Qc, Q
    absW = np.abs(A)
    G = absW.T @ absW  # T(rows) = |W|^T |W|

    need = np.ones(n_a, dtype=bool)
    if prune:
        # squares in the scaled units of A (spectral scaled exactly by the same power of two)
        spec_sq = math.ldexp(spectral, shift) ** 2
        best_sq = np.minimum(frob_sq, spec_sq)  # (n_a, n_b)
        Goff = G.copy()
        np.fill_diagonal(Goff, 0.0)
        Goff.sort(axis=1)
        bm1 = tuple(b - 1 for b in cs if b >= 2)
        off = n_b - len(bm1)  # 1 if b = 1 is in the grid
        SG = np.zeros((C, n_b))
        if bm1:
            SG[:, off:] = _top_sums_sorted(Goff, bm1, axis=1)
        del Goff
        for m, a in enumerate(rs):
            lb = (diag_all[:, m][:, None] + (a / R) * SG).max(axis=0)  # (n_b,)
            # (b = 1 needs no T(a): its babel bound is max_j T_jj(a), filled in below)
            need[m] = bool(np.any(lb[off:] < best_sq[m, off:] * (1.0 + 1e-9)))

    babel_sq = np.full((n_a, n_b), np.inf)
    mu = np.full((n_a, n_b), np.inf)
    if cs[0] == 1:  # no off-diagonal terms: max_j T_jj(a), exact and cheap for every a
        babel_sq[:, 0] = diag_all.max(axis=0)
        mu[:, 0] = 0.0
    if prune and any(need[m] and a < R for m, a in enumerate(rs)):
        # second tier (one matrix product per size): with S_j the a rows of largest |W_rj|,
        # L_ij = sum_{r in S_j} |W_ri W_rj| <= T_ij(a) <= L_ij + w_j(a) s_i(a) = U_ij, where
        # w_j(a) is the a-th largest |W_rj| and s_i(a) the sum of the a largest |W_ri|
        # (rows outside S_j have |W_rj| <= w_j(a); at most a of them).  U gives a valid babel
        # bound; L a lower bound of the exact one, to skip T(a) where it cannot help.
        order = np.argsort(-absW, axis=0, kind="stable")
        asc = np.sort(absW, axis=0)
        s_top = _top_sums_sorted(asc, rs, axis=0)  # (C, n_a)
        for m, a in enumerate(rs):
            if not need[m] or a >= R:
                continue
            mask = np.zeros_like(absW)
            np.put_along_axis(mask, order[:a], 1.0, axis=0)
            L = absW.T @ (absW * mask)  # L[i, j]: rows S_j
            del mask
            U = L + np.outer(s_top[:, m], asc[R - a])
            U = np.minimum(np.minimum(U, U.T), G)
            U = np.minimum(U, np.sqrt(np.outer(diag_all[:, m], diag_all[:, m])))  # Cauchy-Schwarz
            mu_u, bab_u = _babel_rows(U, diag_all[:, m], cs)
            del U
            mu[m] = np.minimum(mu[m], mu_u)
            babel_sq[m] = np.minimum(babel_sq[m], bab_u)
            _, lb = _babel_rows(np.maximum(L, L.T), diag_all[:, m], cs)
            del L
            target = np.minimum(best_sq[m], babel_sq[m])
            need[m] = bool(np.any(lb[off:] < target[off:] * (1.0 + 1e-9)))
            if need[m] and C * C * R > EXACT_BABEL_MAX_PRODUCTS:
                need[m] = False  # too wide for the exact T(a): keep the valid bound from U
    exact_rs = tuple(a for m, a in enumerate(rs) if need[m] and a < R)
    if exact_rs:
        absT = np.ascontiguousarray(absW.T)
        T = _pair_top_sums(absT, exact_rs, progress)
        del absT
        for q, a in enumerate(exact_rs):
            m = rs.index(a)
            mu_e, bab_e = _babel_rows(T[q], diag_all[:, m], cs)
            mu[m] = np.minimum(mu[m], mu_e)
            babel_sq[m] = np.minimum(babel_sq[m], bab_e)
        del T
    if rs[-1] == R and need[-1]:
        mu[-1], babel_sq[-1] = _babel_rows(G, diag_all[:, -1], cs)
    del G

    with np.errstate(invalid="ignore"):
        babel = _unscale_np(np.sqrt(babel_sq) * _SAFE, -shift)
        mu_out = _unscale_np(mu * _SAFE, -2 * shift)
    frob = _unscale_np(np.sqrt(frob_sq) * _SAFE, -shift)
    row = _unscale_np(np.sqrt(row_sq) * _SAFE, -shift)

    bound = _suffix_min(np.minimum(np.minimum(babel, frob), spectral))
    row_bound = _suffix_min(np.minimum(row, spectral))
    return UniformNormTable(
        row_sizes=rs,
        col_sizes=cs,
        spectral=spectral,
        babel_bound=_readonly(babel),
        babel_function=_readonly(mu_out),
        frobenius_bound=_readonly(frob),
        row_bound=_readonly(row_bound),
        bound=_readonly(bound),
    )


# ----- brute-force oracles (tests only) ---------------------------------------
def _subset_count(n: int, k: int) -> int:
    return math.comb(n, k)


def brute_force_sparse_norm(W: torch.Tensor, a: int, b: int) -> float:
    """Exact ``max ||W[J, J']||`` over ALL |J| = min(a, rows), |J'| = min(b, cols).

    The test oracle: float64 SVD of every submatrix, no safety factor.  Because
    adding rows or columns never decreases the spectral norm, this is also the
    maximum over all |J| <= a, |J'| <= b.

    Raises:
        ValueError: more than ``BRUTE_FORCE_MAX_PAIRS`` subset pairs, or a, b < 1.
    """
    Wn = _as_matrix(W).cpu().numpy()
    R, C = Wn.shape
    if a < 1 or b < 1:
        raise ValueError("a and b must be >= 1")
    a, b = min(a, R), min(b, C)
    n_pairs = _subset_count(R, a) * _subset_count(C, b)
    if n_pairs > BRUTE_FORCE_MAX_PAIRS:
        raise ValueError(
            f"brute force over {n_pairs} subset pairs refused (limit {BRUTE_FORCE_MAX_PAIRS})"
        )
    rsets = np.array(list(combinations(range(R), a)), dtype=np.int64)
    csets = np.array(list(combinations(range(C), b)), dtype=np.int64)
    best = 0.0
    if len(rsets) <= len(csets):  # loop over the smaller family, batch the larger
        for J in rsets:
            sub = np.moveaxis(Wn[J][:, csets], 1, 0)  # (n_c, a, b)
            best = max(best, float(np.linalg.svd(sub, compute_uv=False)[:, 0].max()))
    else:
        for Jc in csets:
            sub = Wn[:, Jc][rsets]  # (n_r, a, b)
            best = max(best, float(np.linalg.svd(sub, compute_uv=False)[:, 0].max()))
    return best


def brute_force_row_norm(W: torch.Tensor, b: int) -> float:
    """Exact ``max_i max_{|J'| = min(b, cols)} ||W[i, J']||`` by enumeration (oracle).

    Raises:
        ValueError: more than ``BRUTE_FORCE_MAX_PAIRS`` column sets, or b < 1.
    """
    Wn = _as_matrix(W).cpu().numpy()
    C = Wn.shape[1]
    if b < 1:
        raise ValueError("b must be >= 1")
    b = min(b, C)
    n_sets = _subset_count(C, b)
    if n_sets > BRUTE_FORCE_MAX_PAIRS:
        raise ValueError(
            f"brute force over {n_sets} column sets refused (limit {BRUTE_FORCE_MAX_PAIRS})"
        )
    best = 0.0
    for Jc in combinations(range(C), b):
        # norms of the rows as 1 x b matrices: LAPACK's SVD scales internally, so
        # tiny entries do not underflow as in a plain sqrt(sum of squares)
        sub = Wn[:, list(Jc)].reshape(Wn.shape[0], 1, b)
        best = max(best, float(np.linalg.svd(sub, compute_uv=False).max(initial=0.0)))
    return best


# ----- per-sample exact norms (THEORY 5.1) ---------------------------------------
def _check_index(idx: torch.Tensor | None, dim: int, what: str) -> torch.Tensor | None:
    if idx is None:
        return None
    if not isinstance(idx, torch.Tensor):
        idx = torch.as_tensor(np.asarray(idx))
    if idx.ndim != 2:
        raise ValueError(f"{what}_index must have shape (N, size), got {tuple(idx.shape)}")
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise ValueError(f"{what}_index must be an integer tensor, got {idx.dtype}")
    idx = idx.to(torch.int64)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= dim):
        raise ValueError(
            f"{what}_index has entries outside [0, {dim - 1}] (the matrix has {dim} {what}s)"
        )
    return idx


def exact_norms_batch(a: int, b: int) -> int:
    """Samples per batch of :func:`exact_reduced_norms` for ``(a, b)`` submatrices (one batch near
    512 MiB).  Batches fix which samples are computed together; callers that split the work across
    processes keep these boundaries, so every sample's value is bit for bit the same."""
    m = min(a, b)
    per_sample = 8 * (3 * a * b + 4 * m * m) + 64
    return max(1, _EXACT_CHUNK_BYTES // per_sample)


def exact_reduced_norms(
    W: torch.Tensor,
    row_index: torch.Tensor | None,
    col_index: torch.Tensor | None,
    *,
    device: str | torch.device | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Upper bounds of ``||W[J_n, J'_n]||_2`` per sample (THEORY 5.1).

    Each submatrix S_n is gathered, scaled by an exact power of two (largest entry
    in [0.5, 1)), its Gram matrix on the smaller side is formed in float64, and
    ``sqrt(max(lambda_max, 0)) * (1 + NORM_SAFETY)`` from ``torch.linalg.eigvalsh``
    is scaled back (module docstring, "Rounding").

    Args:
        W: ``(rows, cols)`` real matrix (``[W_k | b_k]`` with biases).
        row_index: ``(N, a)`` integer row indices per sample, or None for all rows.
        col_index: ``(N, b)`` integer column indices per sample, or None for all
            columns.  At least one of the two must be given.  Repeated indices
            give an upper bound of the norm on the underlying set (a repeated
            row or column never decreases the norm).
        device: ``"cpu"`` (default) or ``"cuda"``: where the work runs; results
            always come back on the CPU.
        chunk: samples per batch; default :func:`exact_norms_batch` (one batch near 512 MiB).

    On the CPU the eigensolver runs single-threaded (the torch thread count is
    restored afterwards): MKL's threaded ``dsyevd`` gains nothing at these sizes
    (measured 17 ms vs 18 ms for 500 x 500 on 2 cores) and becomes about 50 times
    slower when another process shares the cores (1.5 s vs 0.03 s).

    Returns:
        ``(N,)`` float64 CPU tensor; zeros when a == 0 or b == 0.

    Raises:
        ValueError: both indices None, mismatching N, indices out of range, a
            non-finite W, or ``chunk < 1``.
        ConfigError: an unknown or unavailable device.
    """
    W = _as_matrix(W)
    R, C = W.shape
    row_index = _check_index(row_index, R, "row")
    col_index = _check_index(col_index, C, "col")
    if row_index is None and col_index is None:
        raise ValueError(
            "give row_index or col_index (or both); for the full matrix use spectral_norm"
        )
    if row_index is not None and col_index is not None and row_index.shape[0] != col_index.shape[0]:
        raise ValueError(
            f"row_index has {row_index.shape[0]} samples but col_index has {col_index.shape[0]}"
        )
    N = (row_index if row_index is not None else col_index).shape[0]
    a = R if row_index is None else row_index.shape[1]
    b = C if col_index is None else col_index.shape[1]
    out = torch.zeros(N, dtype=torch.float64)
    if N == 0 or a == 0 or b == 0:
        return out
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    dev = resolve_device(device)
    n_chunk = chunk if chunk is not None else exact_norms_batch(a, b)
    flat = W.to(dev).reshape(-1)
    all_rows = torch.arange(R, device=dev, dtype=torch.int64)
    all_cols = torch.arange(C, device=dev, dtype=torch.int64)
    for s in range(0, N, n_chunk):
        e = min(N, s + n_chunk)
        n = e - s
        ri = row_index[s:e].to(dev) if row_index is not None else all_rows.expand(n, R)
        ci = col_index[s:e].to(dev) if col_index is not None else all_cols.expand(n, C)
        idx = ri.unsqueeze(2) * C + ci.unsqueeze(1)  # (n, a, b)
        S = flat[idx]
        del idx
        maxabs = S.abs().amax(dim=(1, 2))
        shift = _shift_tensor(maxabs)
        S.mul_(_pow2(shift).view(-1, 1, 1))  # exact
        G = S @ S.mT if a <= b else S.mT @ S
        del S
        if dev.type == "cpu":
            with torch_threads(1):
                lam = torch.linalg.eigvalsh(G)[:, -1].clamp_min(0.0)
        else:
            lam = torch.linalg.eigvalsh(G)[:, -1].clamp_min(0.0)
        del G
        r = torch.sqrt(lam) * _SAFE
        r = r * _pow2(-shift)
        tiny = (maxabs > 0) & (r < _MIN_NORMAL)
        r = torch.where(tiny, torch.nextafter(r, torch.full_like(r, math.inf)), r)
        out[s:e] = r.cpu()
    return out


def exact_row_norms_restricted(
    W: torch.Tensor,
    col_mask: torch.Tensor,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Upper bounds of ``||W[i, J'_n]||`` for every row i and every sample n.

    Computed as ``sqrt(col_mask.double() @ (W*W).T) * (1 + NORM_SAFETY)`` after an
    exact power-of-two scaling of every row (largest entry in [0.5, 1)).  A masked
    sum of squares of a row need not contain that row's largest entry, so when
    some scaled nonzero entry is below 2^-511 (its square could underflow) an
    absolute slack ``cols * 2^-1074`` is added to every sum of squares.  (Never
    the case for weights that came from float32.)  Used for omega_k = max over
    the inactive rows (THEORY 2).

    Args:
        W: ``(rows, cols)`` real matrix.
        col_mask: ``(N, cols)`` bool, the column set J'_n of each sample.
        device: where the work runs; results come back on the CPU.

    Returns:
        ``(N, rows)`` float64 CPU tensor.

    Raises:
        ValueError: wrong mask shape or dtype, non-finite W.
    """
    W = _as_matrix(W)
    R, C = W.shape
    if not isinstance(col_mask, torch.Tensor):
        col_mask = torch.as_tensor(np.asarray(col_mask))
    if col_mask.ndim != 2 or col_mask.shape[1] != C:
        raise ValueError(f"col_mask must have shape (N, {C}), got {tuple(col_mask.shape)}")
    if col_mask.dtype != torch.bool:
        raise ValueError(f"col_mask must be a bool tensor, got {col_mask.dtype}")
    N = col_mask.shape[0]
    out = torch.zeros((N, R), dtype=torch.float64)
    if N == 0 or R == 0 or C == 0:
        return out
    dev = resolve_device(device)
    Wd = W.to(dev)
    shift = _shift_tensor(Wd.abs().amax(dim=1))  # (R,)
    Ws = Wd * _pow2(shift).view(-1, 1)
    nz = Ws.abs()[Ws != 0]
    slack = 0.0
    if nz.numel() and float(nz.min()) < 2.0**-511:
        slack = C * 2.0**-1074
    QT = (Ws * Ws).T.contiguous()  # (C, R)
    back = _pow2(-shift).view(1, -1)
    for s in range(0, N, _ROW_CHUNK):
        e = min(N, s + _ROW_CHUNK)
        mask = col_mask[s:e].to(dev)
        sq = mask.to(torch.float64) @ QT  # (n, R): sums of non-negative terms
        if slack:
            sq = sq + slack
        r = torch.sqrt(sq) * _SAFE * back
        tiny = (sq > 0) & (r < _MIN_NORMAL)
        r = torch.where(tiny, torch.nextafter(r, torch.full_like(r, math.inf)), r)
        out[s:e] = r.cpu()
    return out
