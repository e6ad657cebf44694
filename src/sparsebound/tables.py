"""The per-sample tables of reduced norms the certificate shares between its methods.

For every layer k (THEORY.md 2 and 5), on the a-priori sparsity grid of
:class:`~sparsebound.sparsity.SparsityGrid`:

* :func:`spectral_norms`: ``||[W_k | b_k]||`` (the dense bound);
* :func:`uniform_norm_tables`: uniform bounds of ``beta_k`` and ``omega_k`` over every row
  and column set of the grid's sizes (THEORY.md 5.2: reduced babel bound, sparse
  Frobenius bound, row bound, spectral norm), one table shared by all samples;
* :func:`exact_omega_tables`: per-sample exact ``omega_k`` at the witness sets (THEORY.md 5.1);
* :class:`ExactBetaCache`: per-sample ``beta_k`` tables, the uniform bounds refined by exact
  reduced norms where the ``sparse`` method asks for them (its cascade).

Every entry is an UPPER bound.  Every question about a layer's weights goes through its
:class:`~sparsebound.operators.LinearOperator` (``net.operators``), so other kinds of layers
plug in without changing this module.

Source: THEORY.md sections 2 and 5; docs/theory.md section 11 (code map).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .network import ReLUNetwork
from .operators import LinearOperator
from .sharding import LocalSharding, Sharding
from .sparsity import SparsityGrid, SparsityTable

__all__ = ["ExactBetaCache", "NormTables", "exact_omega_tables", "spectral_norms", "uniform_norm_tables"]



def _size_index(sizes: Sequence[int]) -> dict[int, int]:
    return {int(s): i for i, s in enumerate(sizes)}


def _col_sizes(grid: SparsityGrid, k: int, op: LinearOperator) -> np.ndarray:
    """Active column counts a^col_{k-1} of layer k (its operator's count: bias included), in the
    grid order of layer k-1."""
    return op.columns(np.array([grid.widths[0]]) if k == 1 else grid.active[k - 2])


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


def spectral_norms(net: ReLUNetwork) -> list[float]:
    """Upper bounds of ``||[W_k | b_k]||`` for k = 1..K (each operator's
    :meth:`~sparsebound.operators.LinearOperator.spectral_norm_upper`: float64 SVD)."""
    return [op.spectral_norm_upper() for op in net.operators]


def uniform_norm_tables(net: ReLUNetwork, grid: SparsityGrid, progress: bool = False,
                        spectral: Sequence[float] | None = None) -> NormTables:
    """Uniform sparse-norm bounds (THEORY.md 5.2) for every layer on the grid.

    ``spectral``: the layers' spectral-norm bounds when already computed.  The reduced
    babel bound is computed only at the row sizes where it can beat the spectral and
    sparse Frobenius bounds (``uniform_sparse_norms(..., prune=True)``, through each
    operator's :meth:`~sparsebound.operators.LinearOperator.uniform_sparse_norms`); the
    tables are the same as with every size computed.

    Returns:
        :class:`NormTables`: ``uniform_beta[k-1]`` ``(1, T_k, T_{k-1})`` and, for hidden layers,
        ``uniform_omega[k-1]`` ``(1, T_k, T_{k-1})`` (0 at ``s_k = 0``), float64.
    """
    K = net.depth
    spec = list(spectral) if spectral is not None else spectral_norms(net)
    ub, uo = [], []
    for k, op in enumerate(net.operators, start=1):
        rows = _row_sizes(grid, k)
        cols = _col_sizes(grid, k, op)
        tab = op.uniform_sparse_norms(rows.tolist(), cols.tolist(), progress=progress, spectral=spec[k - 1])
        ri = _size_index(tab.row_sizes)
        ci = _size_index(tab.col_sizes)
        r_idx = [ri[int(a)] for a in rows]
        c_idx = [ci[int(b)] for b in cols]
        beta = torch.as_tensor(tab.bound[np.ix_(r_idx, c_idx)], dtype=torch.float64)
        ub.append(beta[None])
        if k < K:
            rb = torch.as_tensor(np.asarray(tab.row_bound)[c_idx], dtype=torch.float64)
            om = rb[None, :].expand(len(rows), len(cols)).clone()
            om[0, :] = 0.0  # s_k = 0: no inactive rows
            uo.append(om[None])
    return NormTables(spectral=spec, uniform_beta=ub, uniform_omega=uo)


def exact_omega_tables(net: ReLUNetwork, table: SparsityTable, device: str | None = None) -> list[torch.Tensor]:
    """Per-sample exact ``omega_k = max_{i in I_k} ||W_k[i, J_{k-1}]||`` on the grid.

    Returns K-1 tensors ``(N, T_k, T_{k-1})`` (upper bounds, safety factor included).
    Row norms come from each operator (:meth:`~sparsebound.operators.LinearOperator.row_norms_upper`
    for all columns, :meth:`~sparsebound.operators.LinearOperator.restricted_row_norms` on the
    active columns).  Source: THEORY.md section 2 (omega) and 5.1.
    """
    grid = table.grid
    K = net.depth
    N = table.n_samples
    out = []
    for k, op in enumerate(net.operators[: K - 1], start=1):
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
            if mk is None:  # all columns: the full row norms, valid at any scale
                rn = op.row_norms_upper()
                rn = rn[None, :].expand(N, -1)
            else:
                rn = op.restricted_row_norms(table.active_mask(k - 1, mk))
            srt = rn.gather(1, order)  # row norms in ascending pre-activation order
            cm_max = torch.cummax(srt, dim=1).values
            pos = s > 0
            if bool(pos.any()):
                om[:, pos, tp] = cm_max[:, s[pos] - 1]
        out.append(om)
    del device
    return out


def _exact_chunk(operators: Sequence[LinearOperator], chunk: tuple[int, torch.Tensor | None,
                                                                    torch.Tensor | None, str | None]) -> torch.Tensor:
    """Exact reduced norms of one chunk ``(k, rows, inputs, device)`` of layer k (a sharding task)."""
    k, rows, inputs, device = chunk
    return operators[k - 1].exact_reduced_norms(rows, inputs, device=device)


class ExactBetaCache:
    """Per-sample beta tables: uniform bounds, refined by exact reduced norms on demand.

    ``beta[k-1]`` is ``(N, T_k, T_{k-1})``; :meth:`refine` computes
    ``||W_k[J_k, J_{k-1}]||`` exactly (THEORY.md 5.1) at the given per-sample
    grid positions, keeps the minimum with the current bound, and restores
    monotonicity (a bound for larger sets covers every subset: running minimum
    toward sparser levels).

    ``sharding`` (:mod:`sparsebound.sharding`) runs the exact norms: in this process (default)
    or as Ray tasks, in chunks fixed by the operators' batches
    (:meth:`~sparsebound.operators.LinearOperator.exact_batch`), so the tables are the same
    bit for bit wherever they are computed; the weights are handed over once.
    """

    def __init__(self, net: ReLUNetwork, table: SparsityTable, uniform_beta: list[torch.Tensor],
                 device: str | None = None, sharding: Sharding | None = None) -> None:
        self.net = net
        self.table = table
        self.device = device
        self.sharding: Sharding = sharding if sharding is not None else LocalSharding()
        self._shared: Any = None
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
        t0 = time.perf_counter()
        jobs = self._jobs(levels, samples)
        # the exact norms, in chunks fixed by the operators' batches (never by the workers)
        ops = self.net.operators
        chunks, spans = [], []
        for k, _, _, ids, rows, cols in jobs:
            n = int(ids.numel())
            step = ops[k - 1].exact_batch(None if rows is None else int(rows.shape[1]),
                                          None if cols is None else int(cols.shape[1]))
            first = len(chunks)
            for s in range(0, n, step):
                chunks.append((k, None if rows is None else rows[s : s + step],
                               None if cols is None else cols[s : s + step], self.device))
            spans.append((first, len(chunks)))
        if chunks and self._shared is None:
            self._shared = self.sharding.put(ops)
        values = self.sharding.map(_exact_chunk, self._shared, chunks) if chunks else []
        count = 0
        for i, (k, a, b, ids, _, _) in enumerate(jobs):
            lo, hi = spans[i]
            val = torch.cat(values[lo:hi]) if hi - lo > 1 else values[lo]
            cur = self.beta[k - 1][ids, a, b]
            self.beta[k - 1][ids, a, b] = torch.minimum(cur, val)
            self.done[k - 1][ids, a, b] = True
            count += int(ids.numel())
            if progress is not None:
                progress(int(ids.numel()))
            if i + 1 == len(jobs) or jobs[i + 1][0] != k:
                # monotone: bound at (t, t') may use any entry with u <= t, u' <= t'
                bk = self.beta[k - 1]
                bk = torch.cummin(bk, dim=1).values
                bk = torch.cummin(bk, dim=2).values
                self.beta[k - 1] = bk
        self.n_exact += count
        self.seconds += time.perf_counter() - t0
        return count

    def _jobs(self, levels: torch.Tensor, samples: torch.Tensor | None
              ) -> list[tuple[int, int, int, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """``(k, a, b, ids, rows, inputs)`` per layer and per pair of grid positions not yet exact:
        the samples ``ids`` and their active row and input sets (the operator adds the bias column).
        Layers in order; a layer's pairs in ``torch.unique`` order."""
        net, table = self.net, self.table
        K = net.depth
        if samples is None:
            samples = torch.arange(table.n_samples)
        jobs = []
        for k in range(1, K + 1):
            tk = levels[:, k - 1] if k < K else torch.zeros(samples.numel(), dtype=torch.int64)
            tp = levels[:, k - 2] if k >= 2 else torch.zeros(samples.numel(), dtype=torch.int64)
            need = ~self.done[k - 1][samples, tk, tp]
            if not bool(need.any()):
                continue
            pairs = torch.stack([tk[need], tp[need]], dim=1)
            idx_need = samples[need]
            for pr in torch.unique(pairs, dim=0):
                a, b = int(pr[0]), int(pr[1])
                ids = idx_need[(pairs[:, 0] == a) & (pairs[:, 1] == b)]
                rows = table.active_rows(k, a, ids) if k < K else None
                cols = table.active_rows(k - 1, b, ids) if k >= 2 else None
                jobs.append((k, a, b, ids, rows, cols))
        return jobs
